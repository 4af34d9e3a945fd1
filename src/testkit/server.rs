//! One `redis-server`: its builder, the running process and its connection details.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::probe::pong;
use super::redis_server_path;
use super::watchdog::{LOG_FILE, Watched, read_log};

/// How long [`RedisServerBuilder::start`] waits for the server to answer `PING`.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports are tried when the chosen one got taken before the server bound it.
const PORT_ATTEMPTS: usize = 5;
/// Name of the generated ACL file inside [`RedisServer::dir`].
const ACL_FILE: &str = "users.acl";
/// A cluster node's bus port is its (plain) port plus this.
pub(super) const BUS_PORT_OFFSET: u16 = 10000;

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
    /// Cluster node with this `cluster-node-timeout` (ms): the cluster bus port
    /// (`port + 10000`) must be free too.
    cluster: Option<u64>,
    /// Append-only file with `appendfsync always`.
    durable: bool,
    /// A TLS port too, with these certificates.
    tls: Option<TlsFiles>,
}

/// The certificate files of a server's TLS port ([`RedisServerBuilder::tls`]), all PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate (`--tls-cert-file`), for `127.0.0.1` to be verifiable
    /// by clients connecting to [`RedisServer::tls_url`].
    pub cert: PathBuf,
    /// Its private key (`--tls-key-file`).
    pub key: PathBuf,
    /// The CA certificates that client certificates are checked against
    /// (`--tls-ca-cert-file`; Redis requires one even when clients present none).
    pub ca: PathBuf,
    /// Whether clients must present a certificate signed by `ca`
    /// (`--tls-auth-clients yes`: mutual TLS) or need none (`no`).
    pub auth_clients: bool,
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

    /// Listens with TLS too, on a second port ([`RedisServer::tls_port`],
    /// [`RedisServer::tls_url`]) with these certificates; the plain port stays (the
    /// readiness probe and [`RedisServer::url`] use it). Needs a `redis-server` built
    /// with TLS (Debian's is).
    ///
    /// A node of a [`RedisCluster`](super::RedisCluster) started with such a builder
    /// also runs its cluster bus and its replication over TLS (`tls-cluster yes`,
    /// `tls-replication yes`, the bus on the plain port + 10000), so the nodes present
    /// `cert` to each other as a client certificate too: it must be good for client
    /// authentication as well as for the server (both extended key usages, or none).
    #[must_use]
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Makes the server a Redis Cluster node whose `cluster-node-timeout` is
    /// `node_timeout_ms` (used by [`RedisCluster`]).
    pub(super) fn cluster_node(mut self, node_timeout_ms: u64) -> Self {
        self.cluster = Some(node_timeout_ms);
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
            let port = free_port(self.cluster.is_some())?;
            let tls_port = match self.tls {
                Some(_) => Some(free_port_but(port)?),
                None => None,
            };
            let args = self.server_args(port, tls_port, dir.path(), acl_file.as_deref());
            let mut process = Watched::spawn(&binary, &args, &log_path)?;
            match process.wait_ready(port, &log_path) {
                Ok(()) => {
                    return Ok(RedisServer {
                        process,
                        port,
                        tls_port,
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

    fn server_args(
        &self,
        port: u16,
        tls_port: Option<u16>,
        dir: &Path,
        acl_file: Option<&Path>,
    ) -> Vec<OsString> {
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
        if let Some(timeout) = self.cluster {
            push("--cluster-enabled", "yes");
            push("--cluster-config-file", "nodes.conf");
            push("--cluster-node-timeout", &timeout.to_string());
        }
        match (acl_file, &self.password) {
            // The ACL file also sets the default user's password.
            (Some(_), _) => {}
            (None, Some(pw)) => push("--requirepass", pw),
            (None, None) => {}
        }
        if let (Some(files), Some(tls_port)) = (&self.tls, tls_port) {
            a.push("--tls-port".into());
            a.push(tls_port.to_string().into());
            if self.cluster.is_some() {
                // The bus and replication over TLS; with `tls-cluster`, the bus port
                // would follow the TLS port: keep it where `free_port` found room.
                for (flag, value) in [
                    ("--tls-cluster", "yes".to_owned()),
                    ("--tls-replication", "yes".to_owned()),
                    (
                        "--cluster-port",
                        (u32::from(port) + u32::from(BUS_PORT_OFFSET)).to_string(),
                    ),
                ] {
                    a.push(flag.into());
                    a.push(value.into());
                }
            }
            for (flag, path) in [
                ("--tls-cert-file", &files.cert),
                ("--tls-key-file", &files.key),
                ("--tls-ca-cert-file", &files.ca),
            ] {
                a.push(flag.into());
                a.push(path.into());
            }
            a.push("--tls-auth-clients".into());
            a.push(if files.auth_clients { "yes" } else { "no" }.into());
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
        if let Some(bus) = port.checked_add(BUS_PORT_OFFSET)
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

/// A free port on 127.0.0.1 other than `taken`.
fn free_port_but(taken: u16) -> io::Result<u16> {
    for _ in 0..100 {
        let port = free_port(false)?;
        if port != taken {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no second free port found on 127.0.0.1",
    ))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn url_encode(s: &str) -> String {
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
/// drop. See the [module docs](crate::testkit) for an example.
#[derive(Debug)]
pub struct RedisServer {
    process: Watched,
    port: u16,
    /// The TLS port, when [`RedisServerBuilder::tls`] was given.
    tls_port: Option<u16>,
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

    /// The TLS port (on 127.0.0.1), when started with [`RedisServerBuilder::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Connection URL of the TLS port, when started with [`RedisServerBuilder::tls`]:
    /// `rediss://127.0.0.1:TLS_PORT/`, or `rediss://:PW@127.0.0.1:TLS_PORT/` if a
    /// [password](RedisServerBuilder::password) was set. The client must trust the CA
    /// that signed the server's certificate.
    pub fn tls_url(&self) -> Option<String> {
        let port = self.tls_port?;
        Some(match &self.password {
            Some(pw) => format!("rediss://:{}@127.0.0.1:{port}/", url_encode(pw)),
            None => format!("rediss://127.0.0.1:{port}/"),
        })
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
