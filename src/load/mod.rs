//! Bulk loading: records from a source (any iterator, CSV, JSON Lines; Arrow IPC and
//! Parquet with the `parquet` feature; PostgreSQL with `postgres`) mapped to commands and
//! sent pipelined, with exact accounting, resumable from a checkpoint, shardable across
//! machines. The CLI's `redstash load` is this module.
//!
//! - A [`Mapping`] says what a record becomes: a key from a [`KeyTemplate`]
//!   (`user:{id}`), its value ([`ValueMapping`]: a JSON object of the record, hash
//!   fields, or one field's raw value), a [`Ttl`], and [`IndexOp`]s (`SADD`, a lookup
//!   `HSET`, `ZADD` by a numeric field...), optionally applied atomically per record
//!   ([`Atomicity`]: `MULTI`/`EXEC` or a Lua script run with `EVALSHA`).
//! - A [`Source`] gives records one at a time, in bounded memory.
//! - A [`Loader`] reads the source into batches of `batch_size` records (5,000 by
//!   default), keeps at most `window` batches queued, and sends them over one or more
//!   connections (any [`SyncConnection`](crate::exec::SyncConnection): a direct
//!   connection, a cluster connection that groups commands by node, a redis-rs
//!   connection), each record's fate read from the replies: the [`LoadReport`] counts
//!   only what the server acknowledged.
//!
//! ```no_run
//! use redstash::direct::DirectConnection;
//! use redstash::load::{CsvOptions, CsvSource, IndexOp, Input, KeyTemplate, Loader, Mapping};
//!
//! let mapping = Mapping::new(KeyTemplate::parse("user:{id}")?)
//!     .with_index(IndexOp::Hset {
//!         hash: KeyTemplate::parse("users:by_email")?,
//!         field: KeyTemplate::parse("{email}")?,
//!         value: None,
//!     });
//! let mut source = CsvSource::new(Input::open("users.csv")?, CsvOptions::default())?;
//! let mut con = DirectConnection::open("redis://127.0.0.1/")?;
//! let report = Loader::new(mapping)
//!     .with_checkpoint("users.checkpoint")
//!     .load(&mut source, &mut con)?;
//! println!("{}", report.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arrays;
mod batch;
mod checkpoint;
mod emit;
mod estimate;
#[cfg(all(feature = "parquet", feature = "ndarray"))]
mod features;
mod json;
mod mapping;
mod persistence;
mod record;
mod report;
mod round;
mod run;
pub mod source;
mod tally;
mod template;
mod verify;

