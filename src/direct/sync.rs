//! Blocking direct connection.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redis::{IntoConnectionInfo, RedisResult, Value};

use super::options::{ConnectOptions, socket_error, timed_out};
#[cfg(feature = "tls")]
use super::peer;
use super::pipeline::{Next, PipelinedRun};
use super::state::{Need, WireState, direct_filled, exec_replies};
#[cfg(feature = "tls")]
use super::tls::{failure, stream_error};
use super::{Frame, Setup, Target, check_handshake, setup};
use crate::error::Result;
use crate::exec::{Attempts, Delivered, Request, Requests, SyncConnection};

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    /// TLS over TCP (`rediss://`); `peer` (`host:port`) names it in errors.
    #[cfg(feature = "tls")]
    Tls {
        tls: Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
        peer: String,
    },
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    /// Connect to `target` within `timeout` (each resolved address in turn; with TLS,
    /// the TLS handshake within the same `timeout` as the TCP connect).
    fn connect(setup: &Setup, timeout: Option<Duration>) -> io::Result<Self> {
        let started = Instant::now();
        match &setup.target {
            Target::Tcp(host, port) => {
                let s = match timeout {
                    None => TcpStream::connect((host.as_str(), *port))?,
                    Some(t) => {
                        let mut last = None;
                        let mut found = None;
                        for addr in (host.as_str(), *port).to_socket_addrs()? {
                            match TcpStream::connect_timeout(&addr, t) {
                                Ok(s) => {
                                    found = Some(s);
                                    break;
                                }
                                Err(e) => last = Some(e),
                            }
                        }
                        match (found, last) {
                            (Some(s), _) => s,
                            (None, Some(e)) if e.kind() == io::ErrorKind::TimedOut => {
                                return Err(timed_out("connecting", timeout));
                            }
                            (None, Some(e)) => return Err(e),
                            (None, None) => {
                                return Err(io::Error::new(
                                    io::ErrorKind::NotFound,
                                    format!("{host}:{port} resolves to no address"),
                                ));
                            }
                        }
                    }
                };
                s.set_nodelay(setup.nodelay)?;
                #[cfg(feature = "tls")]
                if let Some(tls) = &setup.tls {
                    let deadline = timeout.map(|t| started + t);
                    return tls_handshake(s, tls, peer(host, *port), deadline, timeout);
                }
                let _ = started;
                Ok(Stream::Tcp(s))
            }
            #[cfg(unix)]
            Target::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => tls.read(buf).map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }

    /// Appends exactly `n` bytes (or fewer at EOF) to `vec`, reading straight
    /// into its spare capacity. Goes through the concrete socket types so that
    /// std's `read_buf` specialisation is used and the spare capacity is not
    /// zero-filled first; `take` guarantees not a byte past the bulk string
    /// is consumed even if `vec` has more capacity. (Over TLS, rustls decrypts into its
    /// own buffer and copies the plaintext into `vec`'s spare capacity.)
    fn read_exact_into_vec(&mut self, vec: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => Read::by_ref(s).take(n as u64).read_to_end(vec),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => Read::by_ref(&mut **tls)
                .take(n as u64)
                .read_to_end(vec)
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => Read::by_ref(s).take(n as u64).read_to_end(vec),
        }
    }

    /// Writes `buf` whole (over TLS: encrypted and handed to the socket, nothing left
    /// in rustls's buffer).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => tls
                .write_all(buf)
                .and_then(|()| tls.flush())
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => {
                let tls = &mut **tls;
                rustls::Stream::new(&mut tls.conn, &mut tls.sock)
                    .write_vectored(bufs)
                    .map_err(|e| stream_error(e, "TLS", peer))
            }
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
            #[cfg(feature = "tls")]
            Stream::Tls { tls, .. } => {
                tls.sock.set_read_timeout(dur)?;
                tls.sock.set_write_timeout(dur)
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
        #[cfg(feature = "tls")]
        if let Stream::Tls { tls, peer } = self {
            tls.flush().map_err(|e| stream_error(e, "TLS", peer))?;
        }
        Ok(())
    }
}

