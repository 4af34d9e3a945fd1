//! Blocking direct connection.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

use redis::{IntoConnectionInfo, RedisResult, Value};

use super::pipeline::{Next, PipelinedRun};
use super::state::{Need, WireState, direct_filled, exec_replies};
use super::{Frame, Target, check_handshake, setup};
use crate::error::Result;
use crate::exec::{Delivered, Request, Requests, SyncConnection};

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }

    /// Appends exactly `n` bytes (or fewer at EOF) to `vec`, reading straight
    /// into its spare capacity. Goes through the concrete socket types so that
    /// std's `read_buf` specialisation is used and the spare capacity is not
    /// zero-filled first; `take` guarantees not a byte past the bulk string
    /// is consumed even if `vec` has more capacity.
    fn read_exact_into_vec(&mut self, vec: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => Read::by_ref(s).take(n as u64).read_to_end(vec),
            #[cfg(unix)]
            Stream::Unix(s) => Read::by_ref(s).take(n as u64).read_to_end(vec),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            #[cfg(unix)]
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn set_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(dur)?;
                s.set_write_timeout(dur)
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                s.set_read_timeout(dur)?;
                s.set_write_timeout(dur)
            }
        }
    }

    /// `write_all` for a list of slices (std's `write_all_vectored` is unstable).
    fn write_all_vectored(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !bufs.is_empty() {
            match self.write_vectored(bufs) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole request",
                    ));
                }
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Blocking direct connection to one Redis server.
///
/// Sends batches of [`redis::Cmd`]s pipelined in one write and reads their
/// replies with the zero-extra-copy RESP2 parser of the wire layer. See the
/// [module docs](super) for what it supports.
#[derive(Debug)]
pub struct DirectConnection {
    stream: Stream,
    state: WireState,
}

