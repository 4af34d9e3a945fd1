//! The one error type of the crate, and how Redis errors are classified.
//!
//! Each variant's `Display` says what went wrong at its own level; the error that caused
//! it (a redis-rs error, an I/O error, the first failure of a bulk write) is only
//! reachable through [`std::error::Error::source`], so printing the chain (`anyhow`'s
//! `{:#}`, or a loop over `source()`) says each thing once.

use std::fmt;

use crate::dtype::DType;

/// Result alias used throughout redstash.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in redstash.
///
/// Data errors ([`InvalidValue`](Error::InvalidValue), the mismatches,
/// [`UnsupportedDType`](Error::UnsupportedDType)) name where the data came from
/// ([`Origin`]); Redis errors keep the key they were about (when there is one) and the
/// classification of [`RedisErrorKind`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A value cannot be decoded: it is not in a format redstash reads, or it is
    /// malformed, truncated, too large for the configured [`crate::Limits`], or not what
    /// its manifest recorded. One arm for "this value is bad"; `problem` says how.
    InvalidValue {
        /// Where the value came from (the key, or the caller's input).
        origin: Origin,
        /// What is wrong with it.
        problem: ValueProblem,
    },
    /// The array has another element type than the operation needs: on a read, the
    /// stored value's dtype is not the one asked for; on a write to a feature view, the
    /// array's dtype is not the view's.
    DTypeMismatch {
        /// The key (or feature view) the array belongs to.
        origin: Origin,
        /// The dtype the operation needs: the one asked for (a read), or the view's (a
        /// write to a feature view).
        expected: DType,
        /// The dtype it got: the stored value's (a read), or the given array's (a write).
        found: DType,
    },
    /// The array has another shape or number of dimensions than the operation needs
    /// (same sides as [`DTypeMismatch`](Error::DTypeMismatch)).
    ShapeMismatch {
        /// The key (or feature view) the array belongs to.
        origin: Origin,
        /// What the operation needs (e.g. `ndim 2`, or a shape).
        expected: String,
        /// The shape it got.
        found: Vec<usize>,
    },
    /// A dtype descriptor or name redstash does not support (structured, object,
    /// strings...): the value may be a valid `.npy` that redstash cannot hold.
    UnsupportedDType {
        /// Where the descriptor came from (a stored value's key, or the caller's input).
        origin: Origin,
        /// The descriptor or name.
        dtype: String,
    },
    /// A codec was asked for that this build does not include (e.g. zstd without the feature).
    FeatureDisabled(&'static str),
    /// The caller passed an argument that cannot work (empty key, zero chunk size...).
    InvalidArgument(String),
    /// A chunked array is missing some of its chunks (deleted or expired under it).
    MissingChunks {
        /// The key of the array's manifest.
        key: String,
        /// Indices of the missing chunks.
        missing: Vec<usize>,
    },
    /// A table is missing some of its batch keys (deleted or expired under it, or never
    /// written): `TableStore` (feature `arrow`).
    MissingBatches {
        /// The table's key prefix.
        table: String,
        /// The missing batch keys.
        missing: Vec<String>,
    },
    /// A table batch has another schema than the table (its manifest, or the first batch
    /// of a table without one): `TableStore` (feature `arrow`).
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
    /// A batch exists but has no array of this name ([`crate::BatchStore`]).
    MissingField {
        /// The Redis key of the batch.
        key: String,
        /// The name that was asked for.
        field: String,
    },
    /// A feature view is not registered ([`crate::FeatureStore`]).
    UnknownView(String),
    /// A feature view is already registered with another definition; replace it
    /// explicitly to change it.
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
    /// its error itself (nothing was stored), not this. Its `source` is what cut the
    /// write short.
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
        source: Box<Error>,
    },
    /// A table has batch keys and redstash's split-in-progress marker but no manifest:
    /// its first split was interrupted (or is still running), so the batches present
    /// are not the whole table. Split it again (or delete it): `TableStore` (feature
    /// `arrow`).
    IncompleteTable {
        /// The table's key prefix.
        table: String,
    },
    /// A table has a manifest and redstash's split-in-progress marker: a re-split was
    /// interrupted (or is still running), so its batches may mix the old and the new
    /// generation. Split it again: `TableStore` (feature `arrow`).
    ResplitInterrupted {
        /// The table's key prefix.
        table: String,
        /// The generation of the manifest still in place.
        generation: u64,
    },
    /// The Redis server answered with an error or the connection failed. Its `source`
    /// is what redis-rs reported (the server's message, or the I/O error).
    Redis {
        /// The classification of the error, which also carries the retry decision.
        kind: RedisErrorKind,
        /// The key the command was about, when there was a single one.
        key: Option<String>,
        /// The error as redis-rs reported it.
        source: redis::RedisError,
    },
    /// A request that must run on one Redis Cluster node (a `MULTI`/`EXEC`
    /// transaction) names keys of several hash slots: it cannot be atomic on a cluster.
    /// Give the keys a common hash tag (`{tag}`) to keep them in one slot.
    CrossSlot {
        /// The key the request was about, when there was a single one.
        key: Option<String>,
        /// The distinct slots of its keys, sorted.
        slots: Vec<u16>,
    },
    /// The server answered something the operation did not expect.
    UnexpectedReply {
        /// What was expected and what came.
        reason: String,
        /// The key the command was about, when there was a single one.
        key: Option<String>,
    },
    /// A worker of a parallel operation, or the work of a
    /// [`Step::compute`](crate::exec::Step::compute) step (e.g. a decode), panicked (a bug
    /// in redstash or in a callback it ran): the operation did not finish. What was
    /// written before is as the operation's docs say for an interrupted run (e.g. an
    /// interrupted split).
    Panicked {
        /// What the worker was doing.
        task: String,
    },
    /// A local I/O error (files, sockets of the testkit); its `source` is the
    /// [`std::io::Error`].
    Io(std::io::Error),
    /// Metadata could not be written as JSON; its `source` is the [`serde_json::Error`].
    Json(serde_json::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_key = |key: &Option<String>| {
            key.as_deref()
                .map(|k| format!(" on key {k:?}"))
                .unwrap_or_default()
        };
        match self {
            Error::InvalidValue { origin, problem } => write!(f, "{}{problem}", origin.prefix()),
            Error::DTypeMismatch {
                origin,
                expected,
                found,
            } => write!(
                f,
                "{}dtype mismatch: expected {expected}, found {found}",
                origin.prefix()
            ),
            Error::ShapeMismatch {
                origin,
                expected,
                found,
            } => write!(
                f,
                "{}shape mismatch: expected {expected}, found {found:?}",
                origin.prefix()
            ),
            Error::UnsupportedDType { origin, dtype } => {
                write!(f, "{}unsupported dtype {dtype:?}", origin.prefix())
            }
            Error::FeatureDisabled(what) => write!(
                f,
                "{what} support is not enabled in this build (enable the cargo feature)"
            ),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::MissingChunks { key, missing } => write!(
                f,
                "key {key:?}: chunked array is incomplete, missing chunks {missing:?}"
            ),
            Error::MissingBatches { table, missing } => write!(
                f,
                "table {table:?} is incomplete, missing batch keys {missing:?}"
            ),
            Error::SchemaMismatch {
                key,
                expected,
                found,
            } => write!(
                f,
                "key {key:?}: schema mismatch: expected {expected}, found {found}"
            ),
            Error::TableChanged {
                table,
                key,
                expected,
                found,
            } => write!(
                f,
                "table {table:?} changed while it was read: manifest generation {expected}, batch {key:?} has {found:?}"
            ),
            Error::MissingField { key, field } => write!(f, "key {key:?}: no field {field:?}"),
            Error::UnknownView(view) => write!(f, "feature view {view:?} is not registered"),
            Error::ViewConflict {
                view,
                registered,
                requested,
            } => write!(
                f,
                "feature view {view:?} is registered as {registered}, not {requested}"
            ),
            Error::PartialWrite {
                written,
                refused,
                unknown,
                not_sent,
                ..
            } => write!(
                f,
                "partial write: {} written, {} refused, {} unknown (sent, no reply), {} not sent",
                written.len(),
                refused.len(),
                unknown.len(),
                not_sent.len()
            ),
            Error::IncompleteTable { table } => write!(
                f,
                "table {table:?} is incomplete: its first split was interrupted (or is still running) before its manifest was written; split it again or delete it"
            ),
            Error::ResplitInterrupted { table, generation } => write!(
                f,
                "a re-split of table {table:?} was interrupted (or is still running): its batches may mix generation {generation} and the next; split again"
            ),
            Error::Redis { kind, key, .. } => write!(f, "redis error ({kind:?}){}", on_key(key)),
            Error::CrossSlot { key, slots } => write!(
                f,
                "redis cluster: a transaction{} spans hash slots {slots:?}; keys need a common hash tag",
                on_key(key)
            ),
            Error::UnexpectedReply { reason, key } => write!(
                f,
                "unexpected reply from redis{}: {reason}",
                key.as_deref()
                    .map(|k| format!(" for key {k:?}"))
                    .unwrap_or_default()
            ),
            Error::Panicked { task } => write!(f, "{task} panicked; the operation did not finish"),
            Error::Io(_) => f.write_str("i/o error"),
            Error::Json(_) => f.write_str("json error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::PartialWrite { source, .. } => Some(source.as_ref()),
            Error::Redis { source, .. } => Some(redis_cause(source)),
            Error::Io(e) => Some(e),
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// The cause of an [`Error::Redis`] in the chain: the redis-rs error, or, when that
/// error only wraps another one (an I/O or a server error, whose text it displays as
/// its own), the wrapped error, so that the chain says the text once.
fn redis_cause(e: &redis::RedisError) -> &(dyn std::error::Error + 'static) {
    use std::error::Error as _;
    match e.source() {
        Some(inner) if inner.to_string() == e.to_string() => inner,
        _ => e,
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}

/// Where the data of a data error came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The caller's own input (bytes or an array passed in, a local file), not a value
    /// read from Redis.
    Input,
    /// The value of this Redis key.
    Key(String),
    /// A field of a Redis hash (an array of a [`crate::BatchStore`] batch).
    Field {
        /// The hash's key.
        key: String,
        /// The field.
        field: String,
    },
    /// A feature view of a [`crate::FeatureStore`]: its registry entry, or the dtype
    /// and shape it requires.
    View(String),
}

impl Origin {
    /// The Redis key, when the data came from one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Origin::Key(key) | Origin::Field { key, .. } => Some(key),
            Origin::Input | Origin::View(_) => None,
        }
    }

    /// `"{origin}: "`, or nothing for the caller's input.
    fn prefix(&self) -> String {
        match self {
            Origin::Input => String::new(),
            other => format!("{other}: "),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Input => f.write_str("input"),
            Origin::Key(key) => write!(f, "key {key:?}"),
            Origin::Field { key, field } => write!(f, "key {key:?} field {field:?}"),
            Origin::View(view) => write!(f, "feature view {view:?}"),
        }
    }
}

/// What is wrong with a value that cannot be decoded ([`Error::InvalidValue`]).
///
/// A value read back is never trusted: every one of these is found before anything is
/// allocated from what the value declares. None is retryable; the value has to be
/// written again (or the key was not a redstash value of the kind asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueProblem {
    /// The value is not in the format expected here: no known magic (not a redstash
    /// value at all, e.g. a plain string or an empty value), or another redstash format
    /// (e.g. a table batch where an array was asked for).
    UnknownFormat {
        /// What was found instead.
        reason: String,
    },
    /// The value is in a known format but is malformed.
    Corrupt {
        /// Which format was being decoded (`npy`, `lz4`, `zlib`, `arrow`, `feature
        /// view`, ...).
        format: &'static str,
        /// What exactly is wrong.
        reason: String,
    },
    /// The value ends before the data its header declares.
    Truncated {
        /// Which format was being decoded.
        format: &'static str,
        /// Bytes the header declares.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// The value would exceed a configured size cap ([`crate::Limits`]) once decoded
    /// (or, for a value to write, as given). Raise the limit if the value is legitimate.
    TooLarge {
        /// Bytes the value declares (or would decompress to).
        declared: u64,
        /// The configured cap.
        cap: u64,
    },
    /// The value is not what was written: its xxh3-64 checksum differs from the one its
    /// manifest recorded (corrupted, or overwritten by something else than redstash).
    /// Either a table batch, checked against its table's manifest (`TableStore`, feature
    /// `arrow`), or a chunked array, whose chunks assembled are checked against the
    /// checksum of its chunk manifest ([`crate::ArrayStore`]).
    ChecksumMismatch {
        /// The checksum the manifest records.
        expected: u64,
        /// The checksum of the value read.
        found: u64,
    },
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::UnknownFormat { reason } => write!(f, "unknown format: {reason}"),
            ValueProblem::Corrupt { format, reason } => {
                write!(f, "corrupt {format} value: {reason}")
            }
            ValueProblem::Truncated {
                format,
                expected,
                actual,
            } => write!(
                f,
                "truncated {format} value: header declares {expected} bytes of data, {actual} present"
            ),
            ValueProblem::TooLarge { declared, cap } => write!(
                f,
                "value too large: {declared} bytes declared, cap is {cap} bytes"
            ),
            ValueProblem::ChecksumMismatch { expected, found } => write!(
                f,
                "checksum {found:#018x} is not the manifest's {expected:#018x}: the stored value is corrupt"
            ),
        }
    }
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
    /// The connection could not be made or was dropped: a request in flight may or may
    /// not have run.
    Connection,
    /// The server did not answer (or accept bytes) within the response timeout, or the
    /// connection was not made within the connect timeout: a request in flight may or
    /// may not have run. The connection reconnects at its next call.
    Timeout,
    /// The TLS handshake (or a TLS record) failed: the server's certificate is not
    /// signed by a trusted CA or not for this host, the server refused the client's
    /// certificate (or its absence, with mutual TLS), or the peer does not speak TLS.
    /// Sending the request again does not help: fix the TLS settings (feature `tls`:
    /// [`TlsOptions`](crate::direct::TlsOptions)). A plain `redis://` client on a TLS
    /// port is [`Connection`](Self::Connection) (the server resets it), and a `rediss://`
    /// client on a plain port is [`Timeout`](Self::Timeout) (a plain server never
    /// answers a TLS hello).
    Tls,
    /// Cluster redirection (`MOVED`/`ASK`): retry on the right node.
    Redirect,
    /// `TRYAGAIN`, `LOADING`, `BUSY`, `MASTERDOWN`: transient, retry after a pause.
    Transient,
    /// `READONLY`: the command hit a replica.
    ReadOnly,
    /// A write ran on a Redis Cluster primary, but fewer replicas than asked
    /// acknowledged it within the timeout of a cluster connection's
    /// `with_wait` (feature `cluster`; Redis's `WAIT`): it is
    /// stored on the primary, not proven replicated, so a failover before it reaches a
    /// replica can lose it. Not retryable as such (the write did run); the error's code
    /// is `NOTREPLICATED`.
    NotReplicated,
    /// Any other error.
    Other,
}

