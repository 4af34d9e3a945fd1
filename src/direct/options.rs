//! How a direct connection connects, how long it waits for the server, and how it
//! recovers (the same for the sync and tokio connections).

use std::io;
use std::time::Duration;

#[cfg(feature = "tls")]
use super::TlsOptions;
use crate::exec::RetryPolicy;

/// Default [`ConnectOptions::with_connect_timeout`]: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ConnectOptions::with_response_timeout`]: 10 s.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a direct connection ([`DirectConnection`](super::DirectConnection),
/// `DirectAsyncConnection`) connects, waits and recovers.
///
/// * **Connect timeout** (default [`DEFAULT_CONNECT_TIMEOUT`], 5 s): the longest a
///   connection attempt may take, TCP connect (with the TLS handshake, for `rediss://`)
///   and handshake (`AUTH`, `SELECT`) each.
/// * **Response timeout** (default [`DEFAULT_RESPONSE_TIMEOUT`], 10 s): the longest a
///   call waits for the server to accept more bytes of a request or send more bytes of
///   a reply. A call that waits longer fails with an error of kind
///   [`Timeout`](crate::RedisErrorKind::Timeout). It bounds stalls, not transfers: a
///   512 MB value that keeps flowing takes as long as it takes. Size it above your
///   slowest command (a `KEYS` or a big `DEL` on a large database).
/// * **Reconnect** (on by default): a call that finds its connection broken (after an
///   I/O error, a timeout, a cancelled async call or a server restart) connects again
///   first, with the same address, credentials and database. Consecutive failed
///   attempts wait the retry policy's backoff before the next one, so a down server is
///   not hammered.
/// * **Retry** (default [`RetryPolicy::default`]): a request is sent again when the
///   failure allows it (see [`RetryPolicy`]): any request after a transient server error
///   (`LOADING`, `TRYAGAIN`, `BUSY`...), an [`idempotent`](crate::exec::Request::idempotent)
///   one after a lost connection or a timeout. Bulk writes (`put_many`, `write_many`,
///   `split`) are not retried: they report exactly what was stored
///   ([`Error::PartialWrite`](crate::Error::PartialWrite)) and the caller sends again what
///   needs it.
/// * **TLS** (feature `tls`; default: the system's root certificates): how a
///   `rediss://` address is connected to, see [`TlsOptions`](super::TlsOptions) and
///   [`with_tls`](Self::with_tls).
///
/// ```no_run
/// use std::time::Duration;
/// use redstash::direct::{ConnectOptions, DirectConnection};
/// use redstash::exec::RetryPolicy;
///
/// let options = ConnectOptions::default()
///     .with_connect_timeout(Some(Duration::from_secs(1)))
///     .with_response_timeout(Some(Duration::from_millis(500)))
///     .with_retry(RetryPolicy::default().with_max_retries(5));
/// let con = DirectConnection::open_with("redis://127.0.0.1/", options)?;
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) reconnect: bool,
    pub(crate) retry: RetryPolicy,
    #[cfg(feature = "tls")]
    pub(crate) tls: TlsOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            reconnect: true,
            retry: RetryPolicy::default(),
            #[cfg(feature = "tls")]
            tls: TlsOptions::default(),
        }
    }
}

impl ConnectOptions {
    /// The longest a connection attempt (TCP connect, then the handshake) may take;
    /// `None` waits as long as the operating system does.
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// The longest a call waits for the server to make progress; `None` waits forever.
    pub fn with_response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Whether a broken connection connects again at its next call (on by default);
    /// without, it fails every call once broken.
    pub fn with_reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// When a request is sent again ([`RetryPolicy::none`] never).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How `rediss://` addresses are connected to (feature `tls`): trusted CAs, client
    /// certificate, insecure mode. Without, the system's root certificates are trusted
    /// and no client certificate is presented. A `redis://` address ignores it.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// The TLS settings (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// The options of a connection being opened: no reconnection (a handshake never
    /// reconnects), every wait bounded by the connect timeout.
    pub(crate) fn for_handshake(&self) -> Self {
        self.clone()
            .with_reconnect(false)
            .with_response_timeout(self.connect_timeout)
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The response timeout.
    pub fn response_timeout(&self) -> Option<Duration> {
        self.response_timeout
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
}

/// The error of an I/O step that waited longer than `timeout` (`what`: connecting, a
/// response...): kind `TimedOut`, which classifies as
/// [`Timeout`](crate::RedisErrorKind::Timeout).
pub(crate) fn timed_out(what: &str, timeout: Option<Duration>) -> io::Error {
    let within = timeout.map_or(String::new(), |t| format!(" within {t:?}"));
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no progress{within}"),
    )
}

/// A socket error as the connection reports it: a blocking socket's timeout
/// (`WouldBlock` / `TimedOut` from `SO_RCVTIMEO`/`SO_SNDTIMEO`) becomes [`timed_out`].
pub(crate) fn socket_error(e: io::Error, timeout: Option<Duration>) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            timed_out("waiting for the server", timeout)
        }
        _ => e,
    }
}