impl DirectConnection {
    /// Connects using anything redis-rs accepts as connection info (a URL such
    /// as `"redis://[user:pass@]host:port/db"` or `"redis+unix:///path"`, a
    /// [`redis::ConnectionInfo`], ...).
    ///
    /// TCP and Unix sockets are supported; a TLS address fails with
    /// [`redis::ErrorKind::InvalidClientConfig`]. When the info carries a
    /// password, `AUTH [username] password` is sent; when `db != 0`, `SELECT db`.
    /// A rejected `AUTH` (e.g. `WRONGPASS`) is returned as the server error.
    pub fn open<T: IntoConnectionInfo>(info: T) -> RedisResult<Self> {
        let setup = setup(info)?;
        let stream = match &setup.target {
            Target::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port))?;
                s.set_nodelay(setup.nodelay)?;
                Stream::Tcp(s)
            }
            #[cfg(unix)]
            Target::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        let mut conn = DirectConnection {
            stream,
            state: WireState::default(),
        };
        if !setup.handshake.is_empty() {
            let replies = conn.exec(&setup.handshake, false)?;
            check_handshake(replies)?;
        }
        Ok(conn)
    }

    /// Sets (or clears, with `None`) the read and write timeouts of the socket.
    /// A call that times out leaves the connection broken.
    pub fn set_timeout(&mut self, dur: Option<Duration>) -> RedisResult<()> {
        self.stream.set_timeout(dur)?;
        Ok(())
    }

    /// `false` once an I/O or protocol error broke the connection; every
    /// `exec` then fails with an error of kind [`redis::ErrorKind::Io`].
    pub fn is_open(&self) -> bool {
        self.state.is_open()
    }

    /// Sends all `cmds` pipelined in one write and reads one reply per command.
    ///
    /// With `atomic`, the batch is wrapped in `MULTI`/`EXEC` and the replies
    /// returned are `EXEC`'s (an `EXEC` nil, i.e. a transaction aborted by
    /// `WATCH`, is an error of kind `Server(ExecAbort)`; an `EXECABORT` error
    /// reply is returned as the error of the command refused while queuing).
    /// Server error replies of single commands are returned as
    /// [`redis::Value::ServerError`] elements, as redis-rs does for pipelines.
    pub fn exec<F: Frame>(&mut self, cmds: &[F], atomic: bool) -> RedisResult<Vec<Value>> {
        exec_replies(self.exec_raw(cmds, atomic)?, atomic)
    }

    /// Sends `cmds` and reads their raw replies (a transaction's `MULTI`, `QUEUED`s and
    /// `EXEC` included; none when there is nothing to send).
    fn exec_raw<F: Frame>(&mut self, cmds: &[F], atomic: bool) -> RedisResult<Vec<Value>> {
        self.begin()?;
        let n = self.send(cmds, atomic)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        self.recv(n)
    }

    /// Start a call: fails (and marks the connection broken) if an earlier call
    /// broke the stream or left replies unread.
    pub(crate) fn begin(&mut self) -> RedisResult<()> {
        self.state.begin()
    }

    /// Writes `cmds` (wrapped in `MULTI`/`EXEC` if `atomic`) without reading any
    /// reply, and returns the number of raw replies they will get (a transaction's
    /// `MULTI`, `QUEUED`s and `EXEC` included). Several batches may be sent before
    /// their replies are read with [`recv`](Self::recv), in order.
    pub(crate) fn send<F: Frame>(&mut self, cmds: &[F], atomic: bool) -> RedisResult<usize> {
        let Some((n, encoded)) = self.state.start_write(cmds, atomic)? else {
            return Ok(0);
        };
        if encoded.is_contiguous() {
            self.stream.write_all(encoded.scratch())?;
        } else {
            let mut slices = encoded.io_slices();
            self.stream.write_all_vectored(&mut slices)?;
        }
        self.state.written(n);
        Ok(n)
    }

    /// Reads the next `n` replies of batches written in full by [`send`](Self::send)
    /// into `out`, also after a later batch's write was cut short (their replies come
    /// first). On failure, `out` holds the replies read before it.
    pub(crate) fn recv_into(&mut self, n: usize, out: &mut Vec<Value>) -> RedisResult<()> {
        self.state.start_read(n, true)?;
        self.read_replies(n, out)
    }

    /// Reads the next `n` replies of batches written by [`send`](Self::send).
    pub(crate) fn recv(&mut self, n: usize) -> RedisResult<Vec<Value>> {
        self.state.start_read(n, false)?;
        let mut replies = Vec::with_capacity(n);
        self.read_replies(n, &mut replies)?;
        Ok(replies)
    }

    fn read_replies(&mut self, n: usize, out: &mut Vec<Value>) -> RedisResult<()> {
        for read in 0..n {
            match self.read_reply() {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.state.read_done(read, true);
                    return Err(e);
                }
            }
        }
        self.state.read_done(n, false);
        Ok(())
    }

    fn read_reply(&mut self) -> RedisResult<Value> {
        loop {
            match self.state.poll_reply()? {
                Need::Reply(v) => return Ok(v),
                Need::Bytes(spare) => {
                    let n = loop {
                        match self.stream.read(spare) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            other => break other?,
                        }
                    };
                    self.state.filled(n)?;
                }
                Need::Direct(vec, remaining) => {
                    let got = self.stream.read_exact_into_vec(vec, remaining)?;
                    direct_filled(got, remaining)?;
                }
            }
        }
    }
}

impl SyncConnection for DirectConnection {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        let raw = self
            .exec_raw(req.commands(), req.is_atomic())
            .map_err(|e| req.error(e))?;
        req.finish(raw)
    }

    /// Writes each request as soon as it is built (building the next one overlaps with
    /// the server's work on those already written) and reads the replies in order, the
    /// oldest ones while newer ones are written once a window of requests is in flight.
    /// After a failed write, the replies of the requests written before it are still
    /// read (each is an acknowledgement).
    fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
        let mut run = PipelinedRun::start(reqs, self.begin())?;
        loop {
            match run.next() {
                Next::Write(r) => {
                    let before = self.state.bytes_sent();
                    let result = self.send(r.commands(), r.is_atomic());
                    let bytes = self.state.bytes_sent() - before;
                    run.written(&r, result, bytes, self.state.write_started());
                }
                Next::Read(n) => {
                    let mut raw = Vec::with_capacity(n);
                    let result = self.recv_into(n, &mut raw);
                    run.read(raw, result);
                }
                Next::Done => return run.finish(),
            }
        }
    }
}
