//! Running plans on connections.
//!
//! Every store operation is written once, as a pure function that returns a [`Step`]: a
//! [`Request`] (a pipeline of commands) plus a pure continuation that parses the replies
//! into either the result or the next request. This module holds the only code that
//! talks to connections: [`run`] drives a step on any [`SyncConnection`] (every
//! `redis::ConnectionLike`, e.g. `redis::Connection`, and redstash's
//! [`DirectConnection`](crate::direct::DirectConnection)), and `run_async` (feature
//! `tokio`) on any [`AsyncConnection`] (every `redis::aio::ConnectionLike`, e.g.
//! `MultiplexedConnection` and `ConnectionManager`).

use std::borrow::Cow;

use redis::{Cmd, Value};

use crate::error::{Error, Result};

#[cfg(feature = "tokio")]
mod asynchronous;
#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncConnection, run_async};

/// One command of a [`Request`]: a redis-rs [`Cmd`], or arguments given as byte pieces
/// that may borrow the caller's memory (an array's data), so that a connection that
/// writes vectored ([`DirectConnection`](crate::direct::DirectConnection)) sends them
/// without a copy. Other connections pack them like any command.
#[derive(Debug, Clone)]
pub enum Command<'a> {
    /// A redis-rs command.
    Cmd(Cmd),
    /// Arguments, each the concatenation of its pieces.
    Pieces(Vec<Vec<Cow<'a, [u8]>>>),
}

impl Command<'_> {
    /// Number of arguments.
    pub fn arg_count(&self) -> usize {
        match self {
            Command::Cmd(c) => c.args_iter().len(),
            Command::Pieces(a) => a.len(),
        }
    }

    /// The bytes of argument `i` (copied only when it is made of several pieces).
    pub fn arg(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        match self {
            Command::Cmd(c) => match c.args_iter().nth(i)? {
                redis::Arg::Simple(b) => Some(Cow::Borrowed(b)),
                _ => None,
            },
            Command::Pieces(a) => {
                let pieces = a.get(i)?;
                match pieces.as_slice() {
                    [one] => Some(Cow::Borrowed(one)),
                    many => Some(Cow::Owned(many.concat())),
                }
            }
        }
    }

    /// Length of argument `i`.
    pub fn arg_len(&self, i: usize) -> usize {
        match self {
            Command::Cmd(c) => match c.args_iter().nth(i) {
                Some(redis::Arg::Simple(b)) => b.len(),
                _ => 0,
            },
            Command::Pieces(a) => a.get(i).map_or(0, |p| p.iter().map(|x| x.len()).sum()),
        }
    }

    /// Bytes of all arguments (a size hint for packing).
    fn size_hint(&self) -> usize {
        // One pass over the arguments (`arg_len(i)` walks the command's arguments).
        let args: usize = match self {
            Command::Cmd(c) => c
                .args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => b.len() + 16,
                    _ => 16,
                })
                .sum(),
            Command::Pieces(a) => a.iter().flatten().map(|p| p.len() + 16).sum(),
        };
        args + 16
    }

    /// Append this command as RESP to `buf`.
    fn write_packed(&self, buf: &mut Vec<u8>) {
        match self {
            Command::Cmd(c) => c.write_packed_command(buf),
            Command::Pieces(args) => {
                buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
                for pieces in args {
                    let n: usize = pieces.iter().map(|p| p.len()).sum();
                    buf.extend_from_slice(format!("${n}\r\n").as_bytes());
                    for p in pieces {
                        buf.extend_from_slice(p);
                    }
                    buf.extend_from_slice(b"\r\n");
                }
            }
        }
    }

    /// As a redis-rs command (copies borrowed pieces).
    pub fn into_cmd(self) -> Cmd {
        match self {
            Command::Cmd(c) => c,
            Command::Pieces(args) => {
                let mut c =
                    Cmd::with_capacity(args.len(), args.iter().flatten().map(|p| p.len()).sum());
                for pieces in &args {
                    match pieces.as_slice() {
                        [one] => {
                            c.arg(&one[..]);
                        }
                        many => {
                            c.arg(many.concat());
                        }
                    }
                }
                c
            }
        }
    }
}

impl crate::direct::Frame for Command<'_> {
    fn frame<'b>(&'b self, f: &mut crate::direct::Framer<'_, 'b>) -> redis::RedisResult<()> {
        match self {
            Command::Cmd(c) => c.frame(f),
            Command::Pieces(args) => {
                f.command(args.len())?;
                for pieces in args {
                    let parts: Vec<&[u8]> = pieces.iter().map(|p| &p[..]).collect();
                    f.arg(&parts);
                }
                Ok(())
            }
        }
    }
}