impl RedisErrorKind {
    /// Classify a redis-rs error: by redis-rs's own kind first (so that the same failure
    /// gets the same kind whichever connection reported it), then by the server's error
    /// code, then by the message.
    pub fn classify(err: &redis::RedisError) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        if is_tls_failure(err) {
            return Self::Tls;
        }
        if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
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
            "NOTREPLICATED" => Self::NotReplicated,
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
    /// (after a redirect or a pause): the server did not run it.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Redirect | Self::Transient)
    }

    /// What a retry policy may do after a failure of this kind: send anything again
    /// (the server did not run it), send again only a request that is idempotent (it
    /// may have run: a lost connection, a timeout), or not send it again.
    pub fn retry(self) -> Retry {
        match self {
            Self::Redirect | Self::Transient => Retry::Always,
            Self::Connection | Self::Timeout => Retry::IfIdempotent,
            _ => Retry::Never,
        }
    }
}

/// Whether `err` is a TLS failure: an I/O error carrying a rustls error (what redis-rs's
/// and redstash's TLS connections report), or the direct connections' [`TlsFailure`].
#[cfg(feature = "tls")]
fn is_tls_failure(err: &redis::RedisError) -> bool {
    use std::error::Error as _;
    let is_tls =
        |e: &(dyn std::error::Error + 'static)| e.is::<TlsFailure>() || e.is::<rustls::Error>();
    let in_io = |io: &std::io::Error| io.get_ref().is_some_and(|inner| is_tls(inner));
    let Some(source) = err.source() else {
        return false;
    };
    // redis-rs keeps the I/O error behind an `Arc`.
    if let Some(arc) = source.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
    {
        let inner: &(dyn std::error::Error + 'static) = &**arc;
        return inner.downcast_ref::<std::io::Error>().is_some_and(in_io) || is_tls(inner);
    }
    source.downcast_ref::<std::io::Error>().is_some_and(in_io) || is_tls(source)
}

#[cfg(not(feature = "tls"))]
fn is_tls_failure(_: &redis::RedisError) -> bool {
    false
}

/// A failed TLS handshake or TLS record on a direct connection: where, what rustls
/// said, and what to check. Carried inside an I/O error of kind `InvalidData`, so
/// that it classifies as [`RedisErrorKind::Tls`].
#[cfg(feature = "tls")]
#[derive(Debug)]
pub(crate) struct TlsFailure {
    /// Where: `"TLS handshake with HOST:PORT"`, `"TLS with HOST:PORT"`.
    pub(crate) context: String,
    /// What rustls reported.
    pub(crate) source: rustls::Error,
}

#[cfg(feature = "tls")]
impl TlsFailure {
    /// What to check, for the failures with a usual cause.
    fn hint(&self) -> Option<&'static str> {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        Some(match &self.source {
            E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                "the server's certificate is not signed by a CA this client trusts: give \
                 its CA with TlsOptions::with_ca_file or --tls-cacert"
            }
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                "the server's certificate is not for this host name or address"
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                "the server's certificate has expired"
            }
            E::AlertReceived(A::CertificateRequired | A::HandshakeFailure) => {
                "the server refused the handshake: it may require a client certificate, \
                 given with TlsOptions::with_client_cert_files or --tls-cert and --tls-key"
            }
            E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateUnknown) => {
                "the server does not accept the client certificate"
            }
            E::InvalidMessage(_) => "the server does not speak TLS on this port",
            _ => return None,
        })
    }
}

