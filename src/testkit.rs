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

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`RedisServerBuilder::start`] waits for the server to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisCluster::start`] waits for `cluster_state:ok` on every node.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried when the chosen one got taken before the server bound it.
const PORT_ATTEMPTS: usize = 5;
/// Name of the log file (server stdout + stderr) inside [`RedisServer::dir`].
const LOG_FILE: &str = "redis.log";
/// Name of the generated ACL file inside [`RedisServer::dir`].
const ACL_FILE: &str = "users.acl";
/// Number of hash slots in a Redis Cluster.
const CLUSTER_SLOTS: u16 = 16384;

/// Watchdog run by `/bin/sh -c`: starts `"$@"` (redis-server and its arguments),
/// kills it with SIGKILL as soon as our end of its stdin pipe closes (on
/// [`RedisServer::stop`], on drop, or when the test process dies), and exits
/// with the server's exit status when the server exits on its own.
/// Background jobs of a non-interactive shell get `/dev/null` as stdin, hence
/// the copy of the pipe on fd 3.
const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
pid=$!
( read -r _ <&3; kill -9 "$pid" 2>/dev/null ) </dev/null &
exec 3<&-
wait "$pid"
"#;

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

/// Builder for a real `redis-server` running in a temporary directory.
///
/// Obtain one with [`RedisServer::builder`] (or `Default`), chain the
/// settings, then call [`start`](Self::start).
///
/// ```no_run
/// # use redstash::testkit::RedisServer;
/// let server = RedisServer::builder()
///     .maxmemory(16 << 20)
///     .arg("--hz")
///     .arg("100")
///     .start()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    maxmemory: Option<u64>,
    password: Option<String>,
    acl_users: Vec<(String, String, String)>,
    args: Vec<String>,
    /// Cluster node: the cluster bus port (`port + 10000`) must be free too.
    cluster: bool,
    /// Append-only file with `appendfsync always`.
    durable: bool,
}

impl RedisServerBuilder {
    /// Sets `maxmemory` to `bytes` and `maxmemory-policy` to `noeviction`, so
    /// writes past the limit fail with an `OOM` error instead of evicting keys.
    #[must_use]
    pub fn maxmemory(mut self, bytes: u64) -> Self {
        self.maxmemory = Some(bytes);
        self
    }