/// The TLS handshake over the connected socket `sock`, done by the deadline (the same
/// as the TCP connect's). A failure is a [`TlsFailure`](crate::error::TlsFailure)
/// (the alert rustls queued for the server is sent first, best effort); no answer by
/// the deadline (a plain Redis port never answers a TLS hello) is a timeout.
#[cfg(feature = "tls")]
fn tls_handshake(
    mut sock: TcpStream,
    tls: &super::TlsSetup,
    peer: String,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> io::Result<Stream> {
    let mut conn = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
        .map_err(|e| failure(format!("TLS handshake with {peer}"), e))?;
    let no_answer = || {
        timed_out(
            &format!(
                "TLS handshake with {peer} (a plain, non-TLS Redis port never answers a \
                 TLS client: check the port)"
            ),
            timeout,
        )
    };
    while conn.is_handshaking() || conn.wants_write() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(no_answer());
            }
            sock.set_read_timeout(Some(left))?;
            sock.set_write_timeout(Some(left))?;
        }
        let step = if conn.wants_write() {
            conn.write_tls(&mut sock).map(|_| ())
        } else {
            match conn.read_tls(&mut sock) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("TLS handshake with {peer}: the server closed the connection"),
                )),
                Ok(_) => conn.process_new_packets().map(|_| ()).map_err(|e| {
                    // Tell the server why (best effort: the handshake failed anyway).
                    let _ = conn.write_tls(&mut sock);
                    failure(format!("TLS handshake with {peer}"), e)
                }),
                Err(e) => Err(e),
            }
        };
        match step {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(no_answer());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Stream::Tls {
        tls: Box::new(rustls::StreamOwned::new(conn, sock)),
        peer,
    })
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
    /// Where and how to connect again.
    setup: Setup,
    options: ConnectOptions,
    /// Consecutive failed reconnection attempts.
    reconnect_failures: u32,
}

impl DirectConnection {
    /// Connects using anything redis-rs accepts as connection info (a URL such
    /// as `"redis://[user:pass@]host:port/db"` or `"redis+unix:///path"`, a
    /// [`redis::ConnectionInfo`], ...).
    ///
    /// TCP and Unix sockets are supported, and TLS (`rediss://`, a
    /// [`redis::ConnectionAddr::TcpTls`]) with the feature `tls` (without it, a TLS
    /// address fails with [`redis::ErrorKind::InvalidClientConfig`]). When the info
    /// carries a password, `AUTH [username] password` is sent; when `db != 0`,
    /// `SELECT db`. A rejected `AUTH` (e.g. `WRONGPASS`) is returned as the server error.
    ///
    /// The connection has the default [`ConnectOptions`]: 5 s connect timeout, 10 s
    /// response timeout, reconnection at the next call once broken, and retries of
    /// idempotent requests; see [`open_with`](Self::open_with).
    pub fn open<T: IntoConnectionInfo>(info: T) -> RedisResult<Self> {
        Self::open_with(info, ConnectOptions::default())
    }

    /// [`open`](Self::open) with these timeouts, reconnection and retry policy (and,
    /// feature `tls`, TLS settings: [`ConnectOptions::with_tls`]).
    ///
    /// A `rediss://` address always does TLS (the TLS handshake counts within the
    /// connect timeout); its failures are errors of kind
    /// [`Tls`](crate::RedisErrorKind::Tls). To open a connection to one node of a
    /// deployment (e.g. a cluster node named by a redirection) with the settings of the
    /// others, give its address and the same options:
    ///
    /// ```no_run
    /// # #[cfg(feature = "tls")] {
    /// use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
    /// use redstash::direct::{ConnectOptions, DirectConnection, TlsOptions};
    ///
    /// let options = ConnectOptions::default().with_tls(TlsOptions::default().with_ca_file("ca.pem")?);
    /// let seed: ConnectionInfo = "rediss://:pw@10.0.0.1:6380/".into_connection_info()?;
    /// let node = seed.clone().set_addr(ConnectionAddr::TcpTls {
    ///     host: "10.0.0.2".into(),
    ///     port: 6380,
    ///     insecure: false,
    ///     tls_params: None,
    /// });
    /// let con = DirectConnection::open_with(node, options.clone())?; // same CA, same password
    /// # }
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn open_with<T: IntoConnectionInfo>(info: T, options: ConnectOptions) -> RedisResult<Self> {
        let setup = setup(info, &options)?;
        let (stream, state) = establish(&setup, &options)?;
        Ok(DirectConnection {
            stream,
            state,
            setup,
            options,
            reconnect_failures: 0,
        })
    }