pub use self::verify::{
    MAX_REPORTED_MISMATCHES, Mismatch, MismatchKind, VerifyOptions, VerifyReport, verify_load,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use self::arrays::{ArrayFileError, ArrayLoad, ArrayLoadReport};
pub use self::batch::Shard;
pub use self::checkpoint::Checkpoint;
pub use self::estimate::{
    DEFAULT_ESTIMATE_SAMPLE, EstimateOptions, MemoryCheck, MemoryEstimate, MemoryInfo,
    PRECHECK_MARGIN_PERCENT, PRECHECK_SAMPLE, RecordCount, check_memory, estimate_memory,
    precheck_memory,
};
#[cfg(all(feature = "parquet", feature = "ndarray"))]
pub use self::features::{FeatureLoad, FeatureLoadReport, VectorColumns};
pub use self::mapping::{Atomicity, FieldFilter, IndexOp, Mapping, Ttl, TtlField, ValueMapping};
pub use self::persistence::{PersistenceGuard, SavedPersistence};
pub use self::record::{Position, Record, Value};
pub use self::report::{LoadReport, MAX_REPORTED_ERRORS, Progress, RecordError, Stage};
#[cfg(feature = "parquet")]
pub use self::source::{ArrowSource, ParquetSource};
pub use self::source::{
    CsvOptions, CsvSource, Format, Input, IterSource, JsonLinesSource, Read, ResumePoint, Source,
};
#[cfg(feature = "postgres")]
pub use self::source::{PostgresOptions, PostgresSource};
pub use self::template::{KeyTemplate, MappingProblem};

use crate::exec::RetryPolicy;

/// Records per batch by default (one pipelined request each).
pub const DEFAULT_BATCH_SIZE: usize = 5_000;

/// Batches queued for sending by default (memory: about twice this many batches).
pub const DEFAULT_WINDOW: usize = 8;

/// What to do with a record that cannot be read, mapped or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop reading at the first one (the batches already queued are still sent).
    #[default]
    Stop,
    /// Count it, report it (and write it to the rejects file) and go on, up to
    /// `max_errors`.
    Skip,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Loads a source into Redis under a [`Mapping`] (see the [module docs](self)).
#[derive(Clone)]
pub struct Loader {
    mapping: Mapping,
    batch_size: usize,
    window: usize,
    on_error: OnError,
    max_errors: Option<u64>,
    retry: RetryPolicy,
    checkpoint: Option<PathBuf>,
    rejects: Option<PathBuf>,
    shard: Option<Shard>,
    cluster: bool,
    progress: Option<ProgressFn>,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("mapping", &self.mapping)
            .field("batch_size", &self.batch_size)
            .field("window", &self.window)
            .field("on_error", &self.on_error)
            .field("max_errors", &self.max_errors)
            .field("checkpoint", &self.checkpoint)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader with the defaults: batches of [`DEFAULT_BATCH_SIZE`], a window of
    /// [`DEFAULT_WINDOW`], stop at the first error, a retry policy of 8 retries (pauses
    /// from 50 ms doubling to 2 s) for records that may be sent again.
    pub fn new(mapping: Mapping) -> Self {
        Loader {
            mapping,
            batch_size: DEFAULT_BATCH_SIZE,
            window: DEFAULT_WINDOW,
            on_error: OnError::Stop,
            max_errors: None,
            retry: RetryPolicy::default().with_max_retries(8),
            checkpoint: None,
            rejects: None,
            shard: None,
            cluster: false,
            progress: None,
            cancel: None,
        }
    }

    /// Records per batch (at least 1; 5,000 to 10,000 is best for small records).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Batches queued for sending (at least 1).
    pub fn with_window(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }

    /// What to do with a record that fails.
    pub fn with_on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// With [`OnError::Skip`], stop once more than `n` records failed or were skipped.
    pub fn with_max_errors(mut self, n: Option<u64>) -> Self {
        self.max_errors = n;
        self
    }

    /// When records are sent again after a connection failure or a transient refusal
    /// (only when the mapping [is idempotent](Mapping::is_idempotent), but for records
    /// never sent).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Keep a checkpoint in `path`: a load that finds one continues after its position
    /// (and refuses one of another source or mapping). Needs an idempotent mapping.
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Write every record that failed or was skipped to `path`, as JSON Lines
    /// (`record`, `line`, `key`, `stage`, `error`, `data`: the record).
    pub fn with_rejects(mut self, path: impl Into<PathBuf>) -> Self {
        self.rejects = Some(path.into());
        self
    }

    /// Take only this shard's batches (see [`Shard`]).
    pub fn with_shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// The connections are to a Redis Cluster: an atomic mapping must keep a record's
    /// keys in one slot (checked before anything is sent, and per record).
    pub fn for_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Call `f` with the progress a few times a second (and once at the end).
    pub fn with_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Stop reading when `flag` becomes true (e.g. on Ctrl-C): the batches queued are
    /// sent, the checkpoint written, and the report says so.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }
}

/// A fresh encoder (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn mapping_encoder() -> mapping::Encoder {
    mapping::Encoder::default()
}

/// One record's commands as RESP and their number, `None` when it cannot be mapped
/// (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn encode_for_fuzzing(
    enc: &mut mapping::Encoder,
    mapping: &Mapping,
    record: &Record,
) -> Option<(Vec<u8>, usize)> {
    let e = enc.encode(mapping, record).ok()?;
    let mut p = crate::resp::Packed::default();
    let n = e.write_resp(&mut p, None);
    Some((p.as_bytes().to_vec(), n))
}
