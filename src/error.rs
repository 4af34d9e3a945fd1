//! The one error type of the crate, and how Redis errors are classified.

use crate::dtype::DType;

/// Result alias used throughout redstash.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in redstash.
///
/// Decoding errors name the exact mismatch; Redis errors keep the key they were
/// about (when there is one) and the classification of [`RedisErrorKind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stored array has another element type than the one asked for.
    #[error("dtype mismatch: expected {expected}, found {found}")]
    DTypeMismatch {
        /// The dtype the caller asked for.
        expected: DType,
        /// The dtype of the value.
        found: DType,
    },
    /// The stored array has another shape or number of dimensions than the one asked for.
    #[error("shape mismatch: expected {expected}, found {found:?}")]
    ShapeMismatch {
        /// What the caller asked for (e.g. `ndim 2`, or a shape).
        expected: String,
        /// The shape of the value.
        found: Vec<usize>,
    },
    /// A dtype descriptor or name redstash does not support (structured, object, strings...).
    #[error("unsupported dtype {0:?}")]
    UnsupportedDType(String),
    /// The bytes are not in any format redstash knows (bad magic).
    #[error("unknown format: {0}")]
    UnknownFormat(String),
    /// The value is in a known format but is malformed.
    #[error("corrupt {format} value: {reason}")]
    Corrupt {
        /// Which format was being decoded (`npy`, `lz4`, `zlib`, ...).
        format: &'static str,
        /// What exactly is wrong.
        reason: String,
    },
    /// The value ends before the data its header declares.
    #[error("truncated {format} value: header declares {expected} bytes of data, {actual} present")]
    Truncated {
        /// Which format was being decoded.
        format: &'static str,
        /// Bytes the header declares.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// A decoded value would exceed the configured size cap ([`crate::Limits`]).
    #[error("value too large: {declared} bytes declared, cap is {cap} bytes")]
    TooLarge {
        /// Bytes the value declares (or would decompress to).
        declared: u64,
        /// The configured cap.
        cap: u64,
    },
    /// A codec was asked for that this build does not include (e.g. zstd without the feature).
    #[error("{0} support is not enabled in this build (enable the cargo feature)")]
    FeatureDisabled(&'static str),
    /// The caller passed an argument that cannot work (empty key, zero chunk size...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A key exists but holds something that is not a redstash value of the expected kind.
    #[error("key {key:?}: {reason}")]
    NotAnArray {
        /// The Redis key.
        key: String,
        /// What was found instead.
        reason: String,
    },
    /// A chunked array is missing some of its chunks (deleted or expired under it).
    #[error("key {key:?}: chunked array is incomplete, missing chunks {missing:?}")]
    MissingChunks {
        /// The key of the array's manifest.
        key: String,
        /// Indices of the missing chunks.
        missing: Vec<usize>,
    },
    /// A table is missing some of its batch keys (deleted or expired under it, or never
    /// written): `TableStore` (feature `arrow`).
    #[error("table {table:?} is incomplete, missing batch keys {missing:?}")]
    MissingBatches {
        /// The table's key prefix.
        table: String,
        /// The missing batch keys.
        missing: Vec<String>,
    },
    /// A table batch has another schema than the table (its manifest, or the first batch
    /// of a table without one): `TableStore` (feature `arrow`).
    #[error("key {key:?}: schema mismatch: expected {expected}, found {found}")]
    SchemaMismatch {
        /// The batch key (or table prefix when splitting).
        key: String,
        /// The expected fields.
        expected: String,
        /// The fields found.
        found: String,
    },
    /// A table was rewritten while it was read: a batch belongs to another generation
    /// than the manifest that was read. Read again: `TableStore` (feature `arrow`).
    #[error(
        "table {table:?} changed while it was read: manifest generation {expected}, batch {key:?} has {found:?}"
    )]
    TableChanged {
        /// The table's key prefix.
        table: String,
        /// The batch key.
        key: String,
        /// The manifest's generation.
        expected: u64,
        /// The batch's generation (`None`: not written by redstash).
        found: Option<u64>,
    },
    /// A table batch key holds a value that is not a valid Arrow IPC stream; `source`
    /// says what is wrong ([`Error::UnknownFormat`], [`Error::Corrupt`], ...).
    #[error("key {key:?}: {source}")]
    BadBatch {
        /// The batch key.
        key: String,
        /// The decoding error.
        #[source]
        source: Box<Error>,
    },
    /// A batch exists but has no array of this name ([`crate::BatchStore`]).
    #[error("key {key:?}: no field {field:?}")]
    MissingField {
        /// The Redis key of the batch.
        key: String,
        /// The name that was asked for.
        field: String,
    },
    /// A feature view is not registered ([`crate::FeatureStore`]).
    #[error("feature view {0:?} is not registered")]
    UnknownView(String),
    /// A feature view is already registered with another definition; replace it
    /// explicitly to change it.
    #[error("feature view {view:?} is registered as {registered}, not {requested}")]
    ViewConflict {
        /// The view's name.
        view: String,
        /// The definition in the registry.
        registered: String,
        /// The definition that was asked for.
        requested: String,
    },
    /// A bulk write did not store every item. Says exactly what became of each item
    /// (indices into the input, sorted), so the caller can write again only what needs
    /// it: `written` items are stored, `refused` and `not_sent` ones are not, `unknown`
    /// ones may or may not be. A bulk write that fails before sending anything returns
    /// its error itself (nothing was stored), not this.
    #[error(
        "partial write: {} written, {} refused, {} unknown (sent, no reply), {} not sent: {source}",
        written.len(), refused.len(), unknown.len(), not_sent.len()
    )]
    PartialWrite {
        /// Items the server acknowledged: stored (durably, with `appendfsync always`).
        written: Vec<usize>,
        /// Items the server refused with an error reply (`WRONGTYPE`, `OOM`, ...): not
        /// stored.
        refused: Vec<usize>,
        /// Items sent whose reply never came (the connection failed or timed out while
        /// they were in flight): they may or may not be stored. Writing them again is
        /// safe (every redstash bulk write stores whole values).
        unknown: Vec<usize>,
        /// Items never sent (after the failure): not stored.
        not_sent: Vec<usize>,
        /// What cut the write short (a connection failure), else the first refusal.
        #[source]
        source: Box<Error>,
    },
    /// A table has batch keys and redstash's split-in-progress marker but no manifest:
    /// its first split was interrupted (or is still running), so the batches present
    /// are not the whole table. Split it again (or delete it): `TableStore` (feature
    /// `arrow`).
    #[error(
        "table {table:?} is incomplete: its first split was interrupted (or is still running) before its manifest was written; split it again or delete it"
    )]
    IncompleteTable {
        /// The table's key prefix.
        table: String,
    },
    /// A table has a manifest and redstash's split-in-progress marker: a re-split was
    /// interrupted (or is still running), so its batches may mix the old and the new
    /// generation. Split it again: `TableStore` (feature `arrow`).
    #[error(
        "a re-split of table {table:?} was interrupted (or is still running): its batches may mix generation {generation} and the next; split again"
    )]
    ResplitInterrupted {
        /// The table's key prefix.
        table: String,
        /// The generation of the manifest still in place.
        generation: u64,
    },
    /// A stored value is not what was written: its xxh3-64 checksum differs from the
    /// one its manifest recorded (the value was corrupted or overwritten by something
    /// else than redstash). Either a table batch, checked against its table's manifest
    /// (`TableStore`, feature `arrow`), or a chunked array, whose chunks assembled are
    /// checked against the checksum of its chunk manifest ([`crate::ArrayStore`]).
    #[error(
        "key {key:?}: checksum {found:#018x} is not the manifest's {expected:#018x}: the stored value is corrupt"
    )]
    ChecksumMismatch {
        /// The batch key, or the key of a chunked array (of its manifest).
        key: String,
        /// The checksum the manifest records.
        expected: u64,
        /// The checksum of the value read.
        found: u64,
    },
    /// The Redis server answered with an error or the connection failed.
    #[error("redis error ({kind:?}){}: {source}", key.as_deref().map(|k| format!(" on key {k:?}")).unwrap_or_default())]
    Redis {
        /// The classification of the error, which also carries the retry decision.
        kind: RedisErrorKind,
        /// The key the command was about, when there was a single one.
        key: Option<String>,
        /// The error as redis-rs reported it.
        #[source]
        source: redis::RedisError,
    },
    /// A request that must run on one Redis Cluster node (a `MULTI`/`EXEC`
    /// transaction) names keys of several hash slots: it cannot be atomic on a cluster.
    /// Give the keys a common hash tag (`{tag}`) to keep them in one slot.
    #[error("redis cluster: a transaction{} spans hash slots {slots:?}; keys need a common hash tag", key.as_deref().map(|k| format!(" on key {k:?}")).unwrap_or_default())]
    CrossSlot {
        /// The key the request was about, when there was a single one.
        key: Option<String>,
        /// The distinct slots of its keys, sorted.
        slots: Vec<u16>,
    },
    /// The server answered something the operation did not expect.
    #[error("unexpected reply from redis{}: {reason}", key.as_deref().map(|k| format!(" for key {k:?}")).unwrap_or_default())]
    UnexpectedReply {
        /// What was expected and what came.
        reason: String,
        /// The key the command was about, when there was a single one.
        key: Option<String>,
    },
    /// A worker of a parallel operation panicked (a bug in redstash or in a callback it
    /// ran): the operation did not finish. What was written before is as the operation's
    /// docs say for an interrupted run (e.g. an interrupted split).
    #[error("{task} panicked; the operation did not finish")]
    Panicked {
        /// What the worker was doing.
        task: String,
    },
    /// A local I/O error (files, sockets of the testkit).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// JSON of a metadata value could not be read or written.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

