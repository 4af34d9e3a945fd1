//! What the sync and tokio direct connections share (sans-IO): the framing of requests,
//! the reply parser with its read buffer, the replies owed, and what each read or write
//! must do next. The connections only move bytes between these and their socket.

use redis::{RedisResult, Value};

use super::owed::Owed;
use crate::resp::{
    Encoded, Encoder, Frame, Parser, Progress, ReadBuffer, eof_error, protocol_error,
    transaction_replies,
};

/// The protocol state of one direct connection.
#[derive(Debug, Default)]
pub(crate) struct WireState {
    encoder: Encoder,
    parser: Parser,
    rbuf: ReadBuffer,
    /// Errors and replies owed between calls.
    owed: Owed,
    /// Bytes of requests written (or being written) so far.
    bytes_sent: u64,
}

/// What reading the next reply needs from the socket.
pub(crate) enum Need<'s> {
    /// The reply is complete.
    Reply(Value),
    /// Read what the socket has into this free space of the read buffer, then report
    /// the count with [`WireState::filled`].
    Bytes(&'s mut [u8]),
    /// Append exactly `.1` bytes from the socket to this large bulk string (into its
    /// spare capacity, which is at least that large); fewer is the end of the stream.
    Direct(&'s mut Vec<u8>, usize),
}

impl WireState {
    /// `false` once the stream is out of sync or replies are owed.
    pub(crate) fn is_open(&self) -> bool {
        self.owed.is_open()
    }

    /// Start a call: fails (and marks the connection broken) if an earlier call broke
    /// the stream, left replies unread or was cancelled.
    pub(crate) fn begin(&mut self) -> RedisResult<()> {
        self.owed.begin()
    }

    /// Before writing `cmds` (wrapped in `MULTI`/`EXEC` if `atomic`): their framing and
    /// the number of raw replies they will get, or `None` when there is nothing to send.
    /// Encoding errors (e.g. cursor arguments) happen before any I/O and leave the stream
    /// as it was; once this returns `Some`, the stream counts as broken until
    /// [`written`](Self::written), so a write that fails or is cancelled leaves it so.
    pub(crate) fn start_write<'a, F: Frame>(
        &'a mut self,
        cmds: &'a [F],
        atomic: bool,
    ) -> RedisResult<Option<(usize, Encoded<'a>)>> {
        let Some(n) = self.owed.writing(cmds, atomic)? else {
            return Ok(None);
        };
        let encoded = self.encoder.encode(cmds, atomic)?;
        self.bytes_sent += encoded.total_len() as u64;
        self.owed.start_write();
        Ok(Some((n, encoded)))
    }

    /// The whole batch is written; `n` replies are owed.
    pub(crate) fn written(&mut self, n: usize) {
        self.owed.written(n);
    }

    /// Bytes of requests handed to the connection so far (a request's bytes count once
    /// its write starts).
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// After a failed write: whether any byte of it was written (if not, the stream is
    /// as it was and nothing of that batch reached the server).
    pub(crate) fn write_started(&self) -> bool {
        self.owed.is_broken()
    }

    /// Before reading the next `n` replies: they must be owed. `salvage`: after a later
    /// batch's write was cut short, the replies of the batches written in full before it
    /// still come first and may be read.
    pub(crate) fn start_read(&mut self, n: usize, salvage: bool) -> RedisResult<()> {
        if salvage {
            self.owed.salvaging(n)
        } else {
            self.owed.reading(n)
        }
    }

    /// `read` replies were read, then reading failed (`Err`) or all were read.
    pub(crate) fn read_done(&mut self, read: usize, failed: bool) {
        if failed {
            self.owed.fail();
        }
        self.owed.read(read);
    }

    /// What reading the next reply needs: the reply, or bytes from the socket.
    pub(crate) fn poll_reply(&mut self) -> RedisResult<Need<'_>> {
        Ok(match self.parser.advance(&mut self.rbuf)? {
            Progress::Done(v) => Need::Reply(v),
            Progress::NeedMore => Need::Bytes(self.rbuf.spare_mut()?),
            Progress::NeedDirect => {
                let (vec, remaining) = self.parser.direct_target().ok_or_else(|| {
                    protocol_error("parser asked for a direct read without a target")
                })?;
                Need::Direct(vec, remaining)
            }
        })
    }

    /// `n` bytes were read into [`Need::Bytes`] (0: the end of the stream).
    pub(crate) fn filled(&mut self, n: usize) -> RedisResult<()> {
        if n == 0 {
            return Err(eof_error());
        }
        self.rbuf.commit(n);
        Ok(())
    }
}

/// `got` bytes were appended to a [`Need::Direct`] target of `wanted`: fewer is the end
/// of the stream.
pub(crate) fn direct_filled(got: usize, wanted: usize) -> RedisResult<()> {
    if got < wanted {
        return Err(eof_error());
    }
    Ok(())
}

/// The result of a direct connection's `exec` from the raw replies of its batch: a
/// transaction's replies unwrapped by the one transaction check.
pub(crate) fn exec_replies(raw: Vec<Value>, atomic: bool) -> RedisResult<Vec<Value>> {
    if !atomic {
        return Ok(raw);
    }
    transaction_replies(raw).map_err(|a| a.into_redis_error())
}