    /// Sets (or clears, with `None`) the response timeout: the longest a call waits
    /// for the server to accept or send more bytes (see [`ConnectOptions`]). A call
    /// that times out fails with an error of kind `Timeout`; the connection connects
    /// again at its next call.
    pub fn set_timeout(&mut self, dur: Option<Duration>) -> RedisResult<()> {
        self.options = self.options.clone().with_response_timeout(dur);
        self.stream.set_timeout(self.options.response_timeout)?;
        Ok(())
    }

    /// The options the connection was opened with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
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

    /// Start a call. When an earlier call broke the stream or left replies unread,
    /// connect again first (unless reconnection is off: then fail); consecutive failed
    /// attempts wait the retry policy's backoff first.
    pub(crate) fn begin(&mut self) -> RedisResult<()> {
        if !self.state.is_open() && self.options.reconnect {
            self.reconnect()?;
        }
        self.state.begin()
    }

    /// Replace the stream and the protocol state with a new connection.
    fn reconnect(&mut self) -> RedisResult<()> {
        if let Some(n) = self.reconnect_failures.checked_sub(1) {
            std::thread::sleep(self.options.retry.backoff(n));
        }
        match establish(&self.setup, &self.options) {
            Ok((stream, state)) => {
                self.stream = stream;
                self.state = state;
                self.reconnect_failures = 0;
                Ok(())
            }
            Err(e) => {
                self.reconnect_failures = self.reconnect_failures.saturating_add(1);
                Err(e)
            }
        }
    }

    /// Writes `cmds` (wrapped in `MULTI`/`EXEC` if `atomic`) without reading any
    /// reply, and returns the number of raw replies they will get (a transaction's
    /// `MULTI`, `QUEUED`s and `EXEC` included). Several batches may be sent before
    /// their replies are read with [`recv`](Self::recv), in order.
    pub(crate) fn send<F: Frame>(&mut self, cmds: &[F], atomic: bool) -> RedisResult<usize> {
        let Some((n, encoded)) = self.state.start_write(cmds, atomic)? else {
            return Ok(0);
        };
        let timeout = self.options.response_timeout;
        let written = if encoded.is_contiguous() {
            self.stream.write_all(encoded.scratch())
        } else {
            let mut slices = encoded.io_slices();
            self.stream.write_all_vectored(&mut slices)
        };
        written.map_err(|e| socket_error(e, timeout))?;
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
        let timeout = self.options.response_timeout;
        loop {
            match self.state.poll_reply()? {
                Need::Reply(v) => return Ok(v),
                Need::Bytes(spare) => {
                    let n = loop {
                        match self.stream.read(spare) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            other => break other.map_err(|e| socket_error(e, timeout))?,
                        }
                    };
                    self.state.filled(n)?;
                }
                Need::Direct(vec, remaining) => {
                    let got = self
                        .stream
                        .read_exact_into_vec(vec, remaining)
                        .map_err(|e| socket_error(e, timeout))?;
                    direct_filled(got, remaining)?;
                }
            }
        }
    }
}

impl SyncConnection for DirectConnection {
    /// Sends the request, again when the retry policy allows it (see
    /// [`ConnectOptions`]), pausing its backoff first.
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        let policy = self.options.retry;
        let mut attempts = Attempts::default();
        loop {
            let result = self
                .exec_raw(req.commands(), req.is_atomic())
                .map_err(|e| req.error(e))
                .and_then(|raw| req.finish(raw));
            match attempts.pause_after(&policy, &result, req.is_idempotent()) {
                Some(pause) => std::thread::sleep(pause),
                None => return result,
            }
        }
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

/// A new connection: the stream (connected within the connect timeout), the handshake
/// (`AUTH`, `SELECT`) within the same timeout, then the response timeout set.
fn establish(setup: &Setup, options: &ConnectOptions) -> RedisResult<(Stream, WireState)> {
    let stream = Stream::connect(setup, options.connect_timeout)?;
    let mut conn = DirectConnection {
        stream,
        state: WireState::default(),
        setup: setup.clone(),
        options: options.for_handshake(),
        reconnect_failures: 0,
    };
    if !setup.handshake.is_empty() {
        conn.stream.set_timeout(options.connect_timeout)?;
        // Not `exec`: a handshake never reconnects.
        conn.state.begin()?;
        let n = conn.send(&setup.handshake, false)?;
        check_handshake(conn.recv(n)?)?;
    }
    conn.stream.set_timeout(options.response_timeout)?;
    Ok((conn.stream, conn.state))
}
