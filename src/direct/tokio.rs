//! Tokio direct connection (feature `tokio`).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use ::tokio::net::TcpStream;
#[cfg(unix)]
use ::tokio::net::UnixStream;
use redis::{IntoConnectionInfo, RedisResult, Value};

use super::options::{ConnectOptions, timed_out};
use super::pipeline::{Next, PipelinedRun};
use super::state::{Need, WireState, direct_filled, exec_replies};
#[cfg(feature = "tls")]
use super::tls::stream_error;
use super::{Frame, Setup, Target, check_handshake, setup};
use crate::error::Result;
use crate::exec::{AsyncConnection, Attempts, Delivered, Request, Requests};

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    /// TLS over TCP (`rediss://`); `peer` (`host:port`) names it in errors.
    #[cfg(feature = "tls")]
    Tls {
        tls: Box<tokio_rustls::client::TlsStream<TcpStream>>,
        peer: String,
    },
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    /// Connect to `target` within `timeout` (with TLS, the TLS handshake within the
    /// same `timeout`: no answer, as from a plain Redis port, is a timeout).
    async fn connect(setup: &Setup, timeout: Option<Duration>) -> io::Result<Self> {
        #[cfg(feature = "tls")]
        if let (Some(tls), Target::Tcp(host, port)) = (&setup.tls, &setup.target) {
            let peer = super::peer(host, *port);
            let what = format!(
                "connecting to {peer} with TLS (a plain, non-TLS Redis port never answers \
                 a TLS client: check the port)"
            );
            return within(timeout, &what, async {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(setup.nodelay)?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let tls = connector
                    .connect(tls.server_name.clone(), s)
                    .await
                    .map_err(|e| stream_error(e, "TLS handshake", &peer))?;
                Ok(Stream::Tls {
                    tls: Box::new(tls),
                    peer: peer.clone(),
                })
            })
            .await;
        }
        within(timeout, "connecting", async {
            match &setup.target {
                Target::Tcp(host, port) => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(setup.nodelay)?;
                    Ok(Stream::Tcp(s))
                }
                #[cfg(unix)]
                Target::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            }
        })
        .await
    }
}

/// `io` bounded by `timeout` (none: unbounded): past it, the [`timed_out`] error of
/// `what`.
async fn within<T>(
    timeout: Option<Duration>,
    what: &str,
    io: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match timeout {
        None => io.await,
        Some(t) => match ::tokio::time::timeout(t, io).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(what, timeout)),
        },
    }
}

/// What a call waits for, in timeout errors.
const WAITING: &str = "waiting for the server";

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => Pin::new(&mut **tls)
                .poll_read(cx, buf)
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => Pin::new(&mut **tls)
                .poll_write(cx, buf)
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => Pin::new(&mut **tls)
                .poll_write_vectored(cx, bufs)
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, .. } => tls.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => Pin::new(&mut **tls)
                .poll_flush(cx)
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Stream::Tls { tls, peer } => Pin::new(&mut **tls)
                .poll_shutdown(cx)
                .map_err(|e| stream_error(e, "TLS", peer)),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Tokio direct connection to one Redis server; same semantics as
/// [`DirectConnection`](super::DirectConnection).
///
/// If an `exec` future is dropped before completing (e.g. by a timeout), the
/// connection is marked broken, since the stream may be mid-reply.
#[derive(Debug)]
pub struct DirectAsyncConnection {
    stream: Stream,
    state: WireState,
    /// Where and how to connect again.
    setup: Setup,
    options: ConnectOptions,
    /// Consecutive failed reconnection attempts.
    reconnect_failures: u32,
}

impl DirectAsyncConnection {
    /// Connects using anything redis-rs accepts as connection info; see
    /// [`DirectConnection::open`](super::DirectConnection::open) (TCP and Unix
    /// sockets, TLS with the feature `tls`; `AUTH` and `SELECT` from the info).
    /// With the default [`ConnectOptions`] (timeouts, reconnection, retries).
    pub async fn open<T: IntoConnectionInfo>(info: T) -> RedisResult<Self> {
        Self::open_with(info, ConnectOptions::default()).await
    }

