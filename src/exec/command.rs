//! The commands of a request: redis-rs commands, arguments made of borrowed pieces, and
//! commands already encoded as RESP ([`Packed`]).

use std::borrow::Cow;

use redis::Cmd;

use crate::error::{Error, Result};
use crate::resp::{Frame, Framer, Packed};

/// One command of a [`Request`](super::Request): a redis-rs [`Cmd`], arguments given as byte pieces
/// that may borrow the caller's memory (an array's data), so that a connection that
/// writes vectored (redstash's direct and cluster connections) sends them without a
/// copy, or many commands already encoded as RESP ([`Packed`]). Other
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

impl Frame for Command<'_> {
    fn frame<'b>(&'b self, f: &mut Framer<'_, 'b>) -> redis::RedisResult<()> {
        match self {
            Command::Cmd(c) => c.frame(f),
            Command::Pieces(args) => {
                f.command(args.len())?;
                for pieces in args {
                    f.arg_iter(pieces.iter().map(|p| &p[..]));
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
