//! `redstash load --feature-view NAME ...` (Arrow/Parquet feature vectors into a
//! FeatureStore view) and `redstash load DIR_OR_GLOB --arrays --key 'arr:{stem}'`
//! (`.npy` files into an ArrayStore).

use clap::Args;
use redstash::load::{
    ArrayLoad, ArrowSource, FeatureLoad, Format, KeyTemplate, OnError, ParquetSource, VectorColumns,
};
use redstash::{ArrayStore, DType, FeatureStore};

use crate::load::{LoadArgs, OnErrorArg};
use crate::{BulkConnection, Cli, Fail, cluster_on, report};

/// The flags of a load into a feature view or an array store.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Feature vectors and arrays")]
pub struct StoreLoadArgs {
    /// Load feature vectors (from an Arrow or Parquet file) into this FeatureStore view
    /// (registered from the columns if it is not: dtype and dimension), instead of
    /// records into keys.
    #[arg(long, value_name = "NAME")]
    pub feature_view: Option<String>,
    /// The entity id column (strings or integers) of --feature-view.
    #[arg(long, value_name = "COLUMN", requires = "feature_view")]
    pub id_column: Option<String>,
    /// The vector column: a FixedSizeList (or List) of float32/float64/float16.
    #[arg(
        long,
        value_name = "COLUMN",
        requires = "feature_view",
        conflicts_with = "vector_columns"
    )]
    pub vector_column: Option<String>,
    /// The vector as numeric columns, in order (comma-separated: f0,f1,...).
    #[arg(
        long,
        value_name = "COLUMNS",
        value_delimiter = ',',
        requires = "feature_view"
    )]
    pub vector_columns: Vec<String>,
    /// The view's dtype when it is registered here (f32, f64, f16; default: the
    /// column's).
    #[arg(long, requires = "feature_view")]
    pub dtype: Option<String>,
    /// The FeatureStore's key prefix (keys are PREFIX:VIEW:ID; none: VIEW:ID).
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        requires = "feature_view"
    )]
    pub feature_prefix: String,
    /// The source is a directory, a file or a quoted pattern ('data/*.npy') of .npy
    /// files, each stored at --key (fields {stem}, {name}, {path}) in an ArrayStore.
    #[arg(long, conflicts_with = "feature_view")]
    pub arrays: bool,
}