/// A batch of commands sent in one round trip, optionally as a MULTI/EXEC transaction.
/// Its lifetime is that of the memory its commands borrow (`'static` when none).
#[derive(Clone)]
pub struct Request<'a> {
    cmds: Vec<Command<'a>>,
    atomic: bool,
    key: Option<String>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("commands", &self.cmds.len())
            .field("atomic", &self.atomic)
            .field("key", &self.key)
            .finish()
    }
}

impl<'a> Request<'a> {
    /// An empty, non-atomic request about `key` (the key is used in error messages).
    pub fn new(key: Option<&str>) -> Self {
        Request {
            cmds: Vec::new(),
            atomic: false,
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

    /// Add a command.
    pub fn push(&mut self, cmd: impl Into<Command<'a>>) {
        self.cmds.push(cmd.into());
    }

    /// Number of commands (and so of replies).
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Whether the request holds no command.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
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

    /// The commands as a redis-rs pipeline (`Cmd`s are moved; borrowed pieces copied).
    pub fn into_pipeline(self) -> redis::Pipeline {
        let mut p = redis::Pipeline::with_capacity(self.cmds.len());
        for c in self.cmds {
            p.add_command(c.into_cmd());
        }
        if self.atomic {
            p.atomic();
        }
        p
    }

    /// `(offset, count)` of the replies to keep from the raw reply stream (a transaction
    /// answers MULTI, one QUEUED per command, then EXEC).
    pub(crate) fn reply_window(&self) -> (usize, usize) {
        if self.atomic {
            (self.cmds.len() + 1, 1)
        } else {
            (0, self.cmds.len())
        }
    }

    /// All commands packed as RESP into one buffer sized once.
    pub(crate) fn packed(&self) -> Vec<u8> {
        let size: usize = self.cmds.iter().map(Command::size_hint).sum();
        let mut buf = Vec::with_capacity(size + 64);
        if self.atomic {
            redis::cmd("MULTI").write_packed_command(&mut buf);
        }
        for c in &self.cmds {
            c.write_packed(&mut buf);
        }
        if self.atomic {
            redis::cmd("EXEC").write_packed_command(&mut buf);
        }
        buf
    }

    /// Turn a redis-rs error into ours, with this request's key.
    pub fn error(&self, e: redis::RedisError) -> Error {
        Error::redis(e, self.key.as_deref())
    }

    /// Check the replies of a request: unwrap a transaction's EXEC reply and check the
    /// count. Per-command server errors stay `Value::ServerError` for the parse step.
    pub(crate) fn finish(&self, replies: Vec<Value>) -> Result<Vec<Value>> {
        self.shell().finish(replies)
    }

    /// What checking the replies needs, without the commands' data.
    pub(crate) fn shell(&self) -> ReplyCheck {
        ReplyCheck {
            len: self.cmds.len(),
            atomic: self.atomic,
            key: self.key.clone(),
        }
    }
}

/// The shape of a request (count, transaction, key), kept to check its replies after
/// the request itself was handed to a connection.
pub(crate) struct ReplyCheck {
    len: usize,
    atomic: bool,
    key: Option<String>,
}

impl ReplyCheck {
    pub(crate) fn error(&self, e: redis::RedisError) -> Error {
        Error::redis(e, self.key.as_deref())
    }

    pub(crate) fn finish(&self, mut replies: Vec<Value>) -> Result<Vec<Value>> {
        if self.atomic {
            // EXEC's reply is the array of replies of the transaction.
            match replies.pop() {
                Some(Value::Array(inner)) if replies.is_empty() => replies = inner,
                Some(Value::Nil) => {
                    return Err(Error::unexpected("transaction aborted", self.key.clone()));
                }
                Some(Value::ServerError(e)) => return Err(self.error(e.into())),
                other => {
                    return Err(Error::unexpected(
                        format!("EXEC replied {other:?}"),
                        self.key.clone(),
                    ));
                }
            }
        }
        self.check_len(replies)
    }

    /// Check that there is one reply per command.
    pub(crate) fn check_len(&self, replies: Vec<Value>) -> Result<Vec<Value>> {
        if replies.len() != self.len {
            return Err(Error::unexpected(
                format!("{} replies for {} commands", replies.len(), self.len),
                self.key.clone(),
            ));
        }
        Ok(replies)
    }
}

impl From<Cmd> for Command<'_> {
    fn from(c: Cmd) -> Self {
        Command::Cmd(c)
    }
}

/// What a reply-parsing continuation returns.
pub type Continuation<'a, T> = Box<dyn FnOnce(Vec<Value>) -> Result<Step<'a, T>> + Send + 'a>;

/// What a continuation of several independent requests returns.
pub type ContinuationAll<'a, T> =
    Box<dyn FnOnce(Vec<Vec<Value>>) -> Result<Step<'a, T>> + Send + 'a>;

/// One step of an operation: done, or a request to send and what to do with its replies.
/// `'a` is the lifetime of memory the requests borrow (e.g. the array being written).
pub enum Step<'a, T> {
    /// The operation has its result.
    Done(T),
    /// Send this request, then feed its replies to the continuation.
    Send(Request<'a>, Continuation<'a, T>),
    /// Send these requests, which do not depend on each other's replies, then feed the
    /// replies of each to the continuation. Connections may send them all before reading
    /// any reply (pipelining across requests, so the server never waits for the client).
    SendAll(Vec<Request<'a>>, ContinuationAll<'a, T>),
}