    /// [`open`](Self::open) with these timeouts, reconnection and retry policy (and TLS
    /// settings, feature `tls`); see [`ConnectOptions`] and
    /// [`DirectConnection::open_with`](super::DirectConnection::open_with).
    pub async fn open_with<T: IntoConnectionInfo>(
        info: T,
        options: ConnectOptions,
    ) -> RedisResult<Self> {
        let setup = setup(info, &options)?;
        let (stream, state) = establish(&setup, &options).await?;
        Ok(DirectAsyncConnection {
            stream,
            state,
            setup,
            options,
            reconnect_failures: 0,
        })
    }

    /// Sets (or clears, with `None`) the response timeout (see [`ConnectOptions`]).
    pub fn set_timeout(&mut self, dur: Option<Duration>) {
        self.options = self.options.clone().with_response_timeout(dur);
    }

    /// The options the connection was opened with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// `false` once an I/O or protocol error (or a cancelled `exec`) broke the
    /// connection; every `exec` then fails with an error of kind
    /// [`redis::ErrorKind::Io`].
    pub fn is_open(&self) -> bool {
        self.state.is_open()
    }

    /// Sends all `cmds` pipelined in one write and reads one reply per command;
    /// see [`DirectConnection::exec`](super::DirectConnection::exec) for the
    /// `atomic` and error semantics.
    pub async fn exec<F: Frame + Sync>(
        &mut self,
        cmds: &[F],
        atomic: bool,
    ) -> RedisResult<Vec<Value>> {
        exec_replies(self.exec_raw(cmds, atomic).await?, atomic)
    }

    /// Sends `cmds` and reads their raw replies (a transaction's `MULTI`, `QUEUED`s and
    /// `EXEC` included; none when there is nothing to send).
    async fn exec_raw<F: Frame + Sync>(
        &mut self,
        cmds: &[F],
        atomic: bool,
    ) -> RedisResult<Vec<Value>> {
        self.begin().await?;
        let n = self.send(cmds, atomic).await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        self.recv(n).await
    }

    /// Start a call. When an earlier call broke the stream, left replies unread or
    /// was cancelled, connect again first (unless reconnection is off: then fail);
    /// consecutive failed attempts wait the retry policy's backoff first.
    pub(crate) async fn begin(&mut self) -> RedisResult<()> {
        if !self.state.is_open() && self.options.reconnect {
            self.reconnect().await?;
        }
        self.state.begin()
    }

    /// Replace the stream and the protocol state with a new connection. Cancelled, it
    /// leaves the connection as it was (broken): the next call tries again.
    async fn reconnect(&mut self) -> RedisResult<()> {
        if let Some(n) = self.reconnect_failures.checked_sub(1) {
            ::tokio::time::sleep(self.options.retry.backoff(n)).await;
        }
        match establish(&self.setup, &self.options).await {
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
    /// reply, and returns the number of raw replies they will get; see
    /// [`DirectConnection`](super::DirectConnection)'s `send`. A dropped future leaves
    /// the connection marked broken.
    pub(crate) async fn send<F: Frame + Sync>(
        &mut self,
        cmds: &[F],
        atomic: bool,
    ) -> RedisResult<usize> {
        let Some((n, encoded)) = self.state.start_write(cmds, atomic)? else {
            return Ok(0);
        };
        let timeout = self.options.response_timeout;
        if encoded.is_contiguous() {
            within(timeout, WAITING, self.stream.write_all(encoded.scratch())).await?;
        } else {
            let mut slices = encoded.io_slices();
            let mut bufs: &mut [IoSlice<'_>] = &mut slices;
            while !bufs.is_empty() {
                let n = within(timeout, WAITING, self.stream.write_vectored(bufs)).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole request",
                    )
                    .into());
                }
                IoSlice::advance_slices(&mut bufs, n);
            }
        }
        within(timeout, WAITING, self.stream.flush()).await?;
        self.state.written(n);
        Ok(n)
    }