impl StoreLoadArgs {
    /// Whether these flags take over the load.
    pub fn active(&self) -> bool {
        self.feature_view.is_some() || self.arrays
    }
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

/// Run a feature or array load.
pub fn run(cli: &Cli, args: &LoadArgs) -> Result<(), Fail> {
    if args.store.arrays {
        return run_arrays(cli, args);
    }
    let a = &args.store;
    let view_name = a.feature_view.clone().unwrap_or_default();
    let id = a
        .id_column
        .clone()
        .ok_or_else(|| usage("--feature-view needs --id-column"))?;
    let vector = match (&a.vector_column, a.vector_columns.is_empty()) {
        (Some(c), true) => VectorColumns::List(c.clone()),
        (None, false) => VectorColumns::Columns(a.vector_columns.clone()),
        _ => {
            return Err(usage(
                "--feature-view needs --vector-column or --vector-columns",
            ));
        }
    };
    let dtype = a
        .dtype
        .as_deref()
        .map(|d| {
            let numpy = match d {
                "f16" => "float16",
                "f32" => "float32",
                "f64" => "float64",
                other => other,
            };
            DType::parse_any(numpy).map(|(t, _)| t)
        })
        .transpose()
        .map_err(|e| usage(format!("--dtype: {e}")))?;
    let load = FeatureLoad::new(view_name.clone(), id, vector);
    let store = FeatureStore::new(a.feature_prefix.clone());
    let mut con = BulkConnection::open(&args.connection, cluster_on(&args.cluster))?;
    let format = match args.format {
        Some(f) => crate::load::format_of(f),
        None => Format::from_path(&args.source).unwrap_or(Format::Parquet),
    };
    let path = &args.source;
    let report_ = match format {
        Format::Parquet => {
            let mut src = ParquetSource::open(path)?;
            register(&load, &store, &mut con, src.schema(), dtype)?;
            load.load(
                std::iter::from_fn(move || src.next_batch().transpose()),
                &store,
                &mut con,
            )?
        }
        Format::Arrow => {
            let mut src = ArrowSource::open(path)?;
            register(&load, &store, &mut con, src.schema(), dtype)?;
            load.load(
                std::iter::from_fn(move || src.next_batch().transpose()),
                &store,
                &mut con,
            )?
        }
        _ => {
            return Err(usage(
                "--feature-view reads Arrow IPC or Parquet files (give --format arrow|parquet)",
            ));
        }
    };
    let r = &report_;
    let mut text = format!("view {view_name:?}: {}", r.summary());
    for e in r.errors.iter().take(10) {
        text.push_str(&format!("\n  {e}"));
    }
    report(
        cli,
        serde_json::json!({
            "source": path.display().to_string(), "view": view_name, "rows": r.rows,
            "written": r.written, "refused": r.refused, "unknown": r.unknown,
            "not_sent": r.not_sent, "elapsed_s": r.elapsed_s, "rate": r.rate(),
            "stopped": r.stopped, "errors": r.errors,
        }),
        text,
    );
    match &r.stopped {
        Some(why) => Err(Fail(1, format!("the load stopped: {why}"))),
        None if r.refused > 0 => Err(Fail(1, format!("{} vectors were refused", r.refused))),
        None => Ok(()),
    }
}

/// Register the view the columns make, unless one of that name is registered.
fn register(
    load: &FeatureLoad,
    store: &FeatureStore,
    con: &mut BulkConnection,
    schema: &arrow_schema::Schema,
    dtype: Option<DType>,
) -> Result<(), Fail> {
    let views = store.load_views(con)?;
    if let Some(v) = views.iter().find(|v| v.name() == load.view) {
        if let Some(t) = dtype
            && t != v.dtype()
        {
            return Err(Fail(
                1,
                format!("view {:?} is registered as {}, not {t}", v.name(), v),
            ));
        }
        return Ok(());
    }
    let view = load.infer_view(schema, dtype)?;
    store.register_view(con, &view)?;
    Ok(())
}

fn run_arrays(cli: &Cli, args: &LoadArgs) -> Result<(), Fail> {
    let key = args
        .key
        .as_deref()
        .ok_or_else(|| usage("--arrays needs --key (e.g. 'arr:{stem}')"))?;
    let template = KeyTemplate::parse(key).map_err(|e| usage(e.to_string()))?;
    let load = ArrayLoad::new(template).with_on_error(match args.on_error {
        OnErrorArg::Stop => OnError::Stop,
        OnErrorArg::Skip => OnError::Skip,
    });
    let files = ArrayLoad::files(&args.source)?;
    let mut con = BulkConnection::open(&args.connection, cluster_on(&args.cluster))?;
    let r = load.load(&files, &ArrayStore::new(""), &mut con)?;
    let mut text = r.summary();
    for e in &r.errors {
        text.push_str(&format!("\n  {}: {}", e.path.display(), e.error));
    }
    report(
        cli,
        serde_json::json!({
            "files": r.files, "stored": r.stored, "failed": r.failed,
            "not_tried": r.not_tried, "bytes": r.bytes, "elapsed_s": r.elapsed_s,
            "errors": r.errors.iter().map(|e| serde_json::json!({
                "file": e.path.display().to_string(), "key": e.key, "error": e.error.to_string(),
            })).collect::<Vec<_>>(),
        }),
        text,
    );
    if r.failed > 0 {
        return Err(Fail(1, format!("{} of {} files failed", r.failed, r.files)));
    }
    Ok(())
}