impl<T> std::fmt::Debug for Step<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Done(_) => f.write_str("Step::Done"),
            Step::Send(r, _) => f.debug_tuple("Step::Send").field(r).finish(),
            Step::SendAll(r, _) => f.debug_tuple("Step::SendAll").field(r).finish(),
        }
    }
}

impl<'a, T: Send + 'a> Step<'a, T> {
    /// A step that sends `req` and parses the replies with `parse`.
    pub fn send(
        req: Request<'a>,
        parse: impl FnOnce(Vec<Value>) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::Send(req, Box::new(parse))
    }

    /// Continue with `f` once this step has its result.
    pub fn and_then<U: Send + 'a>(
        self,
        f: impl FnOnce(T) -> Result<Step<'a, U>> + Send + 'a,
    ) -> Result<Step<'a, U>> {
        match self {
            Step::Done(v) => f(v),
            Step::Send(req, k) => Ok(Step::Send(req, Box::new(move |r| k(r)?.and_then(f)))),
            Step::SendAll(reqs, k) => Ok(Step::SendAll(reqs, Box::new(move |r| k(r)?.and_then(f)))),
        }
    }

    /// The same step, seen as borrowing for a shorter lifetime (a `Step<'static, T>`
    /// where a `Step<'a, T>` is expected).
    pub fn narrow<'b>(self) -> Step<'b, T>
    where
        'a: 'b,
        T: 'b,
    {
        match self {
            Step::Done(v) => Step::Done(v),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.narrow()))),
            Step::SendAll(reqs, k) => Step::SendAll(
                reqs.into_iter().collect(),
                Box::new(move |r| Ok(k(r)?.narrow())),
            ),
        }
    }

    /// Map the error of any later step (the parse of any reply).
    pub fn map_err(self, f: fn(Error) -> Error) -> Step<'a, T> {
        match self {
            Step::Done(v) => Step::Done(v),
            Step::Send(req, k) => Step::Send(
                req,
                Box::new(move |r| k(r).map(|s| s.map_err(f)).map_err(f)),
            ),
            Step::SendAll(reqs, k) => Step::SendAll(
                reqs,
                Box::new(move |r| k(r).map(|s| s.map_err(f)).map_err(f)),
            ),
        }
    }

    /// Map the final result.
    pub fn map<U: Send + 'a>(self, f: impl FnOnce(T) -> U + Send + 'a) -> Step<'a, U> {
        match self {
            Step::Done(v) => Step::Done(f(v)),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.map(f)))),
            Step::SendAll(reqs, k) => Step::SendAll(reqs, Box::new(move |r| Ok(k(r)?.map(f)))),
        }
    }

    /// A step that sends `req` and maps its replies to the final result.
    pub fn then(req: Request<'a>, parse: impl FnOnce(Vec<Value>) -> Result<T> + Send + 'a) -> Self {
        Step::Send(req, Box::new(move |v| parse(v).map(Step::Done)))
    }
}

/// A synchronous connection redstash can run requests on.
pub trait SyncConnection {
    /// Send the request and return one reply per command (server errors as
    /// `Value::ServerError` elements).
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>>;

