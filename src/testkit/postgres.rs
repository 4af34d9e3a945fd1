//! Throw-away PostgreSQL servers for tests and benchmarks (features `testkit` and
//! `postgres`).
//!
//! [`PostgresServer::start`] runs `initdb` in a fresh temporary directory (user
//! `postgres`, trust authentication, UTF-8, locale C, no fsync) and starts `postgres`
//! on a free port of `127.0.0.1` (no Unix socket), under a `/bin/sh` watchdog that
//! stops the server (`SIGQUIT`: PostgreSQL's immediate shutdown, which ends its
//! backends too) when the test process goes away, however it goes. Dropping the handle
//! stops the server and removes the directory.
//!
//! PostgreSQL refuses to run as root: when the test runs as root, the directory is
//! given to the `postgres` system user (which Debian's `postgresql` package creates)
//! and `initdb` and `postgres` run as that user.
//!
//! The binaries are found in the `PG_BIN` directory when that variable is set, else in
//! the newest `/usr/lib/postgresql/VERSION/bin` (Debian's layout), else on `PATH`.
//! `scripts/setup` installs them.
//!
//! ```no_run
//! use redstash::testkit::postgres::PostgresServer;
//!
//! let pg = PostgresServer::start()?;
//! let mut client = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
//! client.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY)").unwrap();
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_in_path, is_executable};

/// How long [`PostgresServer::start`] waits for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried when the chosen one got taken before the server bound it.
const PORT_ATTEMPTS: usize = 5;
/// The server's log file in [`PostgresServer::dir`].
const LOG_FILE: &str = "postgres.log";

/// Watchdog run by `/bin/sh -c`: starts `"$@"` (postgres and its arguments), and as
/// soon as our end of its stdin pipe closes (on [`PostgresServer::stop`], on drop, or
/// when the test process dies) sends it `SIGQUIT` (immediate shutdown: the
/// postmaster ends its backends), then `SIGKILL` if it is still there after 5 s.
const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
pid=$!
( read -r _ <&3; kill -QUIT "$pid" 2>/dev/null; i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -9 "$pid" 2>/dev/null ) </dev/null &
exec 3<&-
wait "$pid"
"#;

/// The directory of the PostgreSQL server binaries (`initdb`, `postgres`): `PG_BIN`
/// when set, else the newest `/usr/lib/postgresql/*/bin`, else the directory of
/// `initdb` on `PATH`.
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] saying how to install PostgreSQL.
pub fn postgres_bin_dir() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PG_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p.join("initdb")) && is_executable(&p.join("postgres")) {
            Ok(p)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("PG_BIN={} holds no initdb and postgres", p.display()),
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (is_executable(&bin.join("initdb")) && is_executable(&bin.join("postgres")))
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    find_in_path("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| is_executable(&d.join("postgres")))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "PostgreSQL's initdb and postgres not found (/usr/lib/postgresql/*/bin, PATH): \
                 run `scripts/setup` from the redstash repository (or `apt-get install \
                 postgresql`), or set PG_BIN=/path/to/postgresql/bin",
            )
        })
}

/// The user and group ids of the system user `name`, from `/etc/passwd`.
fn system_user(name: &str) -> io::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let user = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            (user == name).then_some((uid, gid))
        })
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "PostgreSQL does not run as root and there is no `{name}` user to run it \
                     as (Debian's postgresql package creates it)"
                ),
            )
        })
}

/// Runs commands as `postgres` when we are root, as ourselves otherwise.
#[derive(Debug, Clone, Copy)]
struct RunAs(Option<(u32, u32)>);

impl RunAs {
    fn detect() -> io::Result<RunAs> {
        use std::os::unix::fs::MetadataExt;
        // `/proc/self` belongs to the process's effective user.
        let root = std::fs::metadata("/proc/self")?.uid() == 0;
        Ok(RunAs(if root {
            Some(system_user("postgres")?)
        } else {
            None
        }))
    }

    fn command(self, program: &Path) -> Command {
        let mut c = Command::new(program);
        if let Some((uid, gid)) = self.0 {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn own(self, path: &Path) -> io::Result<()> {
        match self.0 {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }
}

/// A running PostgreSQL server on 127.0.0.1 with its own temporary data directory.
///
/// Stopped (immediate shutdown, waited for) and its directory removed on drop. See the
/// [module docs](self).
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    port: u16,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Runs `initdb` and starts the server, waiting (up to 30 s) until it accepts
    /// connections and answers a query.
    ///
    /// # Errors
    ///
    /// The binaries are missing ([`postgres_bin_dir`]), there is no `postgres` user to
    /// run them as root, `initdb` fails, or the server does not start (the error then
    /// holds its log).
    pub fn start() -> io::Result<PostgresServer> {
        let bin = postgres_bin_dir()?;
        let run_as = RunAs::detect()?;
        let mut dir = tempfile::Builder::new()
            .prefix("redstash-postgres-")
            .tempdir()?;
        run_as.own(dir.path())?;
        let data = dir.path().join("data");
        let out = run_as
            .command(&bin.join("initdb"))
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let log_path = dir.path().join(LOG_FILE);
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log = File::create(&log_path)?;
            run_as.own(&log_path)?;
            let mut child = run_as
                .command(Path::new("/bin/sh"))
                .arg("-c")
                .arg(WATCHDOG)
                .arg("redstash-postgres-watchdog")
                .arg(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "unix_socket_directories="])
                .args(["-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            let stdin = child.stdin.take();
            let mut server = PostgresServer {
                child: Some(child),
                stdin,
                port,
                log_path: log_path.clone(),
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.stop();
                    let log = server.log();
                    dir = std::mem::replace(&mut server.dir, tempfile::TempDir::new()?);
                    if log.contains("could not bind") || log.contains("already in use") {
                        last_err = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not start postgres")))
    }

    /// Polls until a client connects and `SELECT 1` answers.
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.url();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "postgres exited during start-up ({status}); log {}:\n{}",
                    self.log_path.display(),
                    self.log()
                )));
            }
            let accepting = std::net::TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
                Duration::from_millis(200),
            )
            .is_ok();
            if accepting
                && let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls)
                && c.simple_query("SELECT 1").is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "postgres did not accept connections on 127.0.0.1:{} within \
                         {START_TIMEOUT:?}; log {}:\n{}",
                        self.port,
                        self.log_path.display(),
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of the superuser `postgres` (no password: trust
    /// authentication) to database `postgres`: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A connected client of [`url`](Self::url).
    ///
    /// # Errors
    ///
    /// When the connection fails (the server was stopped).
    pub fn client(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(&self.url(), postgres::NoTls)
    }

    /// The temporary directory (the data directory `data` and the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (lossy UTF-8; empty when unreadable).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Stops the server (immediate shutdown) and waits until it is gone. Idempotent.
    pub fn stop(&mut self) {
        // Closing the pipe makes the watchdog stop postgres and exit.
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        super::watchdog::wait_or_kill(
            &mut child,
            Duration::from_secs(10),
            Duration::from_millis(10),
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that is free right now on 127.0.0.1.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}
