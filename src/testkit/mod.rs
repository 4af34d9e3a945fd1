//! Throw-away Redis servers for tests, examples and benchmarks.
//!
//! This module (cargo feature `testkit`) starts a real `redis-server` process
//! listening on `127.0.0.1` on a free port, with its working directory, log
//! file and (optional) ACL file in a fresh temporary directory. Persistence is
//! off (`--save "" --appendonly no`). The process is killed and the directory
//! removed when the handle is dropped.
//!
//! Every server runs under a tiny `/bin/sh` watchdog that holds a pipe to the
//! test process: if the test process dies without running destructors (a
//! panic with `panic = "abort"`, `SIGKILL` from a test-runner timeout, …) the
//! pipe closes and the watchdog kills `redis-server`, so servers never outlive
//! the tests that started them.
//!
//! The `redis-server` binary is taken from the `REDIS_SERVER` environment
//! variable when set, otherwise from `PATH` (see [`redis_server_path`]).
//! On a fresh machine, `scripts/setup` installs it.
//!
//! # Example
//!
//! ```no_run
//! use redstash::testkit::RedisServer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A default server: no password, no memory limit.
//! let server = RedisServer::start()?;
//! let mut con = redis::Client::open(server.url())?.get_connection()?;
//! redis::cmd("SET").arg("greeting").arg("hello").query::<()>(&mut con)?;
//! let v: String = redis::cmd("GET").arg("greeting").query(&mut con)?;
//! assert_eq!(v, "hello");
//!
//! // A server with a memory limit, a password and an extra ACL user.
//! let server = RedisServer::builder()
//!     .maxmemory(64 * 1024 * 1024)
//!     .password("s3cret")
//!     .acl_user("reader", "pw", "~* +@read")
//!     .start()?;
//! let _admin = server.client()?.get_connection()?; // url() carries the password
//! let _reader = redis::Client::open(server.url_for("reader", "pw"))?.get_connection()?;
//!
//! // A 3-primary Redis Cluster.
//! let cluster = redstash::testkit::RedisCluster::start()?;
//! println!("cluster nodes: {:?}", cluster.nodes());
//! # Ok(())
//! # }
//! ```

mod cluster;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod probe;
mod server;
#[cfg(test)]
mod tests;
mod watchdog;

pub use cluster::RedisCluster;
pub use server::{RedisServer, RedisServerBuilder, TlsFiles};

use std::io;
use std::path::{Path, PathBuf};

/// The server examples and quick scripts use: `REDIS_URL` when set, else a throwaway
/// local `redis-server` started now (kept running as long as the returned
/// [`RedisServer`] lives).
///
/// ```no_run
/// let (url, _server) = redstash::testkit::url_or_start()?;
/// let mut con = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn url_or_start() -> io::Result<(String, Option<RedisServer>)> {
    match std::env::var("REDIS_URL") {
        Ok(url) => Ok((url, None)),
        Err(_) => {
            let s = RedisServer::start()?;
            println!("started a local redis-server on port {}", s.port());
            Ok((s.url(), Some(s)))
        }
    }
}

/// Finds the `redis-server` binary.
///
/// Uses the `REDIS_SERVER` environment variable when it is set and non-empty
/// (it must name an existing file), otherwise searches `PATH` (plus
/// `/usr/bin`, `/usr/local/bin` and `/usr/sbin` as a fallback).
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] with a message saying how to install Redis
/// (`scripts/setup`, or `apt-get install redis-server`).
pub fn redis_server_path() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("REDIS_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("REDIS_SERVER={} does not name a file", p.display()),
            ))
        };
    }
    find_in_path("redis-server").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "redis-server not found in PATH: run `scripts/setup` from the redstash \
             repository (or `apt-get install redis-server`, `brew install redis`), \
             or set REDIS_SERVER=/path/to/redis-server",
        )
    })
}

/// Searches `PATH` and a few usual directories for an executable file `name`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