/// What kind of Redis failure an [`Error::Redis`] is, and so what a retry policy may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedisErrorKind {
    /// `WRONGTYPE`: the key holds another Redis type.
    WrongType,
    /// `OOM`: the server is at `maxmemory` and refuses writes.
    OutOfMemory,
    /// `NOAUTH`, `WRONGPASS`, `NOPERM`: authentication or ACL failure.
    Auth,
    /// The connection could not be made, was dropped, or timed out.
    Connection,
    /// Cluster redirection (`MOVED`/`ASK`): retry on the right node.
    Redirect,
    /// `TRYAGAIN`, `LOADING`, `BUSY`, `MASTERDOWN`: transient, retry after a pause.
    Transient,
    /// `READONLY`: the command hit a replica.
    ReadOnly,
    /// Any other error.
    Other,
}

impl RedisErrorKind {
    /// Classify a redis-rs error: by redis-rs's own kind first (so that the same failure
    /// gets the same kind whichever connection reported it), then by the server's error
    /// code, then by the message.
    pub fn classify(err: &redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout()
        {
            return Self::Connection;
        }
        if let Some(kind) = Self::from_redis_kind(err.kind()) {
            return kind;
        }
        // A transaction refused at EXEC (or a failed pipeline) carries the queued
        // commands' own errors: classify by the first one that says more than EXECABORT.
        if let Some(inner) = err.clone().into_server_errors()
            && let Some(kind) = inner
                .iter()
                .map(|(_, e)| Self::classify_code(e.code(), &e.to_string()))
                .find(|k| *k != Self::Other)
        {
            return kind;
        }
        Self::classify_code(err.code().unwrap_or(""), &err.to_string())
    }

