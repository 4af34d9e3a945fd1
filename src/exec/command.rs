//! The commands of a request: redis-rs commands, arguments made of borrowed pieces, and
//! commands already encoded as RESP ([`Packed`]).

use std::borrow::Cow;

use redis::Cmd;

use crate::error::{Error, Result};

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
    pub(crate) resp: Vec<u8>,
    pub(crate) count: usize,
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
    pub(crate) fn size_hint(&self) -> usize {
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
