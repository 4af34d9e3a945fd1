//! Tokio direct connection (feature `tokio`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use ::tokio::net::TcpStream;
#[cfg(unix)]
use ::tokio::net::UnixStream;
use redis::{IntoConnectionInfo, RedisResult, Value};

use super::resp::{self, Encoder, Frame, Owed, Parser, Progress, ReadBuffer};
use super::{Target, check_handshake, setup};

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
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
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
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
    encoder: Encoder,
    parser: Parser,
    rbuf: ReadBuffer,
    /// Errors and replies owed between calls.
    owed: Owed,
    /// Bytes of requests written (or being written) so far.
    bytes_sent: u64,
}

impl DirectAsyncConnection {
    /// Connects using anything redis-rs accepts as connection info; see
    /// [`DirectConnection::open`](super::DirectConnection::open) (TCP and Unix
    /// sockets, no TLS; `AUTH` and `SELECT` from the info).
    pub async fn open<T: IntoConnectionInfo>(info: T) -> RedisResult<Self> {
        let setup = setup(info)?;
        let stream = match &setup.target {
            Target::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(setup.nodelay)?;
                Stream::Tcp(s)
            }
            #[cfg(unix)]
            Target::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        };
        let mut conn = DirectAsyncConnection {
            stream,
            encoder: Encoder::default(),
            parser: Parser::new(),
            rbuf: ReadBuffer::default(),
            owed: Owed::default(),
            bytes_sent: 0,
        };
        if !setup.handshake.is_empty() {
            let replies = conn.exec(&setup.handshake, false).await?;
            check_handshake(replies)?;
        }
        Ok(conn)
    }

    /// `false` once an I/O or protocol error (or a cancelled `exec`) broke the
    /// connection; every `exec` then fails with an error of kind
    /// [`redis::ErrorKind::Io`].
    pub fn is_open(&self) -> bool {
        self.owed.is_open()
    }

    /// Sends all `cmds` pipelined in one write and reads one reply per command;
    /// see [`DirectConnection::exec`](super::DirectConnection::exec) for the
    /// `atomic` and error semantics.
    pub async fn exec<F: Frame + Sync>(
        &mut self,
        cmds: &[F],
        atomic: bool,
    ) -> RedisResult<Vec<Value>> {
        self.begin()?;
        let n = self.send(cmds, atomic).await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let replies = self.recv(n).await?;
        resp::finish_replies(replies, atomic)
    }

    /// Start a call: fails (and marks the connection broken) if an earlier call
    /// broke the stream, left replies unread or was cancelled.
    pub(crate) fn begin(&mut self) -> RedisResult<()> {
        self.owed.begin()
    }

    /// Writes `cmds` (wrapped in `MULTI`/`EXEC` if `atomic`) without reading any
    /// reply, and returns the number of raw replies they will get; see
    /// [`DirectConnection`](super::DirectConnection)'s `send`.
    pub(crate) async fn send<F: Frame + Sync>(
        &mut self,
        cmds: &[F],
        atomic: bool,
    ) -> RedisResult<usize> {
        let Some(n) = self.owed.writing(cmds, atomic)? else {
            return Ok(0);
        };
        let encoded = self.encoder.encode(cmds, atomic)?;
        self.bytes_sent += encoded.total_len() as u64;
        // Set before any I/O and cleared once the whole batch is written: an error or
        // a dropped future leaves the connection marked broken.
        self.owed.start_write();
        if encoded.is_contiguous() {
            self.stream.write_all(encoded.scratch()).await?;
        } else {
            let mut slices = encoded.io_slices();
            let mut bufs: &mut [IoSlice<'_>] = &mut slices;
            while !bufs.is_empty() {
                let n = self.stream.write_vectored(bufs).await?;
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
        self.stream.flush().await?;
        self.owed.written(n);
        Ok(n)
    }

    /// Bytes of requests handed to [`send`](Self::send) so far.
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// After a failed [`send`](Self::send): whether any byte of it was written.
    pub(crate) fn write_started(&self) -> bool {
        self.owed.is_broken()
    }

    /// Reads the next `n` replies of batches written in full into `out`, also after a
    /// later batch's write was cut short; see
    /// [`DirectConnection`](super::DirectConnection)'s `recv_into`.
    pub(crate) async fn recv_into(&mut self, n: usize, out: &mut Vec<Value>) -> RedisResult<()> {
        self.owed.salvaging(n)?;
        for _ in 0..n {
            match self.read_reply().await {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.owed.fail();
                    self.owed.read(out.len());
                    return Err(e);
                }
            }
        }
        self.owed.read(n);
        Ok(())
    }

    /// Reads the next `n` replies of batches written by [`send`](Self::send). A
    /// dropped future leaves replies owed, so the connection counts as broken.
    pub(crate) async fn recv(&mut self, n: usize) -> RedisResult<Vec<Value>> {
        self.owed.reading(n)?;
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            match self.read_reply().await {
                Ok(v) => replies.push(v),
                Err(e) => {
                    self.owed.fail();
                    return Err(e);
                }
            }
        }
        self.owed.read(n);
        Ok(replies)
    }

    async fn read_reply(&mut self) -> RedisResult<Value> {
        loop {
            match self.parser.advance(&mut self.rbuf)? {
                Progress::Done(v) => return Ok(v),
                Progress::NeedMore => {
                    let spare = self.rbuf.spare_mut()?;
                    let n = self.stream.read(spare).await?;
                    if n == 0 {
                        return Err(resp::eof_error());
                    }
                    self.rbuf.commit(n);
                }
                Progress::NeedDirect => {
                    let (vec, remaining) = self.parser.direct_target().ok_or_else(|| {
                        resp::protocol_error("parser asked for a direct read without a target")
                    })?;
                    let target = vec.len() + remaining;
                    // `take` bounds the read to this bulk string even if `vec`
                    // has extra capacity; `read_buf` fills the spare capacity
                    // without zeroing it. `vec.len() < target <= capacity`
                    // holds at every call, so `read_buf` never reallocates.
                    let mut limited = (&mut self.stream).take(remaining as u64);
                    while vec.len() < target {
                        let n = limited.read_buf(vec).await?;
                        if n == 0 {
                            return Err(resp::eof_error());
                        }
                    }
                }
            }
        }
    }
}