    /// The kind redis-rs's own classification implies, when it implies one.
    fn from_redis_kind(kind: redis::ErrorKind) -> Option<Self> {
        use redis::{ErrorKind as K, ServerErrorKind as S};
        Some(match kind {
            K::AuthenticationFailed => Self::Auth,
            K::Io => Self::Connection,
            K::Server(S::NoPerm) => Self::Auth,
            K::Server(S::Moved | S::Ask) => Self::Redirect,
            K::Server(S::TryAgain | S::BusyLoading | S::ClusterDown | S::MasterDown) => {
                Self::Transient
            }
            K::Server(S::ReadOnly) => Self::ReadOnly,
            // EXECABORT carries the queued commands' errors; other kinds say nothing
            // more than their code: classified below.
            _ => return None,
        })
    }

    /// Classify by a server error code, else by the message (any spelling of the code,
    /// e.g. redis-rs's `NoPerm` kind name).
    fn classify_code(code: &str, message: &str) -> Self {
        match code.to_ascii_uppercase().as_str() {
            "WRONGTYPE" => Self::WrongType,
            "OOM" => Self::OutOfMemory,
            "NOAUTH" | "WRONGPASS" | "NOPERM" => Self::Auth,
            "MOVED" | "ASK" => Self::Redirect,
            "TRYAGAIN" | "LOADING" | "BUSY" | "MASTERDOWN" | "CLUSTERDOWN" => Self::Transient,
            "READONLY" => Self::ReadOnly,
            _ => {
                let msg = message.to_ascii_uppercase();
                if msg.contains("WRONGPASS") || msg.contains("NOAUTH") || msg.contains("NOPERM") {
                    Self::Auth
                } else if msg.contains("OOM") {
                    Self::OutOfMemory
                } else if msg.contains("WRONGTYPE") {
                    Self::WrongType
                } else {
                    Self::Other
                }
            }
        }
    }

    /// Whether an operation that failed this way may simply be sent again
    /// (after a redirect or a pause).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Redirect | Self::Transient)
    }
}

impl Error {
    /// Wrap a redis-rs error, classifying it and remembering the key.
    pub fn redis(source: redis::RedisError, key: Option<&str>) -> Self {
        Error::Redis {
            kind: RedisErrorKind::classify(&source),
            key: key.map(str::to_owned),
            source,
        }
    }

    /// The Redis classification when this is a Redis error.
    pub fn redis_kind(&self) -> Option<RedisErrorKind> {
        match self {
            Error::Redis { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn unexpected(reason: impl Into<String>, key: Option<String>) -> Self {
        Error::UnexpectedReply {
            reason: reason.into(),
            key,
        }
    }

    /// A connection that is gone (a node connection dropped between calls): a Redis
    /// error of kind [`RedisErrorKind::Connection`].
    pub(crate) fn connection_lost(what: impl Into<String>) -> Self {
        let io = std::io::Error::new(std::io::ErrorKind::NotConnected, what.into());
        Error::redis(redis::RedisError::from(io), None)
    }

    pub(crate) fn panicked(task: impl Into<String>) -> Self {
        Error::Panicked { task: task.into() }
    }

    pub(crate) fn corrupt(format: &'static str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            format,
            reason: reason.into(),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::redis(e, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_errors() {
        let e = redis::make_extension_error("WRONGTYPE".into(), Some("Operation".into()));
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::WrongType);
        let e = redis::make_extension_error("OOM".into(), Some("command not allowed".into()));
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::OutOfMemory);
        assert!(!RedisErrorKind::OutOfMemory.is_retryable());
        let e = redis::make_extension_error("NoPerm".into(), Some("no permissions".into()));
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Auth);
        assert!(RedisErrorKind::Transient.is_retryable());
    }
}
