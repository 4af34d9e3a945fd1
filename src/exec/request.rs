//! Requests (a pipeline of commands, possibly a transaction), the check of their
//! replies, and the lazily built requests of a `SendAll`.

use std::borrow::Cow;

use redis::Value;

use super::Command;
use crate::error::{Error, Result};
use crate::resp::transaction_replies;

/// A batch of commands sent in one round trip, optionally as a MULTI/EXEC transaction.
/// Its lifetime is that of the memory its commands borrow (`'static` when none).
#[derive(Clone)]
pub struct Request<'a> {
    pub(crate) cmds: Vec<Command<'a>>,
    /// Replies to the commands (a [`Packed`](super::Packed) command counts each command it holds).
    replies: usize,
    pub(crate) atomic: bool,
    idempotent: bool,
    key: Option<String>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("commands", &self.replies)
            .field("atomic", &self.atomic)
            .field("idempotent", &self.idempotent)
            .field("key", &self.key)
            .finish()
    }
}

impl<'a> Request<'a> {
    /// An empty, non-atomic request about `key` (the key is used in error messages).
    pub fn new(key: Option<&str>) -> Self {
        Request {
            cmds: Vec::new(),
            replies: 0,
            atomic: false,
            idempotent: false,
            key: key.map(str::to_owned),
        }
    }

    /// A request of a single command.
    pub fn single(cmd: impl Into<Command<'a>>, key: Option<&str>) -> Self {
        let mut r = Self::new(key);
        r.push(cmd);
        r
    }

    /// Make the request a MULTI/EXEC transaction.
    pub fn atomic(mut self) -> Self {
        self.atomic = true;
        self
    }

    /// Mark the request idempotent: running it twice has the same effect and result
    /// as running it once (reads; `SET`/`HSET`/`MSET` of whole values). A connection
    /// with a retry policy may send an idempotent request again after a connection
    /// failure or a transient server error (`TRYAGAIN`, `LOADING`, `CLUSTERDOWN`...);
    /// other requests are never sent twice. Not idempotent: counters, `DEL` whose
    /// result is read, anything whose replies depend on what an earlier run did.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Whether the request may be sent again (see [`idempotent`](Self::idempotent)).
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// Add a command.
    pub fn push(&mut self, cmd: impl Into<Command<'a>>) {
        let cmd = cmd.into();
        self.replies += cmd.replies();
        self.cmds.push(cmd);
    }

    /// Number of commands (and so of replies): a [`Packed`](super::Packed) command counts each
    /// command it holds.
    pub fn len(&self) -> usize {
        self.replies
    }

    /// Whether the request holds no command.
    pub fn is_empty(&self) -> bool {
        self.replies == 0
    }

    /// Whether the request is a transaction.
    pub fn is_atomic(&self) -> bool {
        self.atomic
    }

    /// The key this request is about, if one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The commands.
    pub fn commands(&self) -> &[Command<'a>] {
        &self.cmds
    }

    /// Take the commands out.
    pub fn into_commands(self) -> Vec<Command<'a>> {
        self.cmds
    }

    /// The commands as a redis-rs pipeline (`Cmd`s are moved; borrowed pieces and
    /// [`Packed`](super::Packed) commands copied).
    pub fn into_pipeline(self) -> Result<redis::Pipeline> {
        let mut p = redis::Pipeline::with_capacity(self.replies);
        for c in self.cmds {
            c.add_to(&mut p)?;
        }
        if self.atomic {
            p.atomic();
        }
        Ok(p)
    }

    /// `(offset, count)` of the replies to keep from the raw reply stream (a transaction
    /// answers MULTI, one QUEUED per command, then EXEC).
    pub(crate) fn reply_window(&self) -> (usize, usize) {
        if self.atomic {
            (self.replies + 1, 1)
        } else {
            (0, self.replies)
        }
    }

    /// All commands as RESP: borrowed when the request is one [`Packed`](super::Packed) command,
    /// else packed into one buffer sized once.
    pub(crate) fn packed(&self) -> Cow<'_, [u8]> {
        if let ([Command::Packed(p)], false) = (self.cmds.as_slice(), self.atomic) {
            return Cow::Borrowed(p.as_bytes());
        }
        let size: usize = self.cmds.iter().map(Command::size_hint).sum();
        let mut buf = Vec::with_capacity(size + 64);
        if self.atomic {
            redis::cmd("MULTI").write_packed_command(&mut buf);
        }
        for c in &self.cmds {
            c.write_resp(&mut buf);
        }
        if self.atomic {
            redis::cmd("EXEC").write_packed_command(&mut buf);
        }
        Cow::Owned(buf)
    }

    /// Turn a redis-rs error into ours, with this request's key.
    pub fn error(&self, e: redis::RedisError) -> Error {
        Error::redis(e, self.key.as_deref())
    }

    /// Check the replies of a request (see [`ReplyCheck::finish`]).
    pub(crate) fn finish(&self, replies: Vec<Value>) -> Result<Vec<Value>> {
        check_replies(self.replies, self.atomic, self.key.as_deref(), replies)
    }

    /// What checking the replies needs, without the commands' data.
    pub(crate) fn shell(&self) -> ReplyCheck {
        ReplyCheck {
            len: self.replies,
            atomic: self.atomic,
            key: self.key.clone(),
        }
    }
}

