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
mod delivery;
#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncConnection, run_async};
pub use delivery::{Delivered, Delivery, Interrupted};
pub(crate) use delivery::{Pipelined, Sequential};

/// One command of a [`Request`]: a redis-rs [`Cmd`], arguments given as byte pieces
/// that may borrow the caller's memory (an array's data), so that a connection that
/// writes vectored ([`DirectConnection`](crate::direct::DirectConnection)) sends them
/// without a copy, or many commands already encoded as RESP ([`Packed`]). Other
/// connections pack them like any command.
#[derive(Debug, Clone)]
pub enum Command<'a> {
    /// A redis-rs command.
    Cmd(Cmd),
    /// Arguments, each the concatenation of its pieces.
    Pieces(Vec<Vec<Cow<'a, [u8]>>>),
    /// Commands already encoded as RESP, back to back (one reply each).
    Packed(Packed),
}

/// Commands already encoded as RESP, back to back, in one buffer: how a plan sends
/// many small commands (e.g. one `SET` per entity of a bulk write) without building a
/// [`Cmd`] and its allocations per command. Connections write the bytes as they are;
/// redis-rs's async connections, which only take [`Cmd`]s, get them split back into
/// commands ([`to_cmds`](Self::to_cmds)).
///
/// Built inside redstash (so that the count always matches the bytes); read with
/// [`as_bytes`](Self::as_bytes) and [`count`](Self::count).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Packed {
    resp: Vec<u8>,
    count: usize,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("commands", &self.count)
            .field("bytes", &self.resp.len())
            .finish()
    }
}

/// Append `prefix`, the decimal digits of `n` and CRLF (a RESP header) to `buf`.
pub(crate) fn push_header(buf: &mut Vec<u8>, prefix: u8, n: usize) {
    let mut tmp = [0u8; 24];
    let mut i = tmp.len() - 2;
    tmp[i] = b'\r';
    tmp[i + 1] = b'\n';
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i -= 1;
    tmp[i] = prefix;
    buf.extend_from_slice(&tmp[i..]);
}

impl Drop for Packed {
    fn drop(&mut self) {
        crate::buffers::give(std::mem::take(&mut self.resp));
    }
}

impl Packed {
    /// An empty buffer with room for `bytes` bytes of commands (a pooled buffer when
    /// large, see [`buffers`](crate::buffers): the chunks of a bulk write reuse warm
    /// memory instead of faulting in new pages each time).
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Packed {
            resp: crate::buffers::take(bytes),
            count: 0,
        }
    }

    /// Start a command of `nargs` arguments; exactly `nargs` calls of
    /// [`arg`](Self::arg) or [`arg_pieces`](Self::arg_pieces) must follow.
    pub(crate) fn command(&mut self, nargs: usize) {
        push_header(&mut self.resp, b'*', nargs);
        self.count += 1;
    }

    /// One argument.
    pub(crate) fn arg(&mut self, arg: &[u8]) {
        push_header(&mut self.resp, b'$', arg.len());
        self.resp.extend_from_slice(arg);
        self.resp.extend_from_slice(b"\r\n");
    }

    /// One argument, the concatenation of `pieces`.
    pub(crate) fn arg_pieces(&mut self, pieces: &[&[u8]]) {
        push_header(&mut self.resp, b'$', pieces.iter().map(|p| p.len()).sum());
        for p in pieces {
            self.resp.extend_from_slice(p);
        }
        self.resp.extend_from_slice(b"\r\n");
    }

    /// Append bytes already encoded as RESP that hold exactly `commands` commands
    /// (e.g. the constant head of a command, then `commands` is 1 for the first part and
    /// 0 for the following parts).
    pub(crate) fn raw(&mut self, resp: &[u8], commands: usize) {
        self.resp.extend_from_slice(resp);
        self.count += commands;
    }

    /// Number of commands.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The commands as RESP.
    pub fn as_bytes(&self) -> &[u8] {
        &self.resp
    }

    /// The commands as redis-rs commands (copies their arguments).
    pub fn to_cmds(&self) -> Result<Vec<Cmd>> {
        let mut out = Vec::with_capacity(self.count);
        walk_packed(&self.resp, |_, args| {
            let mut c = Cmd::with_capacity(args.len(), args.iter().map(|a| a.len()).sum());
            for a in args {
                c.arg(*a);
            }
            out.push(c);
            Ok(())
        })?;
        if out.len() != self.count {
            return Err(Error::unexpected("malformed packed commands", None));
        }
        Ok(out)
    }
}