#[cfg(feature = "tls")]
impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.context, self.source)?;
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

#[cfg(feature = "tls")]
impl std::error::Error for TlsFailure {}

/// What a retry policy may do after a failure ([`RedisErrorKind::retry`],
/// [`Error::retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Retry {
    /// Do not send the request again: the failure will not go away by itself (a wrong
    /// type, an ACL refusal, a bad value...).
    Never,
    /// Send it again only if it is idempotent: it may have run (the connection was
    /// lost or timed out while it was in flight).
    IfIdempotent,
    /// Send it again (after a pause or a redirection): the server did not run it.
    Always,
}

impl Retry {
    /// Whether a request that is (or is not) `idempotent` may be sent again.
    pub fn allows(self, idempotent: bool) -> bool {
        match self {
            Retry::Never => false,
            Retry::IfIdempotent => idempotent,
            Retry::Always => true,
        }
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

    /// Whether the operation may simply be sent again: a Redis error whose kind
    /// [`is_retryable`](RedisErrorKind::is_retryable).
    pub fn is_retryable(&self) -> bool {
        self.redis_kind().is_some_and(RedisErrorKind::is_retryable)
    }

    /// What a retry policy may do after this error ([`RedisErrorKind::retry`] of a
    /// Redis error; [`Retry::Never`] for any other error).
    pub fn retry(&self) -> Retry {
        self.redis_kind()
            .map_or(Retry::Never, RedisErrorKind::retry)
    }

    /// What is wrong with the value, when this is an [`Error::InvalidValue`].
    pub fn value_problem(&self) -> Option<&ValueProblem> {
        match self {
            Error::InvalidValue { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Where the data came from, when this is a data error ([`Error::InvalidValue`],
    /// [`Error::DTypeMismatch`], [`Error::ShapeMismatch`], [`Error::UnsupportedDType`]).
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Error::InvalidValue { origin, .. }
            | Error::DTypeMismatch { origin, .. }
            | Error::ShapeMismatch { origin, .. }
            | Error::UnsupportedDType { origin, .. } => Some(origin),
            _ => None,
        }
    }

    /// This data error as found at `at`: the origin of a data error raised on the
    /// caller's input (by a decoder, which knows no key) becomes `at`; any other error
    /// is returned as it is.
    pub(crate) fn at(mut self, at: Origin) -> Self {
        if let Error::InvalidValue { origin, .. }
        | Error::DTypeMismatch { origin, .. }
        | Error::ShapeMismatch { origin, .. }
        | Error::UnsupportedDType { origin, .. } = &mut self
            && *origin == Origin::Input
        {
            *origin = at;
        }
        self
    }

    /// [`at`](Self::at) the Redis key `key`.
    pub(crate) fn at_key(self, key: &str) -> Self {
        self.at(Origin::Key(key.to_owned()))
    }

    /// This error and its causes, as `anyhow`'s `{:#}` prints it: "what: why: why" (for
    /// an error message built from another error).
    pub(crate) fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    pub(crate) fn unexpected(reason: impl Into<String>, key: Option<String>) -> Self {
        Error::UnexpectedReply {
            reason: reason.into(),
            key,
        }
    }

    /// A connection that is gone (a node connection dropped between calls): a Redis
    /// error of kind [`RedisErrorKind::Connection`].
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn connection_lost(what: impl Into<String>) -> Self {
        let io = std::io::Error::new(std::io::ErrorKind::NotConnected, what.into());
        Error::redis(redis::RedisError::from(io), None)
    }

    pub(crate) fn panicked(task: impl Into<String>) -> Self {
        Error::Panicked { task: task.into() }
    }

    /// An invalid value of the caller's input (a decoder's error, before the store
    /// names the key with [`at`](Self::at)).
    pub(crate) fn invalid(problem: ValueProblem) -> Self {
        Error::InvalidValue {
            origin: Origin::Input,
            problem,
        }
    }

    pub(crate) fn corrupt(format: &'static str, reason: impl Into<String>) -> Self {
        Self::invalid(ValueProblem::Corrupt {
            format,
            reason: reason.into(),
        })
    }

    pub(crate) fn unknown_format(reason: impl Into<String>) -> Self {
        Self::invalid(ValueProblem::UnknownFormat {
            reason: reason.into(),
        })
    }

    pub(crate) fn truncated(format: &'static str, expected: u64, actual: u64) -> Self {
        Self::invalid(ValueProblem::Truncated {
            format,
            expected,
            actual,
        })
    }

    pub(crate) fn too_large(declared: u64, cap: u64) -> Self {
        Self::invalid(ValueProblem::TooLarge { declared, cap })
    }

    pub(crate) fn unsupported_dtype(dtype: impl Into<String>) -> Self {
        Error::UnsupportedDType {
            origin: Origin::Input,
            dtype: dtype.into(),
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
        assert_eq!(RedisErrorKind::Transient.retry(), Retry::Always);
        assert_eq!(RedisErrorKind::Timeout.retry(), Retry::IfIdempotent);
        assert_eq!(RedisErrorKind::WrongType.retry(), Retry::Never);
        assert!(Retry::IfIdempotent.allows(true) && !Retry::IfIdempotent.allows(false));
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(RedisErrorKind::classify(&timeout), RedisErrorKind::Timeout);
        let reset =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(RedisErrorKind::classify(&reset), RedisErrorKind::Connection);
    }

    /// A rustls error inside an I/O error (as redis-rs's and the direct connections'
    /// TLS streams report it) is `Tls`, never retried; other I/O errors stay what they
    /// were.
    #[cfg(feature = "tls")]
    #[test]
    fn classifies_tls_failures() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = redis::RedisError::from(io(unknown.clone()));
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls);
        assert_eq!(RedisErrorKind::Tls.retry(), Retry::Never);
        let failure = TlsFailure {
            context: "TLS handshake with h:1".into(),
            source: unknown,
        };
        assert!(failure.to_string().contains("--tls-cacert"), "{failure}");
        let e = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            failure,
        ));
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls);
        let e = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not TLS",
        ));
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Connection);
    }

    /// The chain as `anyhow`'s `{:#}` prints it: each level's `Display`, joined by ": ".
    fn chain(e: &Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cur: &dyn std::error::Error = e;
        while let Some(next) = cur.source() {
            out.push(next.to_string());
            cur = next;
        }
        out
    }

    /// No level of the chain repeats the text of another one.
    fn assert_says_each_thing_once(e: &Error) {
        let levels = chain(e);
        for (i, a) in levels.iter().enumerate() {
            assert!(!a.is_empty(), "{levels:?}");
            for b in &levels[i + 1..] {
                assert!(!a.contains(b.as_str()), "{a:?} repeats {b:?}: {levels:?}");
                assert!(!b.contains(a.as_str()), "{b:?} repeats {a:?}: {levels:?}");
            }
        }
    }

    fn refused() -> Error {
        // Nothing listens on port 1 of the loopback interface.
        let client = redis::Client::open("redis://127.0.0.1:1/").expect("url");
        match client.get_connection() {
            Ok(_) => panic!("port 1 accepts no connection"),
            Err(e) => Error::from(e),
        }
    }

    #[test]
    fn a_chain_says_each_thing_once() {
        let e = refused();
        assert_eq!(e.redis_kind(), Some(RedisErrorKind::Connection));
        let levels = chain(&e);
        assert!(levels.len() >= 2, "the cause is chained: {levels:?}");
        let text = levels.join(": ");
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert_says_each_thing_once(&e);

        let partial = Error::PartialWrite {
            written: vec![0],
            refused: vec![],
            unknown: vec![1],
            not_sent: vec![2],
            source: Box::new(refused()),
        };
        let text = chain(&partial).join(": ");
        assert!(text.starts_with("partial write: 1 written"), "{text}");
        assert_eq!(
            text.to_ascii_lowercase()
                .matches("connection refused")
                .count(),
            1,
            "{text}"
        );
        assert_says_each_thing_once(&partial);

        let server = Error::redis(
            redis::make_extension_error("WRONGTYPE".into(), Some("Operation against a key".into())),
            Some("k"),
        );
        assert_eq!(server.redis_kind(), Some(RedisErrorKind::WrongType));
        assert!(
            chain(&server)
                .join(": ")
                .contains("Operation against a key")
        );
        assert_says_each_thing_once(&server);

        let lost = Error::connection_lost("node 127.0.0.1:7000 is gone");
        assert_eq!(lost.redis_kind(), Some(RedisErrorKind::Connection));
        assert_eq!(chain(&lost).join(": ").matches("is gone").count(), 1);
        assert_says_each_thing_once(&lost);

        let io = Error::from(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        assert_eq!(chain(&io), ["i/o error", "no such file"]);
        assert_says_each_thing_once(&io);
    }

    #[test]
    fn data_errors_name_where_they_came_from() {
        let e = Error::corrupt("npy", "bad header").at_key("a:1");
        assert_eq!(e.origin(), Some(&Origin::Key("a:1".into())));
        assert!(matches!(
            e.value_problem(),
            Some(ValueProblem::Corrupt { format: "npy", .. })
        ));
        assert_eq!(e.to_string(), "key \"a:1\": corrupt npy value: bad header");
        // The first origin named stays: a later, outer one does not replace it.
        let e = e.at_key("other");
        assert_eq!(e.origin().and_then(Origin::key), Some("a:1"));
        // A decoder's error on the caller's input names no key.
        let e = Error::too_large(10, 5);
        assert_eq!(e.origin(), Some(&Origin::Input));
        assert_eq!(
            e.to_string(),
            "value too large: 10 bytes declared, cap is 5 bytes"
        );
        // Errors that are not data errors are left as they are.
        let e = Error::InvalidArgument("x".into()).at_key("k");
        assert!(matches!(e, Error::InvalidArgument(_)) && e.origin().is_none());
        let e = Error::DTypeMismatch {
            origin: Origin::Input,
            expected: DType::F32,
            found: DType::I64,
        }
        .at(Origin::View("v".into()));
        assert_eq!(
            e.to_string(),
            "feature view \"v\": dtype mismatch: expected float32, found int64"
        );
        assert_says_each_thing_once(&e);
    }
}