/// The shape of a request (count, transaction, key), kept to check its replies after
/// the request itself was handed to a connection.
#[derive(Debug)]
pub(crate) struct ReplyCheck {
    pub(crate) len: usize,
    pub(crate) atomic: bool,
    pub(crate) key: Option<String>,
}

impl ReplyCheck {
    pub(crate) fn error(&self, e: redis::RedisError) -> Error {
        Error::redis(e, self.key.as_deref())
    }

    /// Check the replies of a request: a transaction's unwrapped by the one transaction
    /// check (from its raw replies as a direct connection reads them, `MULTI`, `QUEUED`s
    /// and `EXEC`, or from `EXEC`'s reply alone as redis-rs returns it), then the count.
    /// Per-command server errors stay `Value::ServerError` for the parse step.
    pub(crate) fn finish(&self, replies: Vec<Value>) -> Result<Vec<Value>> {
        check_replies(self.len, self.atomic, self.key.as_deref(), replies)
    }
}

/// [`ReplyCheck::finish`] of a request of `len` commands about `key`.
fn check_replies(
    len: usize,
    atomic: bool,
    key: Option<&str>,
    replies: Vec<Value>,
) -> Result<Vec<Value>> {
    // A request without commands sends nothing on a direct connection (not even an
    // empty `MULTI`/`EXEC`), so it gets no reply at all.
    let nothing_sent = len == 0 && replies.is_empty();
    let replies = if atomic && !nothing_sent {
        transaction_replies(replies).map_err(|a| a.into_error(key))?
    } else {
        replies
    };
    if replies.len() != len {
        return Err(Error::unexpected(
            format!("{} replies for {} commands", replies.len(), len),
            key.map(str::to_owned),
        ));
    }
    Ok(replies)
}

/// Independent requests of a [`Step::SendAll`](super::Step::SendAll), built one at a time as a connection
/// asks for the next: a connection that writes each request as soon as it has it
/// builds the next one while the server works on the previous ones, instead of the
/// server waiting for all of them to be built. The number of requests is known up
/// front.
pub struct Requests<'a> {
    iter: Box<dyn ExactSizeIterator<Item = Request<'a>> + Send + 'a>,
}

impl<'a> Requests<'a> {
    /// Requests built lazily by `iter`.
    pub fn new(iter: impl ExactSizeIterator<Item = Request<'a>> + Send + 'a) -> Self {
        Requests {
            iter: Box::new(iter),
        }
    }
}

impl<'a> From<Vec<Request<'a>>> for Requests<'a> {
    fn from(reqs: Vec<Request<'a>>) -> Self {
        Requests::new(reqs.into_iter())
    }
}

impl<'a> Iterator for Requests<'a> {
    type Item = Request<'a>;

    fn next(&mut self) -> Option<Request<'a>> {
        self.iter.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

impl ExactSizeIterator for Requests<'_> {}

impl std::fmt::Debug for Requests<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("remaining", &self.iter.len())
            .finish()
    }
}
