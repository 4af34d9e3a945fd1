//! `redstash load postgres://...`: a PostgreSQL query as the source of a load.

use std::path::Path;

use clap::Args;
use redstash::load::{PostgresOptions, PostgresSource, Shard, Source};

use crate::Fail;
use crate::load::LoadArgs;

/// The PostgreSQL flags of `redstash load`.
#[derive(Args, Debug)]
pub struct PostgresArgs {
    /// With a `postgres://` or `postgresql://` SOURCE: the SQL query whose rows are
    /// loaded (streamed with COPY: memory stays bounded). Without --pg-key-column, give
    /// it a stable ORDER BY for --checkpoint and --shard.
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,
    /// A column of the query with unique values: rows are ordered by it, a resumed load
    /// skips the rows done on the server, and --shard I/N reads only the rows whose key
    /// hashes to I (each loader reads its own rows, not all of them).
    #[arg(long, value_name = "COLUMN")]
    pub pg_key_column: Option<String>,
    /// Count the query's rows first (runs it once more) so that the progress bar has a
    /// total.
    #[arg(long)]
    pub pg_count: bool,
}

/// Whether SOURCE is a PostgreSQL URL.
pub fn is_postgres(source: &Path) -> bool {
    source
        .to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// Whether the PostgreSQL source selects the shard's rows itself (then the loader must
/// not skip batches too).
pub fn shards_in_source(args: &LoadArgs) -> bool {
    is_postgres(&args.source) && args.shard.is_some() && args.postgres.pg_key_column.is_some()
}

/// SOURCE as shown in reports: a PostgreSQL URL without its password.
pub fn shown_source(source: &Path) -> String {
    match source.to_str() {
        Some(s) if is_postgres(source) => redstash::load::source::postgres::shown_params(s),
        _ => source.display().to_string(),
    }
}

/// The PostgreSQL source the arguments name; `None` when SOURCE is not a PostgreSQL URL.
pub fn open(args: &LoadArgs) -> Result<Option<Box<dyn Source + Send>>, Fail> {
    let pg = &args.postgres;
    if !is_postgres(&args.source) {
        if pg.query.is_some() || pg.pg_key_column.is_some() || pg.pg_count {
            return Err(Fail(
                2,
                "--query, --pg-key-column and --pg-count are for a postgres:// SOURCE".into(),
            ));
        }
        return Ok(None);
    }
    let url = args
        .source
        .to_str()
        .ok_or_else(|| Fail(2, "the PostgreSQL URL is not UTF-8".into()))?;
    let query = pg
        .query
        .as_deref()
        .ok_or_else(|| Fail(2, "a postgres:// SOURCE needs --query SQL".into()))?;
    let shard = match (&pg.pg_key_column, &args.shard) {
        (Some(_), Some(s)) => Some(Shard::parse(s).map_err(|e| Fail(2, e.to_string()))?),
        _ => None,
    };
    let options = PostgresOptions {
        key_column: pg.pg_key_column.clone(),
        shard,
        count: pg.pg_count,
    };
    Ok(Some(Box::new(PostgresSource::connect(
        url, query, options,
    )?)))
}

/// The progress bar of a PostgreSQL load counts rows.
pub fn rows_bar(bar: &indicatif::ProgressBar) {
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "load [{bar:30}] {pos}/{len} rows {msg} {elapsed_precise} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
}
