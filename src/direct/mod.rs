//! A narrow, fast "direct" Redis connection for large values.
//!
//! redis-rs is used for everything else; this module only sends batches of
//! already-built [`redis::Cmd`]s and reads their RESP2 replies as
//! [`redis::Value`]s, but does so without the extra copies that dominate
//! redis-rs's cost for multi-megabyte values:
//!
//! * requests are framed into one reused scratch buffer, and arguments of
//!   16 KiB or more are sent with vectored writes straight from the command's
//!   memory (never copied);
//! * replies go through the resumable, sans-IO RESP2 parser of the wire layer that,
//!   for a large bulk string, allocates one exactly-sized `Vec<u8>` and lets the
//!   socket read directly into its spare capacity (no intermediate buffer, no
//!   zero-fill), also for bulk strings nested in arrays (e.g. `MGET`).
//!
//! [`DirectConnection`] is blocking; `DirectAsyncConnection` (feature
//! `tokio`) has the same semantics on tokio. Both speak RESP2 only, support
//! TCP and Unix sockets, TLS (`rediss://`, feature `tls`: rustls, configured with
//! `TlsOptions`), and perform `AUTH` / `SELECT` from the connection info when
//! opening. Without the feature a `rediss://` address fails to open with
//! [`redis::ErrorKind::InvalidClientConfig`].
//!
//! Every wait is bounded ([`ConnectOptions`]: connect and response timeouts). After
//! an I/O error, a timeout, a protocol error, or (async) a cancelled call in the
//! middle of a batch, a connection is marked broken ([`DirectConnection::is_open`]
//! returns `false`) and never reads a desynchronised stream: its next call connects
//! again (or, with reconnection off, fails with an error of kind
//! [`redis::ErrorKind::Io`]). Requests marked idempotent are sent again after a lost
//! connection or a timeout, per the [`RetryPolicy`](crate::exec::RetryPolicy).

mod options;
mod owed;
mod pipeline;
#[cfg(feature = "pool")]
pub mod pool;
mod state;
mod sync;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tokio")]
mod tokio;

pub use self::options::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};
pub use self::sync::DirectConnection;
#[cfg(feature = "tls")]
pub use self::tls::TlsOptions;
#[cfg(feature = "tokio")]
pub use self::tokio::DirectAsyncConnection;
pub use crate::resp::{Frame, Framer};

use redis::{Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, RedisResult};

/// Where to connect.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp(String, u16),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// Everything the direct path needs from a `ConnectionInfo`.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) target: Target,
    pub(crate) nodelay: bool,
    /// `AUTH` / `SELECT` commands to send after connecting (may be empty).
    pub(crate) handshake: Vec<Cmd>,
    /// TLS over the TCP connection (`rediss://`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsSetup>,
}

/// How a `rediss://` connection does its TLS handshake.
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    pub(crate) config: std::sync::Arc<rustls::ClientConfig>,
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
}

/// `host:port`, for messages.
#[cfg(feature = "tls")]
pub(crate) fn peer(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

pub(crate) fn setup<T: IntoConnectionInfo>(
    info: T,
    options: &ConnectOptions,
) -> RedisResult<Setup> {
    let info = info.into_connection_info().map_err(needs_tls_feature)?;
    #[cfg(feature = "tls")]
    let mut tls = None;
    let target = match info.addr() {
        ConnectionAddr::Tcp(host, port) => Target::Tcp(host.clone(), *port),
        #[cfg(feature = "tls")]
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            tls = Some(TlsSetup {
                config: options.tls.client_config(*insecure)?,
                server_name: self::tls::server_name(host)?,
            });
            Target::Tcp(host.clone(), *port)
        }
        #[cfg(not(feature = "tls"))]
        ConnectionAddr::TcpTls { .. } => {
            let _ = options;
            return Err(tls_feature_error());
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => Target::Unix(path.clone()),
        #[allow(unreachable_patterns)]
        other => {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "unsupported address type on the direct path",
                format!("{other:?}"),
            )));
        }
    };
    let settings = info.redis_settings();
    let mut handshake = Vec::new();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        auth.arg(password);
        handshake.push(auth);
    }
    if settings.db() != 0 {
        let mut select = redis::cmd("SELECT");
        select.arg(settings.db());
        handshake.push(select);
    }
    Ok(Setup {
        target,
        nodelay: true,
        handshake,
        #[cfg(feature = "tls")]
        tls,
    })
}

/// The error of a `rediss://` address without the feature `tls`.
#[cfg(not(feature = "tls"))]
fn tls_feature_error() -> RedisError {
    RedisError::from((
        ErrorKind::InvalidClientConfig,
        "rediss:// (TLS) needs redstash's cargo feature `tls`",
    ))
}

/// redis-rs's refusal of a `rediss://` URL when built without TLS ("the feature is not
/// enabled": its own), as the error that names redstash's feature.
pub(crate) fn needs_tls_feature(e: RedisError) -> RedisError {
    #[cfg(not(feature = "tls"))]
    if e.kind() == ErrorKind::InvalidClientConfig && e.to_string().contains("TLS") {
        return tls_feature_error();
    }
    e
}

/// Checks the replies to the handshake commands, in order (the first failure,
/// e.g. `WRONGPASS`, is returned as the server error).
pub(crate) fn check_handshake(replies: Vec<redis::Value>) -> RedisResult<()> {
    for v in replies {
        match v {
            redis::Value::Okay => {}
            redis::Value::ServerError(e) => return Err(e.into()),
            other => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "unexpected reply to AUTH/SELECT",
                    format!("unexpected reply {other:?}"),
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the feature `tls`, a `rediss://` URL fails to open, saying which feature
    /// to enable; with it, its setup is TLS.
    #[test]
    fn rediss_is_tls_or_names_the_feature() {
        let setup = setup("rediss://127.0.0.1:6380/", &ConnectOptions::default());
        #[cfg(not(feature = "tls"))]
        {
            let e = setup.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidClientConfig);
            assert!(e.to_string().contains("feature `tls`"), "{e}");
        }
        #[cfg(feature = "tls")]
        {
            let setup = setup.unwrap();
            assert!(setup.tls.is_some());
            assert!(matches!(setup.target, Target::Tcp(ref h, 6380) if h == "127.0.0.1"));
        }
        let plain = super::setup("redis://127.0.0.1:6380/", &ConnectOptions::default()).unwrap();
        #[cfg(feature = "tls")]
        assert!(plain.tls.is_none());
        assert!(plain.handshake.is_empty());
    }
}
