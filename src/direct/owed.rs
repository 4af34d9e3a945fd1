//! What a direct connection owes between calls (sans-IO): whether its stream is out of
//! sync, and how many replies of batches already written are still to be read.

use redis::{ErrorKind, RedisError, RedisResult};

use crate::resp::Frame;
use crate::resp::transaction::expected_replies;

/// Error returned by every call on a connection that was broken earlier.
pub(crate) fn broken_error() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "direct connection is broken",
        "an earlier I/O or protocol error (or a cancelled call) left the stream out of sync; open a new connection"
            .to_string(),
    ))
}

/// The state both direct connections keep between calls (sans-IO, like the encoder
/// and parser): whether the stream is out of sync, and how many replies of batches
/// already written are still to be read.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    /// An I/O or protocol error (or a write cut short) left the stream out of sync.
    broken: bool,
    /// Replies of written batches not read yet (a cancelled call leaves some).
    replies: usize,
}

impl Owed {
    /// No error and no reply owed.
    pub(crate) fn is_open(&self) -> bool {
        !self.broken && self.replies == 0
    }

    /// Start a call: an earlier call that broke the stream or left replies unread
    /// makes the connection broken for good.
    pub(crate) fn begin(&mut self) -> RedisResult<()> {
        if self.replies > 0 {
            self.broken = true;
        }
        self.check()
    }

    fn check(&self) -> RedisResult<()> {
        if self.broken {
            return Err(broken_error());
        }
        Ok(())
    }

    /// Before writing `cmds`: the raw replies they will get (a transaction's `MULTI`,
    /// `QUEUED`s and `EXEC` included), or `None` when there is nothing to send (not
    /// even an empty `MULTI`/`EXEC`).
    pub(crate) fn writing<F: Frame>(
        &mut self,
        cmds: &[F],
        atomic: bool,
    ) -> RedisResult<Option<usize>> {
        self.check()?;
        let commands: usize = cmds.iter().map(Frame::replies).sum();
        if commands == 0 {
            return Ok(None);
        }
        Ok(Some(expected_replies(commands, atomic)))
    }

    /// Called just before the first byte is written: the stream counts as broken
    /// until [`written`](Self::written), so a write that fails or is cancelled
    /// leaves it so.
    pub(crate) fn start_write(&mut self) {
        self.broken = true;
    }

    /// The whole batch is written; `n` replies are owed.
    pub(crate) fn written(&mut self, n: usize) {
        self.broken = false;
        self.replies += n;
    }

    /// Before reading `n` replies: they must be owed.
    pub(crate) fn reading(&mut self, n: usize) -> RedisResult<()> {
        if n > self.replies {
            self.broken = true;
        }
        self.check()
    }

    /// Whether the stream is out of sync (an error, or a write cut short).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Before reading `n` replies after a write was cut short: the replies of the
    /// batches written in full before it still come first, in order, and may be read.
    pub(crate) fn salvaging(&mut self, n: usize) -> RedisResult<()> {
        if n > self.replies {
            self.broken = true;
            return Err(broken_error());
        }
        Ok(())
    }

    /// A read failed: the stream is out of sync.
    pub(crate) fn fail(&mut self) {
        self.broken = true;
    }

    /// `n` replies were read.
    pub(crate) fn read(&mut self, n: usize) {
        self.replies -= n;
    }
}