    /// Send independent requests and return the replies of each. The default sends
    /// them one round trip at a time; connections override it to pipeline them.
    fn run_requests(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Vec<Value>>> {
        reqs.iter().map(|r| self.run_request(r)).collect()
    }
}

/// Split the replies of requests sent back to back (none atomic), of `lens` commands
/// each, into one list per request.
pub(crate) fn split_replies(lens: &[usize], replies: Vec<Value>) -> Result<Vec<Vec<Value>>> {
    let total: usize = lens.iter().sum();
    if replies.len() != total {
        return Err(Error::unexpected(
            format!("{} replies for {total} commands", replies.len()),
            None,
        ));
    }
    let mut it = replies.into_iter();
    Ok(lens
        .iter()
        .map(|&n| it.by_ref().take(n).collect())
        .collect())
}

/// The number of commands of each request.
pub(crate) fn lens(reqs: &[Request<'_>]) -> Vec<usize> {
    reqs.iter().map(Request::len).collect()
}

/// Whether requests can be sent back to back as one pipeline (no transaction among them).
pub(crate) fn pipelinable(reqs: &[Request<'_>]) -> bool {
    reqs.len() > 1 && reqs.iter().all(|r| !r.atomic)
}

impl SyncConnection for crate::direct::DirectConnection {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        // The direct connection unwraps a transaction's EXEC reply itself.
        let replies = self.exec(&req.cmds, req.atomic).map_err(|e| req.error(e))?;
        req.shell().check_len(replies)
    }

    fn run_requests(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Vec<Value>>> {
        if !pipelinable(reqs) {
            return reqs.iter().map(|r| self.run_request(r)).collect();
        }
        let all: Vec<&Command<'_>> = reqs.iter().flat_map(|r| r.cmds.iter()).collect();
        let replies = self.exec(&all, false).map_err(Error::from)?;
        split_replies(&lens(reqs), replies)
    }
}

impl<C: redis::ConnectionLike> SyncConnection for C {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        let packed = req.packed();
        let (offset, count) = req.reply_window();
        let replies = self
            .req_packed_commands(&packed, offset, count)
            .map_err(|e| req.error(e))?;
        req.finish(replies)
    }

    fn run_requests(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Vec<Value>>> {
        if !pipelinable(reqs) {
            return reqs.iter().map(|r| self.run_request(r)).collect();
        }
        let mut packed = Vec::with_capacity(
            reqs.iter()
                .flat_map(|r| r.cmds.iter())
                .map(Command::size_hint)
                .sum(),
        );
        for c in reqs.iter().flat_map(|r| r.cmds.iter()) {
            c.write_packed(&mut packed);
        }
        let total = reqs.iter().map(Request::len).sum();
        let replies = self.req_packed_commands(&packed, 0, total)?;
        split_replies(&lens(reqs), replies)
    }
}

/// Drive an operation to its end on a synchronous connection.
pub fn run<T>(con: &mut (impl SyncConnection + ?Sized), mut step: Step<'_, T>) -> Result<T> {
    loop {
        match step {
            Step::Done(v) => return Ok(v),
            Step::Send(req, next) => {
                let replies = con.run_request(&req)?;
                step = next(replies)?;
            }
            Step::SendAll(reqs, next) => {
                let replies = con.run_requests(&reqs)?;
                step = next(replies)?;
            }
        }
    }
}

/// Take a reply as bytes; `Nil` is `None`; a server error becomes [`Error::Redis`].
pub(crate) fn reply_bytes(v: Value, key: &str) -> Result<Option<bytes::Bytes>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(crate::buffers::into_bytes(b))),
        Value::ServerError(e) => Err(Error::redis(e.into(), Some(key))),
        other => Err(Error::unexpected(
            format!("expected a string value, got {other:?}"),
            Some(key.to_owned()),
        )),
    }
}

/// Check a reply that must not be an error (`OK`, an integer...), returning it.
pub(crate) fn reply_ok(v: Value, key: &str) -> Result<Value> {
    match v {
        Value::ServerError(e) => Err(Error::redis(e.into(), Some(key))),
        other => Ok(other),
    }
}

/// Check that no reply is an error (the first error becomes [`Error::Redis`]).
pub(crate) fn replies_ok(replies: Vec<Value>, key: &str) -> Result<()> {
    for v in replies {
        reply_ok(v, key)?;
    }
    Ok(())
}

/// Take an integer reply.
pub(crate) fn reply_int(v: Value, key: &str) -> Result<i64> {
    match reply_ok(v, key)? {
        Value::Int(i) => Ok(i),
        other => Err(Error::unexpected(
            format!("expected an integer, got {other:?}"),
            Some(key.to_owned()),
        )),
    }
}
