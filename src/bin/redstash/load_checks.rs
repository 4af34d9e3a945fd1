//! The checks around `redstash load`: `--estimate` (the memory a load takes, measured
//! on a sample), the memory pre-check before a load (`--no-memory-check` to skip),
//! `--no-persistence` (RDB and AOF off during the load, restored after), and
//! `--verify` / `--verify-only` (the source read again and checked against Redis).

use std::sync::Mutex;

use clap::Args;
use redstash::load::{
    EstimateOptions, Mapping, MemoryCheck, PersistenceGuard, SavedPersistence, VerifyOptions,
    estimate_memory, precheck_memory, verify_load,
};

use crate::load::{LoadArgs, open_source};
use crate::{BulkConnection, Cli, Connection, Fail};

/// The check flags of `redstash load`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Checks")]
pub struct CheckArgs {
    /// Load nothing: write a sample of records to scratch keys (a unique
    /// `redstash:estimate:...:` prefix on every key), measure their MEMORY USAGE,
    /// delete them, and print the memory the whole source would take.
    #[arg(long, conflicts_with_all = ["verify_only", "emit_resp"])]
    pub estimate: bool,
    /// Records sampled by --estimate (default 1000, the first ones), or checked by
    /// --verify / --verify-only (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
    /// The number of records in the source, for --estimate's total (default: counted
    /// when the sample reaches the end, else estimated from the input's size).
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Do not refuse to start when the memory estimate exceeds what the server's
    /// maxmemory leaves (by default a load is refused then).
    #[arg(long)]
    pub no_memory_check: bool,
    /// Turn RDB snapshots (`save`) and the AOF (`appendonly`) off during the load and
    /// restore them after, also after a failure or Ctrl-C. Restoring `appendonly yes`
    /// makes the server rewrite its AOF (BGREWRITEAOF) after the load; a crash of the
    /// server during the load loses what was written since its last snapshot.
    #[arg(long)]
    pub no_persistence: bool,
    /// After the load, read the source again and check that every record's keys,
    /// values, index entries and TTLs are in Redis.
    #[arg(long)]
    pub verify: bool,
    /// Load nothing: only check (as --verify does) that the source is in Redis.
    #[arg(long, conflicts_with_all = ["verify", "emit_resp"])]
    pub verify_only: bool,
}

impl CheckArgs {
    /// Whether the command only checks (`--estimate`, `--verify-only`): nothing loaded.
    pub fn alone(&self) -> bool {
        self.estimate || self.verify_only
    }
}

fn warn(cli: &Cli, msg: &str) {
    if !cli.silent {
        eprintln!("redstash: warning: {msg}");
    }
}

/// The connection to the first seed of `--url` (the one server, or the seed node of a
/// cluster).
fn seed(connection: &Connection) -> Result<BulkConnection, Fail> {
    let mut c = connection.clone();
    if let Some(first) = c.url.split(',').next() {
        c.url = first.trim().to_owned();
    }
    BulkConnection::open(&c, false)
}