    /// Reads the next `n` replies of batches written in full into `out`, also after a
    /// later batch's write was cut short; see
    /// [`DirectConnection`](super::DirectConnection)'s `recv_into`.
    pub(crate) async fn recv_into(&mut self, n: usize, out: &mut Vec<Value>) -> RedisResult<()> {
        self.state.start_read(n, true)?;
        self.read_replies(n, out).await
    }

    /// Reads the next `n` replies of batches written by [`send`](Self::send). A
    /// dropped future leaves replies owed, so the connection counts as broken.
    pub(crate) async fn recv(&mut self, n: usize) -> RedisResult<Vec<Value>> {
        self.state.start_read(n, false)?;
        let mut replies = Vec::with_capacity(n);
        self.read_replies(n, &mut replies).await?;
        Ok(replies)
    }

    async fn read_replies(&mut self, n: usize, out: &mut Vec<Value>) -> RedisResult<()> {
        for read in 0..n {
            match self.read_reply().await {
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

    async fn read_reply(&mut self) -> RedisResult<Value> {
        let timeout = self.options.response_timeout;
        loop {
            match self.state.poll_reply()? {
                Need::Reply(v) => return Ok(v),
                Need::Bytes(spare) => {
                    let n = within(timeout, WAITING, self.stream.read(spare)).await?;
                    self.state.filled(n)?;
                }
                Need::Direct(vec, remaining) => {
                    let target = vec.len() + remaining;
                    // `take` bounds the read to this bulk string even if `vec`
                    // has extra capacity; `read_buf` fills the spare capacity
                    // without zeroing it. `vec.len() < target <= capacity`
                    // holds at every call, so `read_buf` never reallocates.
                    let mut limited = (&mut self.stream).take(remaining as u64);
                    let mut got = 0;
                    while vec.len() < target {
                        let n = within(timeout, WAITING, limited.read_buf(vec)).await?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    direct_filled(got, remaining)?;
                }
            }
        }
    }
}

impl AsyncConnection for DirectAsyncConnection {
    /// Writes each request as soon as it is built and reads the replies in order, the
    /// oldest ones while newer ones are written once a window of requests is in flight;
    /// see [`DirectConnection`](super::DirectConnection)'s `run_requests`.
    async fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
        let begun = self.begin().await;
        let mut run = PipelinedRun::start(reqs, begun)?;
        loop {
            match run.next() {
                Next::Write(r) => {
                    let before = self.state.bytes_sent();
                    let result = self.send(r.commands(), r.is_atomic()).await;
                    let bytes = self.state.bytes_sent() - before;
                    run.written(&r, result, bytes, self.state.write_started());
                }
                Next::Read(n) => {
                    let mut raw = Vec::with_capacity(n);
                    let result = self.recv_into(n, &mut raw).await;
                    run.read(raw, result);
                }
                Next::Done => return run.finish(),
            }
        }
    }

    /// Sends the request, again when the retry policy allows it (see
    /// [`ConnectOptions`]), pausing its backoff first.
    async fn run_request(&mut self, req: Request<'_>) -> Result<Vec<Value>> {
        let policy = self.options.retry;
        let mut attempts = Attempts::default();
        loop {
            let result = self
                .exec_raw(req.commands(), req.is_atomic())
                .await
                .map_err(|e| req.error(e))
                .and_then(|raw| req.finish(raw));
            match attempts.pause_after(&policy, &result, req.is_idempotent()) {
                Some(pause) => ::tokio::time::sleep(pause).await,
                None => return result,
            }
        }
    }
}

/// A new connection: the stream (connected within the connect timeout), the handshake
/// (`AUTH`, `SELECT`) within the same timeout.
async fn establish(setup: &Setup, options: &ConnectOptions) -> RedisResult<(Stream, WireState)> {
    let stream = Stream::connect(setup, options.connect_timeout).await?;
    let mut conn = DirectAsyncConnection {
        stream,
        state: WireState::default(),
        setup: setup.clone(),
        options: options.for_handshake(),
        reconnect_failures: 0,
    };
    if !setup.handshake.is_empty() {
        // Not `exec`: a handshake never reconnects.
        conn.state.begin()?;
        let n = conn.send(&setup.handshake, false).await?;
        check_handshake(conn.recv(n).await?)?;
    }
    Ok((conn.stream, conn.state))
}
