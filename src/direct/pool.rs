//! A pool of [`DirectAsyncConnection`]s for async services (feature `pool`, built on
//! the [`deadpool`] crate): many tasks share a few connections, each call taking one for
//! its duration.
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use redstash::direct::ConnectOptions;
//! use redstash::direct::pool::{DirectManager, DirectPool};
//! use redstash::FeatureStore;
//!
//! let manager = DirectManager::new("redis://127.0.0.1/", ConnectOptions::default())?;
//! let pool = DirectPool::builder(manager).max_size(16).build()?;
//! let store = FeatureStore::new("fs");
//! // In each request handler (the pool is `Clone` and cheap to share):
//! let mut con = pool.get().await?;
//! let rows = store.read_many_async::<f32, _, _>(&mut *con, "user_emb", &["u1", "u2"]).await?;
//! # Ok(()) }
//! ```
//!
//! A connection is handed out again only when its last call left it in sync
//! ([`DirectAsyncConnection::is_open`]): one whose call failed on the connection, timed
//! out or was cancelled (its future dropped) is closed and replaced by a new one, so a
//! task never receives a connection with replies of someone else's call still on the
//! wire.

pub use deadpool;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{ConnectionInfo, IntoConnectionInfo, RedisError, RedisResult};

use super::{ConnectOptions, DirectAsyncConnection};

/// Opens and checks the pooled connections: every one to the same server, with the same
/// [`ConnectOptions`].
#[derive(Debug, Clone)]
pub struct DirectManager {
    info: ConnectionInfo,
    options: ConnectOptions,
}

impl DirectManager {
    /// A manager of connections to `info` (a URL or a [`ConnectionInfo`]), opened with
    /// `options` (timeouts, reconnection, retries; see [`ConnectOptions`]).
    pub fn new<T: IntoConnectionInfo>(info: T, options: ConnectOptions) -> RedisResult<Self> {
        Ok(DirectManager {
            info: info.into_connection_info()?,
            options,
        })
    }
}

impl managed::Manager for DirectManager {
    type Type = DirectAsyncConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<DirectAsyncConnection, RedisError> {
        DirectAsyncConnection::open_with(self.info.clone(), self.options.clone()).await
    }

    async fn recycle(
        &self,
        con: &mut DirectAsyncConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        if con.is_open() {
            Ok(())
        } else {
            Err(RecycleError::message(
                "a call on this connection failed or was cancelled",
            ))
        }
    }
}

/// A pool of [`DirectAsyncConnection`]s: `DirectPool::builder(manager).max_size(n).build()`.
/// [`get`](managed::Pool::get) waits for a free connection (bounded by the builder's
/// `wait_timeout` when set) and returns a guard that dereferences to the connection.
pub type DirectPool = managed::Pool<DirectManager>;

/// A connection taken from a [`DirectPool`]; it goes back to the pool when dropped.
pub type PooledConnection = managed::Object<DirectManager>;