/// `--estimate` or `--verify-only`: run the check alone.
pub fn run_alone(cli: &Cli, args: &LoadArgs, mapping: &Mapping, cluster: bool) -> Result<(), Fail> {
    let checks = &args.checks;
    let mut source = open_source(args)?;
    let mut con = BulkConnection::open(&args.connection, cluster)?;
    if checks.estimate {
        let options = EstimateOptions {
            sample: checks
                .sample
                .map_or(redstash::load::DEFAULT_ESTIMATE_SAMPLE, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            records: checks.records,
        };
        let est = estimate_memory(mapping, source.as_mut(), &mut con, &options)?;
        crate::report(cli, est.to_json(), est.summary());
        return Ok(());
    }
    verify(cli, args, mapping, &mut con, source)
}

fn verify(
    cli: &Cli,
    args: &LoadArgs,
    mapping: &Mapping,
    con: &mut BulkConnection,
    mut source: Box<dyn redstash::load::Source + Send>,
) -> Result<(), Fail> {
    let options = VerifyOptions {
        sample: args.checks.sample,
        ..VerifyOptions::default()
    };
    let report = verify_load(mapping, source.as_mut(), con, &options)?;
    let mut json = report.to_json();
    if let Some(o) = json.as_object_mut() {
        o.insert("verify".into(), true.into());
    }
    crate::report(cli, json, report.summary());
    if report.is_ok() {
        Ok(())
    } else {
        Err(Fail(
            1,
            format!(
                "verification found {} mismatches in {} checks",
                report.mismatched(),
                report.checked
            ),
        ))
    }
}

/// What a load set up before it started and undoes after it: persistence off.
pub struct Session {
    guard: Option<PersistenceGuard<BulkConnection>>,
}

/// The settings to put back when a second Ctrl-C ends the process at once (the guard's
/// drop does not run then).
static FORCED_RESTORE: Mutex<Option<(Connection, SavedPersistence)>> = Mutex::new(None);

/// Before a load into Redis (not `--emit-resp`): the memory pre-check (unless
/// `--no-memory-check`), then persistence off with `--no-persistence`.
pub fn before_load(
    cli: &Cli,
    args: &LoadArgs,
    mapping: &Mapping,
    cluster: bool,
) -> Result<Session, Fail> {
    let checks = &args.checks;
    if !checks.no_memory_check {
        memory_check(cli, args, mapping, cluster)?;
    }
    let mut session = Session { guard: None };
    if checks.no_persistence {
        let guard = PersistenceGuard::turn_off(seed(&args.connection)?)?;
        if let Some(why) = guard.skipped() {
            warn(
                cli,
                &format!("--no-persistence: persistence left on: {why}"),
            );
        } else if let Some(saved) = guard.saved() {
            if cluster {
                warn(
                    cli,
                    "--no-persistence on a cluster turns persistence off on the seed node only",
                );
            }
            if let Ok(mut g) = FORCED_RESTORE.lock() {
                *g = Some((args.connection.clone(), saved.clone()));
            }
        }
        session.guard = Some(guard);
    }
    Ok(session)
}

impl Session {
    /// Restore what `before_load` changed (the guard's drop does it too, on an early
    /// return).
    pub fn finish(mut self, cli: &Cli) {
        if let Some(g) = self.guard.take() {
            let saved = g.saved().cloned();
            if let Err(e) = g.restore() {
                let what = saved
                    .map(|s| {
                        format!(
                            " (set them by hand: CONFIG SET save {:?}; CONFIG SET appendonly {})",
                            s.save, s.appendonly
                        )
                    })
                    .unwrap_or_default();
                warn(
                    cli,
                    &format!("could not restore the persistence settings: {e}{what}"),
                );
            }
            if let Ok(mut g) = FORCED_RESTORE.lock() {
                *g = None;
            }
        }
    }
}

/// Called by the Ctrl-C handler before it ends the process at once (a second Ctrl-C):
/// restore the persistence settings a `--no-persistence` load turned off.
pub fn on_forced_exit() {
    let Ok(mut g) = FORCED_RESTORE.try_lock() else {
        return;
    };
    if let Some((connection, saved)) = g.take()
        && let Ok(mut con) = seed(&connection)
    {
        let mut cmd = |name: &str, value: &str| {
            let mut c = redis::cmd("CONFIG");
            c.arg("SET").arg(name).arg(value);
            let req = redstash::exec::Request::single(c, None);
            let _ = redstash::exec::SyncConnection::run_request(&mut con, &req);
        };
        cmd("save", &saved.save);
        cmd("appendonly", &saved.appendonly);
    }
}

/// The memory pre-check: refuse to start when the estimate from a small sample
/// exceeds `maxmemory - used_memory`. Skipped on a cluster (with a warning: use
/// `--estimate`), for standard input, and without a `maxmemory`.
fn memory_check(cli: &Cli, args: &LoadArgs, mapping: &Mapping, cluster: bool) -> Result<(), Fail> {
    if cluster {
        warn(
            cli,
            "the memory pre-check is for one server: skipped on a cluster (see --estimate)",
        );
        return Ok(());
    }
    if args.source.as_os_str() == "-" {
        warn(
            cli,
            "the memory pre-check needs to read the input twice: skipped for standard input",
        );
        return Ok(());
    }
    let mut source = open_source(args)?;
    let mut con = BulkConnection::open(&args.connection, false)?;
    match precheck_memory(mapping, source.as_mut(), &mut con)?.0 {
        MemoryCheck::Fits { .. } | MemoryCheck::NoLimit => Ok(()),
        MemoryCheck::Unknown(why) => {
            warn(cli, &format!("memory pre-check skipped: {why}"));
            Ok(())
        }
        MemoryCheck::TooBig {
            needed,
            room,
            used_memory,
            maxmemory,
        } => Err(Fail(
            1,
            format!(
                "the load needs about {needed} bytes (estimate plus its error, from a sample) \
                 but the server has {room} left (maxmemory {maxmemory}, used_memory \
                 {used_memory}): not started (--no-memory-check to load anyway, --estimate \
                 for the details)"
            ),
        )),
    }
}

/// After a load: `--verify`.
pub fn after_load(
    cli: &Cli,
    args: &LoadArgs,
    mapping: &Mapping,
    cluster: bool,
) -> Result<(), Fail> {
    if !args.checks.verify || args.emit_resp.is_some() {
        return Ok(());
    }
    if args.source.as_os_str() == "-" {
        warn(
            cli,
            "--verify needs to read the input again: skipped for standard input",
        );
        return Ok(());
    }
    let source = open_source(args)?;
    let mut con = BulkConnection::open(&args.connection, cluster)?;
    verify(cli, args, mapping, &mut con, source)
}