    /// Requires this password for the `default` user (`requirepass`).
    ///
    /// [`RedisServer::url`] then carries it (`redis://:PW@127.0.0.1:PORT/`).
    /// It must be non-empty and contain no whitespace.
    #[must_use]
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_owned());
        self
    }

    /// Adds an ACL user `user` with password `pw` and ACL `rules`, for example
    /// `"~* +@all"` (all keys, all commands) or `"~cache:* +@read"`.
    ///
    /// The users are written to an ACL file in the server's directory as
    /// `user NAME on >PW RULES`, next to a `default` user that has all
    /// permissions and the [`password`](Self::password), if one was set, or
    /// no password. Connect as this user with [`RedisServer::url_for`].
    /// `user` and `pw` must be non-empty and contain no whitespace.
    #[must_use]
    pub fn acl_user(mut self, user: &str, pw: &str, rules: &str) -> Self {
        self.acl_users
            .push((user.to_owned(), pw.to_owned(), rules.to_owned()));
        self
    }

    /// Appends a raw command-line argument for `redis-server`, for example
    /// `.arg("--maxmemory-policy").arg("allkeys-lru")`. Arguments are passed
    /// after the builder's own, so they override them.
    #[must_use]
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Persists every write before it is acknowledged: append-only file with
    /// `appendfsync always` in the server's directory, so that after
    /// [`RedisServer::kill`] and [`RedisServer::restart`] the server holds exactly
    /// what it acknowledged (and possibly writes in flight at the kill). For tests of
    /// crash consistency.
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Makes the server a Redis Cluster node (used by [`RedisCluster`]).
    fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Starts the server and waits (up to 10 s) until it answers `PING`.
    ///
    /// # Errors
    ///
    /// - `redis-server` cannot be found (see [`redis_server_path`]);
    /// - a password or ACL user name contains whitespace or is empty
    ///   ([`io::ErrorKind::InvalidInput`]);
    /// - the server exits during start-up or does not answer in time; the
    ///   error message then includes the server's log.
    pub fn start(self) -> io::Result<RedisServer> {
        self.validate()?;
        let binary = redis_server_path()?;
        let dir = tempfile::Builder::new()
            .prefix("redstash-redis-")
            .tempdir()?;
        let acl_file = if self.acl_users.is_empty() {
            None
        } else {
            let path = dir.path().join(ACL_FILE);
            std::fs::write(&path, self.acl_file_contents())?;
            Some(path)
        };
        let log_path = dir.path().join(LOG_FILE);

        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port(self.cluster)?;
            let args = self.server_args(port, dir.path(), acl_file.as_deref());
            let mut process = Watched::spawn(&binary, &args, &log_path)?;
            match process.wait_ready(port, &log_path) {
                Ok(()) => {
                    return Ok(RedisServer {
                        process,
                        port,
                        password: self.password.clone(),
                        log_path,
                        dir,
                        binary,
                        args,
                    });
                }
                Err(e) => {
                    process.stop(port);
                    if read_log(&log_path).contains("already in use") {
                        // Someone took the port between our probe and the
                        // server's bind: try another one.
                        last_err = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not start redis-server")))
    }

    fn validate(&self) -> io::Result<()> {
        let bad = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
        if self.password.as_deref().is_some_and(bad) {
            return Err(invalid(
                "redis password must be non-empty without whitespace",
            ));
        }
        for (user, pw, _) in &self.acl_users {
            if bad(user) || bad(pw) {
                return Err(invalid(
                    "ACL user name and password must be non-empty without whitespace",
                ));
            }
        }
        Ok(())
    }

    fn acl_file_contents(&self) -> String {
        let mut s = String::new();
        let default_pw = match &self.password {
            Some(pw) => format!(">{pw}"),
            None => "nopass".to_owned(),
        };
        let _ = writeln!(s, "user default on {default_pw} ~* &* +@all");
        for (user, pw, rules) in &self.acl_users {
            let _ = writeln!(s, "user {user} on >{pw} {rules}");
        }
        s
    }

    fn server_args(&self, port: u16, dir: &Path, acl_file: Option<&Path>) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |k: &str, v: &str| {
            a.push(k.into());
            a.push(v.into());
        };
        push("--port", &port.to_string());
        push("--bind", "127.0.0.1");
        push("--save", "");
        if self.durable {
            push("--appendonly", "yes");
            push("--appendfsync", "always");
        } else {
            push("--appendonly", "no");
        }
        push("--daemonize", "no");
        if let Some(bytes) = self.maxmemory {
            push("--maxmemory", &bytes.to_string());
            push("--maxmemory-policy", "noeviction");
        }
        if self.cluster {
            push("--cluster-enabled", "yes");
            push("--cluster-config-file", "nodes.conf");
            push("--cluster-node-timeout", "5000");
        }
        match (acl_file, &self.password) {
            // The ACL file also sets the default user's password.
            (Some(_), _) => {}
            (None, Some(pw)) => push("--requirepass", pw),
            (None, None) => {}
        }
        a.push("--dir".into());
        a.push(dir.into());
        if let Some(f) = acl_file {
            a.push("--aclfile".into());
            a.push(f.into());
        }
        a.extend(self.args.iter().map(OsString::from));
        a
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Picks a port that is free right now on 127.0.0.1. For a cluster node the
/// cluster bus port (`port + 10000`) must be free as well.
fn free_port(cluster: bool) -> io::Result<u16> {
    let bind = |port: u16| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    for _ in 0..100 {
        let listener = bind(0)?;
        let port = listener.local_addr()?.port();
        if !cluster {
            return Ok(port);
        }
        if let Some(bus) = port.checked_add(10000)
            && bind(bus).is_ok()
        {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free port (with a free cluster bus port) found on 127.0.0.1",
    ))
}

/// The log file's content so far (lossy UTF-8; empty if unreadable).
fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `redis-server` running under the [`WATCHDOG`] shell.
#[derive(Debug)]
struct Watched {
    /// The watchdog shell; `None` once stopped.
    child: Option<Child>,
    /// Our end of the watchdog's stdin: closing it kills the server.
    stdin: Option<ChildStdin>,
}

impl Watched {
    /// Spawns `binary args…` under the watchdog, stdout and stderr to `log`.
    fn spawn(binary: &Path, args: &[OsString], log: &Path) -> io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("redstash-redis-watchdog")
            .arg(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run /bin/sh for redis-server: {e}"),
                )
            })?;
        let stdin = child.stdin.take();
        Ok(Watched {
            child: Some(child),
            stdin,
        })
    }

    /// Polls until the server answers PING (any reply counts, e.g. `-NOAUTH`).
    fn wait_ready(&mut self, port: u16, log: &Path) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "redis-server exited during start-up ({status}); log {}:\n{}",
                    log.display(),
                    read_log(log)
                )));
            }
            if ping(port).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis-server did not answer PING on 127.0.0.1:{port} within \
                         {START_TIMEOUT:?}; log {}:\n{}",
                        log.display(),
                        read_log(log)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and reaps the watchdog. Idempotent.
    fn stop(&mut self, port: u16) {
        // Closing the pipe makes the watchdog SIGKILL redis-server and exit.
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    // Should not happen; make sure at least the shell goes away.
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // The watchdog exits once redis-server is gone, but make sure the port
        // is closed so that callers observe "down" as soon as stop() returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && connect(port, Duration::from_millis(100)).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A running `redis-server` on 127.0.0.1 with its own temporary directory.
///
/// Killed (and waited for, so no zombie is left) and its directory removed on
/// drop. See the [module docs](self) for an example.
#[derive(Debug)]
pub struct RedisServer {
    process: Watched,
    port: u16,
    password: Option<String>,
    log_path: PathBuf,
    dir: tempfile::TempDir,
    /// How it was started, to [`restart`](Self::restart) it.
    binary: PathBuf,
    args: Vec<OsString>,
}

impl RedisServer {
    /// Starts a server with default settings: no password, no memory limit,
    /// no persistence. Same as `RedisServer::builder().start()`.
    ///
    /// # Errors
    ///
    /// See [`RedisServerBuilder::start`].
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    /// Returns a [`RedisServerBuilder`] with default settings.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for the `default` user: `redis://127.0.0.1:PORT/`, or
    /// `redis://:PW@127.0.0.1:PORT/` if a [password](RedisServerBuilder::password)
    /// was set.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{}@127.0.0.1:{}/", url_encode(pw), self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Connection URL for the given user and password:
    /// `redis://USER:PW@127.0.0.1:PORT/` (both percent-encoded).
    pub fn url_for(&self, user: &str, pw: &str) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:{}/",
            url_encode(user),
            url_encode(pw),
            self.port
        )
    }

    /// A [`redis::Client`] for [`url`](Self::url).
    ///
    /// # Errors
    ///
    /// Only if redis-rs rejects the URL (it does not connect yet).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.url())
    }

    /// The server's temporary directory (its `--dir`, log and ACL file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file that receives the server's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Kills the server and waits for it to exit. Idempotent.
    ///
    /// The temporary directory stays until the value is dropped. Tests use
    /// this to simulate a server that went down: new connections to
    /// [`url`](Self::url) fail afterwards, and so do commands on existing ones.
    pub fn stop(&mut self) {
        self.process.stop(self.port);
    }

    /// Kills the server with `SIGKILL` (no shutdown, no final save), as a crash or an
    /// OOM killer would, and waits until its port is closed. The same as
    /// [`stop`](Self::stop); named for tests of crash consistency, which then
    /// [`restart`](Self::restart) a [`durable`](RedisServerBuilder::durable) server.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Kills the server (if running) and starts it again on the same port, with the same
    /// directory and settings, waiting until it answers `PING`: a server restart, for
    /// tests of reconnection. Data is not persisted (the server runs without
    /// persistence) unless it is [`durable`](RedisServerBuilder::durable); a Redis Cluster node keeps its identity and slots (its
    /// `nodes.conf` is in the directory).
    ///
    /// # Errors
    ///
    /// If the server cannot be started again (e.g. the port was taken meanwhile).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let mut process = Watched::spawn(&self.binary, &self.args, &self.log_path)?;
        if let Err(e) = process.wait_ready(self.port, &self.log_path) {
            process.stop(self.port);
            return Err(e);
        }
        self.process = process;
        // A durable server answers `-LOADING` while it replays its append-only file.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pong(self.port) {
            if Instant::now() >= deadline {
                return Err(io::Error::other("the restarted server is still loading"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
}

/// Whether the server answers `PING` with `+PONG` (not an error such as `-LOADING`).
fn pong(port: u16) -> bool {
    let Ok(mut s) = connect(port, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// Sends a raw RESP `PING`; Ok if the reply starts like a RESP status or error.
fn ping(port: u16) -> io::Result<()> {
    let mut s = connect(port, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    match buf[..n].first() {
        Some(b'+' | b'-') => Ok(()),
        _ => Err(io::Error::other("unexpected reply to PING")),
    }
}

/// A 3-primary Redis Cluster (no replicas) on 127.0.0.1, for tests.
///
/// Each node is a [`RedisServer`] with `cluster-enabled yes`, its own port
/// and directory. The slots are split evenly with `CLUSTER ADDSLOTS`, the
/// nodes are joined with `CLUSTER MEET`, and [`start`](Self::start) returns
/// once every node reports `cluster_state:ok` with all 16384 slots assigned.
/// All nodes are killed on drop.
///
/// ```no_run
/// # use redstash::testkit::RedisCluster;
/// let cluster = RedisCluster::start()?;
/// let urls = cluster.nodes(); // ["redis://127.0.0.1:PORT/", ...]
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Number of primaries started by [`start`](Self::start).
    pub const PRIMARIES: usize = 3;

    /// Starts the 3 nodes, forms the cluster and waits (up to 30 s) for
    /// `cluster_state:ok` on every node.
    ///
    /// # Errors
    ///
    /// If a node cannot be started (see [`RedisServerBuilder::start`]), a
    /// cluster command fails, or the cluster is not ok in time (the message
    /// then includes each node's `CLUSTER INFO`).
    pub fn start() -> io::Result<Self> {
        Self::start_with(RedisServer::builder())
    }

    /// [`start`](Self::start) with every node configured by `node`: its
    /// [`maxmemory`](RedisServerBuilder::maxmemory), [ACL users](RedisServerBuilder::acl_user)
    /// (connect as one with [`nodes_for`](Self::nodes_for)),
    /// [password](RedisServerBuilder::password) and [arguments](RedisServerBuilder::arg).
    ///
    /// ```no_run
    /// # use redstash::testkit::{RedisCluster, RedisServer};
    /// let cluster = RedisCluster::start_with(
    ///     RedisServer::builder().maxmemory(4 << 20).acl_user("app", "pw", "~* +@all -flushall"),
    /// )?;
    /// let urls = cluster.nodes_for("app", "pw");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(node: RedisServerBuilder) -> io::Result<Self> {
        let servers = (0..Self::PRIMARIES)
            .map(|_| node.clone().cluster_node().start())
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = RedisCluster { servers };
        cluster
            .form()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot form Redis Cluster: {e}")))?;
        Ok(cluster)
    }

    fn form(&self) -> io::Result<()> {
        let n = self.servers.len();
        let mut cons = self
            .servers
            .iter()
            .map(|s| s.client()?.get_connection())
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(io::Error::other)?;
        for (i, con) in cons.iter_mut().enumerate() {
            let lo = usize::from(CLUSTER_SLOTS) * i / n;
            let hi = usize::from(CLUSTER_SLOTS) * (i + 1) / n;
            redis::cmd("CLUSTER")
                .arg("ADDSLOTS")
                .arg((lo..hi).collect::<Vec<_>>())
                .query::<()>(con)
                .map_err(io::Error::other)?;
            // Distinct epochs, as redis-cli does, so no collision handling is needed.
            redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query::<()>(con)
                .map_err(io::Error::other)?;
        }
        for s in &self.servers[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(s.port())
                .query::<()>(&mut cons[0])
                .map_err(io::Error::other)?;
        }
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let infos = cons
                .iter_mut()
                .map(|c| redis::cmd("CLUSTER").arg("INFO").query::<String>(c))
                .collect::<redis::RedisResult<Vec<_>>>()
                .map_err(io::Error::other)?;
            let ok = |info: &String| {
                let has = |line: String| info.lines().any(|l| l.trim() == line);
                has("cluster_state:ok".to_owned())
                    && has(format!("cluster_slots_assigned:{CLUSTER_SLOTS}"))
                    && has(format!("cluster_known_nodes:{n}"))
            };
            if infos.iter().all(ok) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cluster_state not ok on all nodes within {CLUSTER_TIMEOUT:?}: {infos:#?}"
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT/`, one per primary.
    pub fn nodes(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The nodes' URLs for an [ACL user](RedisServerBuilder::acl_user) of
    /// [`start_with`](Self::start_with): `redis://USER:PW@127.0.0.1:PORT/`.
    pub fn nodes_for(&self, user: &str, pw: &str) -> Vec<String> {
        self.servers.iter().map(|s| s.url_for(user, pw)).collect()
    }

    /// The nodes themselves, e.g. to [`stop`](RedisServer::stop) one of them.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Mutable access to the nodes, e.g. to stop a single one.
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// Kills all nodes and waits for them. Idempotent.
    pub fn stop(&mut self) {
        self.servers.iter_mut().for_each(RedisServer::stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn con(url: &str) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(url)?.get_connection()
    }

    #[test]
    fn set_and_get() -> TestResult {
        let server = RedisServer::start()?;
        assert!(server.url().starts_with("redis://127.0.0.1:"));
        assert!(server.dir().is_dir());
        let mut c = server.client()?.get_connection()?;
        redis::cmd("SET")
            .arg("k")
            .arg(b"v\0x")
            .query::<()>(&mut c)?;
        let v: Vec<u8> = redis::cmd("GET").arg("k").query(&mut c)?;
        assert_eq!(v, b"v\0x");
        let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query(&mut c)?;
        assert_eq!(save, ["save", ""]);
        Ok(())
    }

    #[test]
    fn maxmemory_and_extra_args() -> TestResult {
        let server = RedisServer::builder()
            .maxmemory(8 * 1024 * 1024)
            .arg("--hz")
            .arg("20")
            .start()?;
        let mut c = con(&server.url())?;
        let get = |c: &mut redis::Connection, k: &str| {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg(k)
                .query::<Vec<String>>(c)
        };
        assert_eq!(get(&mut c, "maxmemory")?, ["maxmemory", "8388608"]);
        assert_eq!(
            get(&mut c, "maxmemory-policy")?,
            ["maxmemory-policy", "noeviction"]
        );
        assert_eq!(get(&mut c, "hz")?, ["hz", "20"]);
        // Filling memory past the limit is refused, not evicted.
        let big = vec![7u8; 1 << 20];
        let err = (0..32)
            .find_map(|i| {
                redis::cmd("SET")
                    .arg(format!("k{i}"))
                    .arg(&big)
                    .query::<()>(&mut c)
                    .err()
            })
            .expect("OOM error");
        assert!(err.to_string().contains("OOM"), "{err}");
        Ok(())
    }

    #[test]
    fn password() -> TestResult {
        let server = RedisServer::builder().password("p@ss:w/rd").start()?;
        assert!(
            server.url().contains(":p%40ss%3Aw%2Frd@"),
            "{}",
            server.url()
        );
        let mut c = server.client()?.get_connection()?;
        redis::cmd("SET").arg("k").arg(1).query::<()>(&mut c)?;
        // Without the password: NOAUTH.
        let mut anon = con(&format!("redis://127.0.0.1:{}/", server.port()))?;
        let err = redis::cmd("GET")
            .arg("k")
            .query::<Option<i64>>(&mut anon)
            .unwrap_err();
        assert!(err.to_string().contains("NOAUTH"), "{err}");
        // Wrong password: refused at connect time.
        assert!(con(&format!("redis://:nope@127.0.0.1:{}/", server.port())).is_err());
        Ok(())
    }

    #[test]
    fn acl_user() -> TestResult {
        let server = RedisServer::builder()
            .password("adminpw")
            .acl_user("reader", "readpw", "~* +@read +ping")
            .acl_user("writer", "writepw", "~* +@all")
            .start()?;
        let mut admin = con(&server.url())?;
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query::<()>(&mut admin)?;

        let mut w = con(&server.url_for("writer", "writepw"))?;
        redis::cmd("SET").arg("k2").arg("v2").query::<()>(&mut w)?;
        let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut w)?;
        assert_eq!(who, "writer");

        let mut r = con(&server.url_for("reader", "readpw"))?;
        let v: String = redis::cmd("GET").arg("k2").query(&mut r)?;
        assert_eq!(v, "v2");
        let err = redis::cmd("SET")
            .arg("k")
            .arg("x")
            .query::<()>(&mut r)
            .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");

        assert!(con(&server.url_for("reader", "wrong")).is_err());
        // The default user still needs its password.
        let mut anon = con(&format!("redis://127.0.0.1:{}/", server.port()))?;
        let err = redis::cmd("GET")
            .arg("k")
            .query::<Option<String>>(&mut anon)
            .unwrap_err();
        assert!(err.to_string().contains("NOAUTH"), "{err}");
        Ok(())
    }

    #[test]
    fn acl_user_without_password_keeps_default_open() -> TestResult {
        let server = RedisServer::builder()
            .acl_user("u", "pw", "~* +@all")
            .start()?;
        let mut c = con(&server.url())?;
        redis::cmd("SET").arg("k").arg("v").query::<()>(&mut c)?;
        let mut u = con(&server.url_for("u", "pw"))?;
        let v: String = redis::cmd("GET").arg("k").query(&mut u)?;
        assert_eq!(v, "v");
        Ok(())
    }

    #[test]
    fn invalid_credentials_are_rejected() {
        let e = RedisServer::builder().password("a b").start().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = RedisServer::builder()
            .acl_user("", "pw", "+@all")
            .start()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn stop_makes_connections_fail_and_drop_cleans_up() -> TestResult {
        let mut server = RedisServer::start()?;
        let mut c = con(&server.url())?;
        redis::cmd("PING").query::<String>(&mut c)?;
        server.stop();
        server.stop(); // idempotent
        assert!(con(&server.url()).is_err());
        assert!(redis::cmd("PING").query::<String>(&mut c).is_err());
        let dir = server.dir().to_owned();
        assert!(dir.is_dir());
        drop(server);
        assert!(!dir.exists());
        Ok(())
    }

    #[test]
    fn drop_kills_the_server() -> TestResult {
        let server = RedisServer::start()?;
        let port = server.port();
        drop(server);
        assert!(connect(port, Duration::from_millis(200)).is_err());
        Ok(())
    }

    #[test]
    fn startup_failure_reports_the_log() {
        let e = RedisServer::builder()
            .arg("--no-such-option")
            .arg("1")
            .start()
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("exited during start-up"), "{msg}");
        assert!(msg.contains("no-such-option"), "{msg}");
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(url_encode("a b:@/%"), "a%20b%3A%40%2F%25");
    }

    #[test]
    fn redis_server_is_found() {
        let p = redis_server_path().expect("redis-server (run scripts/setup)");
        assert!(is_executable(&p));
    }

    #[test]
    fn cluster_reaches_state_ok() -> TestResult {
        let mut cluster = RedisCluster::start()?;
        let nodes = cluster.nodes();
        assert_eq!(nodes.len(), RedisCluster::PRIMARIES);
        for url in &nodes {
            let mut c = con(url)?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c)?;
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_slots_ok:16384"), "{info}");
            assert!(info.contains("cluster_size:3"), "{info}");
        }
        // Every node serves the keys of its own slots.
        let mut c = con(&nodes[0])?;
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
        assert_eq!(slots.len(), 3);
        cluster.stop();
        cluster.stop();
        assert!(nodes.iter().all(|u| con(u).is_err()));
        Ok(())
    }

    #[test]
    fn cluster_nodes_take_the_builder_settings() -> TestResult {
        let cluster = RedisCluster::start_with(RedisServer::builder().maxmemory(1).acl_user(
            "u",
            "pw",
            "~* +@all -hset",
        ))?;
        let admin = cluster.nodes();
        for (i, url) in cluster.nodes_for("u", "pw").iter().enumerate() {
            let mut c = con(&admin[i])?;
            let mm: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory")
                .query(&mut c)?;
            assert_eq!(mm, ["maxmemory", "1"]);
            let mut u = con(url)?;
            let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut u)?;
            assert_eq!(who, "u");
            let err = redis::cmd("HSET")
                .arg("{x}")
                .arg("f")
                .arg("v")
                .query::<()>(&mut u)
                .unwrap_err();
            assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
        }
        Ok(())
    }
}