/// Walk the commands of a RESP buffer (commands back to back, as in [`Packed`]):
/// `f(byte range of the command, its arguments)` for each, in order. Returns the
/// number of commands.
pub(crate) fn walk_packed<'p>(
    resp: &'p [u8],
    mut f: impl FnMut(std::ops::Range<usize>, &[&'p [u8]]) -> Result<()>,
) -> Result<usize> {
    fn header(buf: &[u8], prefix: u8) -> Option<(usize, &[u8])> {
        let rest = buf.strip_prefix(&[prefix])?;
        let end = rest.iter().position(|&b| b == b'\r')?;
        let digits = &rest[..end];
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        let mut n: usize = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
        }
        Some((n, rest[end..].strip_prefix(b"\r\n")?))
    }
    let bad = || Error::unexpected("malformed packed commands", None);
    let mut rest = resp;
    let mut args: Vec<&'p [u8]> = Vec::new();
    let mut count = 0;
    while !rest.is_empty() {
        let start = resp.len() - rest.len();
        let (n, r) = header(rest, b'*').ok_or_else(bad)?;
        rest = r;
        args.clear();
        for _ in 0..n {
            let (len, r) = header(rest, b'$').ok_or_else(bad)?;
            let (arg, r) = r.split_at_checked(len).ok_or_else(bad)?;
            rest = r.strip_prefix(b"\r\n").ok_or_else(bad)?;
            args.push(arg);
        }
        f(start..resp.len() - rest.len(), &args)?;
        count += 1;
    }
    Ok(count)
}

impl Command<'_> {
    /// Number of replies the command gets (the number of commands of a [`Packed`]).
    pub fn replies(&self) -> usize {
        match self {
            Command::Packed(p) => p.count(),
            _ => 1,
        }
    }

    /// Number of arguments (0 for [`Packed`] commands).
    pub fn arg_count(&self) -> usize {
        match self {
            Command::Cmd(c) => c.args_iter().len(),
            Command::Pieces(a) => a.len(),
            Command::Packed(_) => 0,
        }
    }

    /// The bytes of argument `i` (copied only when it is made of several pieces;
    /// `None` for [`Packed`] commands).
    pub fn arg(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        match self {
            Command::Packed(_) => None,
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

    /// Length of argument `i` (0 for [`Packed`] commands).
    pub fn arg_len(&self, i: usize) -> usize {
        match self {
            Command::Packed(_) => 0,
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
            Command::Packed(p) => return p.as_bytes().len(),
        };
        args + 16
    }

    /// Append this command as RESP to `buf`.
    pub fn write_resp(&self, buf: &mut Vec<u8>) {
        match self {
            Command::Cmd(c) => c.write_packed_command(buf),
            Command::Packed(p) => buf.extend_from_slice(p.as_bytes()),
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

    /// Add this command (or these [`Packed`] commands) to a redis-rs pipeline (copies
    /// borrowed pieces).
    pub fn add_to(self, pipeline: &mut redis::Pipeline) -> Result<()> {
        match self {
            Command::Packed(p) => {
                for c in p.to_cmds()? {
                    pipeline.add_command(c);
                }
            }
            other => {
                pipeline.add_command(other.into_cmd()?);
            }
        }
        Ok(())
    }

    /// As one redis-rs command (copies borrowed pieces); [`Packed`] commands only when
    /// they hold exactly one command.
    pub fn into_cmd(self) -> Result<Cmd> {
        Ok(match self {
            Command::Packed(p) => {
                let mut cmds = p.to_cmds()?;
                match (cmds.pop(), cmds.is_empty()) {
                    (Some(c), true) => c,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "{} packed commands are not one command",
                            p.count()
                        )));
                    }
                }
            }
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
        })
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
            Command::Packed(p) => {
                f.raw(p.as_bytes());
                Ok(())
            }
        }
    }

    fn replies(&self) -> usize {
        Command::replies(self)
    }
}

