//! The process watchdog: `redis-server` runs under a `/bin/sh` that kills it when the
//! test process goes away, however it goes.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::probe::{connect, ping};
use super::server::START_TIMEOUT;

/// Name of the log file (server stdout + stderr) inside [`RedisServer::dir`].
pub(super) const LOG_FILE: &str = "redis.log";

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

/// The log file's content so far (lossy UTF-8; empty if unreadable).
pub(super) fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `redis-server` running under the [`WATCHDOG`] shell.
#[derive(Debug)]
pub(super) struct Watched {
    /// The watchdog shell; `None` once stopped.
    child: Option<Child>,
    /// Our end of the watchdog's stdin: closing it kills the server.
    stdin: Option<ChildStdin>,
}

impl Watched {
    /// Spawns `binary args…` under the watchdog, stdout and stderr to `log`.
    pub(super) fn spawn(binary: &Path, args: &[OsString], log: &Path) -> io::Result<Self> {
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
    pub(super) fn wait_ready(&mut self, port: u16, log: &Path) -> io::Result<()> {
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
    pub(super) fn stop(&mut self, port: u16) {
        // Closing the pipe makes the watchdog SIGKILL redis-server and exit.
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Should not need the kill; make sure at least the shell goes away.
        wait_or_kill(&mut child, Duration::from_secs(5), Duration::from_millis(5));
        // The watchdog exits once redis-server is gone, but make sure the port
        // is closed so that callers observe "down" as soon as stop() returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && connect(port, Duration::from_millis(100)).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Wait up to `limit` for `child` to exit (polling every `poll`), then kill and reap it.
pub(super) fn wait_or_kill(child: &mut std::process::Child, limit: Duration, poll: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(poll),
        }
    }
}