/// A batch of commands sent in one round trip, optionally as a MULTI/EXEC transaction.
/// Its lifetime is that of the memory its commands borrow (`'static` when none).
#[derive(Clone)]
pub struct Request<'a> {
    cmds: Vec<Command<'a>>,
    /// Replies to the commands (a [`Packed`] command counts each command it holds).
    replies: usize,
    atomic: bool,
    key: Option<String>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("commands", &self.replies)
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
            replies: 0,
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
        let cmd = cmd.into();
        self.replies += cmd.replies();
        self.cmds.push(cmd);
    }

    /// Number of commands (and so of replies): a [`Packed`] command counts each
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
    /// [`Packed`] commands copied).
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

    /// All commands as RESP: borrowed when the request is one [`Packed`] command,
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

    /// Check the replies of a request: unwrap a transaction's EXEC reply and check the
    /// count. Per-command server errors stay `Value::ServerError` for the parse step.
    pub(crate) fn finish(&self, replies: Vec<Value>) -> Result<Vec<Value>> {
        self.shell().finish(replies)
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

    /// Check the raw replies of a request read by a direct connection (a
    /// transaction's `MULTI`, `QUEUED`s and `EXEC` included).
    pub(crate) fn finish_raw(&self, raw: Vec<Value>) -> Result<Vec<Value>> {
        if self.len == 0 {
            // Nothing was sent (not even an empty transaction).
            return self.check_len(raw);
        }
        let replies =
            crate::direct::resp::finish_replies(raw, self.atomic).map_err(|e| self.error(e))?;
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

impl From<Packed> for Command<'_> {
    fn from(p: Packed) -> Self {
        Command::Packed(p)
    }
}

/// Independent requests of a [`Step::SendAll`], built one at a time as a connection
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

/// What a reply-parsing continuation returns.
pub type Continuation<'a, T> = Box<dyn FnOnce(Vec<Value>) -> Result<Step<'a, T>> + Send + 'a>;

/// What a continuation of several independent requests returns.
pub type ContinuationAll<'a, T> = Box<dyn FnOnce(Delivered) -> Result<Step<'a, T>> + Send + 'a>;

/// One step of an operation: done, or a request to send and what to do with its replies.
/// `'a` is the lifetime of memory the requests borrow (e.g. the array being written).
pub enum Step<'a, T> {
    /// The operation has its result.
    Done(T),
    /// Send this request, then feed its replies to the continuation.
    Send(Request<'a>, Continuation<'a, T>),
    /// Send these requests, which do not depend on each other's replies, then feed the
    /// replies of each to the continuation. Connections may send them all before reading
    /// any reply (pipelining across requests, so the server never waits for the client),
    /// each as soon as it is built. When a request is refused as a whole or the
    /// connection fails part-way, the continuation gets an [`Interrupted`] that says
    /// what became of each request (answered, in flight, never sent), so that a bulk
    /// write can report exactly what was stored.
    SendAll(Requests<'a>, ContinuationAll<'a, T>),
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

    /// A step that sends `req` alone and gives `parse` what became of it ([`Delivered`]):
    /// its replies, or, when the connection failed or the request was refused as a whole,
    /// whether it was in flight or not sent. For writes that account for every item.
    pub fn send_tracked(
        req: Request<'a>,
        parse: impl FnOnce(Delivered) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::SendAll(Requests::from(vec![req]), Box::new(parse))
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
                // Not an identity: each request is coerced to the shorter lifetime (the
                // iterator's item type itself cannot be).
                #[allow(clippy::map_identity)]
                Requests::new(reqs.map(|r| -> Request<'b> { r })),
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

    /// Send independent requests and return the replies of each, or what became of
    /// each when they did not all complete ([`Interrupted`]). The default sends them
    /// one round trip at a time, building each request just before sending it, and
    /// stops at a connection failure; connections override it to pipeline them.
    fn run_requests(&mut self, mut reqs: Requests<'_>) -> Delivered {
        let mut out = Sequential::with_capacity(reqs.len());
        while let Some(r) = reqs.next() {
            let outcome = self.run_request(&r);
            out.push(outcome, r.len(), reqs.len())?;
        }
        out.finish()
    }
}

impl SyncConnection for crate::direct::DirectConnection {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        // The direct connection unwraps a transaction's EXEC reply itself.
        let replies = self.exec(&req.cmds, req.atomic).map_err(|e| req.error(e))?;
        req.shell().check_len(replies)
    }

    /// Writes each request as soon as it is built (building the next one overlaps with
    /// the server's work on those already written) and reads the replies in order, the
    /// oldest ones while newer ones are written once a window of requests is in flight.
    /// After a failed write, the replies of the requests written before it are still
    /// read (each is an acknowledgement).
    fn run_requests(&mut self, mut reqs: Requests<'_>) -> Delivered {
        if let Err(e) = self.begin() {
            return Err(Interrupted::none_sent(reqs.len(), e.into()));
        }
        let mut p = Pipelined::with_capacity(reqs.len());
        'send: while let Some(r) = reqs.next() {
            let before = self.bytes_sent();
            match self.send(&r.cmds, r.atomic) {
                Ok(raw) => p.sent(r.shell(), raw, self.bytes_sent() - before),
                Err(e) => {
                    if self.write_started() {
                        p.cut = Some((r.len(), r.error(e)));
                    } else {
                        // Refused before any byte was written (e.g. an argument that
                        // cannot be encoded): not sent, nor is anything after it.
                        p.not_sent = 1;
                        p.stopped = Some(r.error(e));
                    }
                    p.not_sent += reqs.len();
                    break;
                }
            }
            while p.over_window() {
                if !self.read_oldest(&mut p) {
                    p.not_sent += reqs.len();
                    break 'send;
                }
            }
        }
        while self.read_oldest(&mut p) {}
        p.finish()
    }
}

impl crate::direct::DirectConnection {
    /// Read the replies of the oldest request of `p` not read yet; whether reading may
    /// go on (there was one, and no read failed).
    fn read_oldest(&mut self, p: &mut Pipelined) -> bool {
        let Some(n) = p.next_unread() else {
            return false;
        };
        let mut raw = Vec::with_capacity(n);
        let result = self.recv_into(n, &mut raw);
        p.read(raw, result)
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
                let replies = con.run_requests(reqs);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds() -> Vec<Cmd> {
        let mut set = redis::cmd("SET");
        set.arg("k:1")
            .arg(&[0u8, 13, 10, 255][..])
            .arg("PX")
            .arg(60_000);
        let mut get = redis::cmd("GET");
        get.arg("");
        vec![set, get, redis::cmd("PING")]
    }

    fn packed() -> Packed {
        let mut p = Packed::with_capacity(16);
        p.command(5);
        p.arg(b"SET");
        p.arg_pieces(&[b"k:", b"1"]);
        p.arg(&[0u8, 13, 10, 255]);
        p.raw(b"$2\r\nPX\r\n", 0);
        p.arg(b"60000");
        p.raw(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", 1);
        p.command(1);
        p.arg(b"PING");
        p
    }

    #[test]
    fn packed_commands_are_redis_rs_packing() {
        let p = packed();
        let want: Vec<u8> = cmds().iter().flat_map(|c| c.get_packed_command()).collect();
        assert_eq!(p.as_bytes(), &want[..]);
        assert_eq!(p.count(), 3);
        let back: Vec<Vec<u8>> = p
            .to_cmds()
            .unwrap()
            .iter()
            .map(|c| c.get_packed_command())
            .collect();
        let want: Vec<Vec<u8>> = cmds().iter().map(|c| c.get_packed_command()).collect();
        assert_eq!(back, want);
        let mut buf = Vec::new();
        push_header(&mut buf, b'$', 0);
        push_header(&mut buf, b'*', 1234567890);
        assert_eq!(buf, b"$0\r\n*1234567890\r\n");
    }

    #[test]
    fn packed_commands_in_requests() {
        let mut req = Request::new(Some("k"));
        req.push(redis::cmd("MULTI"));
        req.push(packed());
        assert_eq!(req.len(), 4);
        assert_eq!(req.commands().len(), 2);
        assert!(matches!(req.packed(), Cow::Owned(_)));
        let p = req.clone().into_pipeline().unwrap();
        assert_eq!(p.len(), 4);
        let single = Request::single(packed(), None);
        assert_eq!(single.reply_window(), (0, 3));
        // One packed command is sent as it is.
        assert!(matches!(single.packed(), Cow::Borrowed(b) if b == packed().as_bytes()));
        assert_eq!(single.clone().atomic().reply_window(), (4, 1));
        // Several packed commands are not one command.
        assert!(Command::Packed(packed()).into_cmd().is_err());
        let mut one = Packed::with_capacity(0);
        one.command(1);
        one.arg(b"PING");
        let c = Command::from(one).into_cmd().unwrap();
        assert_eq!(
            c.get_packed_command(),
            redis::cmd("PING").get_packed_command()
        );
    }

    #[test]
    fn malformed_packed_commands_are_errors() {
        for (bytes, count) in [
            (&b"*1\r\n$4\r\nPIN"[..], 1),
            (b"*1\r\n$x\r\nPING\r\n", 1),
            (b"*1\r\n$4\r\nPINGxx", 1),
            (b"+OK\r\n", 1),
            (b"*1\r\n$4\r\nPING\r\n", 2),
        ] {
            let p = Packed {
                resp: bytes.to_vec(),
                count,
            };
            assert!(p.to_cmds().is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn requests_are_built_lazily() {
        let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&built);
        let mut reqs = Requests::new((0..3).map(move |i| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Request::single(redis::cmd("PING"), Some(&i.to_string()))
        }));
        assert_eq!(reqs.len(), 3);
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(
            reqs.next().and_then(|r| r.key().map(str::to_owned)),
            Some("0".into())
        );
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(reqs.len(), 2);
        let step: Step<'static, usize> = Step::SendAll(
            reqs,
            Box::new(|r| Ok(Step::Done(r.map_err(Interrupted::into_error)?.len()))),
        );
        let step = step.map(|n| n + 1).narrow();
        let Step::SendAll(reqs, k) = step else {
            panic!("not a SendAll")
        };
        let replies: Vec<Vec<Value>> = reqs.map(|r| vec![Value::Okay; r.len()]).collect();
        assert!(matches!(k(Ok(replies)).unwrap(), Step::Done(3)));
    }
}
