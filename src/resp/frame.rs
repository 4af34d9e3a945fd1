//! Framing a batch of commands for one (vectored) write: small pieces are copied into
//! one reused scratch buffer, large arguments are referenced in place.

use std::io::IoSlice;

use redis::{Arg, Cmd, ErrorKind, RedisError, RedisResult};

use super::push_header;

/// Arguments at least this large are written straight from the command's
/// memory with vectored writes instead of being copied into the scratch buffer.
pub(crate) const LARGE_ARG: usize = 16 * 1024;

/// Reusable request framer.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    /// Framing plus all small arguments, in wire order (interleaved with the
    /// large arguments listed in the [`Encoded`] marks).
    scratch: Vec<u8>,
}

/// A framed batch: the scratch buffer plus the large arguments to splice in.
pub(crate) struct Encoded<'a> {
    scratch: &'a [u8],
    /// `(offset in scratch, large argument)`: the argument goes on the wire
    /// right after `scratch[..offset]`'s end. Offsets are non-decreasing.
    marks: Vec<(usize, &'a [u8])>,
}

impl Encoded<'_> {
    /// True when everything is in the contiguous scratch buffer.
    pub(crate) fn is_contiguous(&self) -> bool {
        self.marks.is_empty()
    }

    /// The contiguous scratch bytes (the whole request if [`is_contiguous`]).
    ///
    /// [`is_contiguous`]: Encoded::is_contiguous
    pub(crate) fn scratch(&self) -> &[u8] {
        self.scratch
    }

    /// The request as a list of slices for vectored writes.
    pub(crate) fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.marks.len() * 2 + 1);
        let mut prev = 0;
        for &(off, arg) in &self.marks {
            if off > prev {
                out.push(IoSlice::new(&self.scratch[prev..off]));
            }
            out.push(IoSlice::new(arg));
            prev = off;
        }
        if self.scratch.len() > prev {
            out.push(IoSlice::new(&self.scratch[prev..]));
        }
        out
    }

    /// Total number of bytes to send.
    pub(crate) fn total_len(&self) -> usize {
        self.scratch.len() + self.marks.iter().map(|m| m.1.len()).sum::<usize>()
    }
}

fn push_small_cmd(buf: &mut Vec<u8>, args: &[&[u8]]) {
    push_header(buf, b'*', args.len());
    for a in args {
        push_header(buf, b'$', a.len());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Writes the RESP framing of one command into the encoder's scratch buffer,
/// referencing large argument pieces in place.
pub struct Framer<'s, 'a> {
    scratch: &'s mut Vec<u8>,
    marks: &'s mut Vec<(usize, &'a [u8])>,
}

impl<'a> Framer<'_, 'a> {
    /// Start a command of `nargs` arguments.
    pub fn command(&mut self, nargs: usize) -> RedisResult<()> {
        if nargs == 0 {
            return Err(RedisError::from((
                ErrorKind::Client,
                "empty command on the direct path",
            )));
        }
        push_header(self.scratch, b'*', nargs);
        Ok(())
    }

    /// One argument made of `pieces` (concatenated on the wire).
    pub fn arg(&mut self, pieces: &[&'a [u8]]) {
        self.arg_iter(pieces.iter().copied());
    }

    /// One argument made of `pieces` (concatenated on the wire), walked twice (their
    /// length, then their bytes): no list of them is built.
    pub(crate) fn arg_iter(&mut self, pieces: impl Iterator<Item = &'a [u8]> + Clone) {
        push_header(self.scratch, b'$', pieces.clone().map(<[u8]>::len).sum());
        for p in pieces {
            if p.len() >= LARGE_ARG {
                self.marks.push((self.scratch.len(), p));
            } else {
                self.scratch.extend_from_slice(p);
            }
        }
        self.scratch.extend_from_slice(b"\r\n");
    }

    /// Commands already encoded as RESP, written as they are (large ones straight
    /// from their memory).
    pub fn raw(&mut self, resp: &'a [u8]) {
        if resp.len() >= LARGE_ARG {
            self.marks.push((self.scratch.len(), resp));
        } else {
            self.scratch.extend_from_slice(resp);
        }
    }
}

/// A command the direct connections can send: a redis-rs [`Cmd`], or redstash's
/// `exec::Command` (whose arguments may borrow the caller's memory).
pub trait Frame {
    /// Write this command's framing.
    fn frame<'a>(&'a self, f: &mut Framer<'_, 'a>) -> RedisResult<()>;

    /// Number of replies it gets: 1, or the number of commands written by
    /// [`Framer::raw`].
    fn replies(&self) -> usize {
        1
    }
}

impl<T: Frame + ?Sized> Frame for &T {
    fn frame<'a>(&'a self, f: &mut Framer<'_, 'a>) -> RedisResult<()> {
        (**self).frame(f)
    }

    fn replies(&self) -> usize {
        (**self).replies()
    }
}

impl Frame for Cmd {
    fn frame<'a>(&'a self, f: &mut Framer<'_, 'a>) -> RedisResult<()> {
        let args = self.args_iter();
        f.command(args.len())?;
        for arg in args {
            match arg {
                Arg::Simple(b) => f.arg_iter(std::iter::once(b)),
                _ => {
                    return Err(RedisError::from((
                        ErrorKind::Client,
                        "cursor arguments are not supported on the direct path",
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Encoder {
    /// Frames `cmds` (wrapped in `MULTI`/`EXEC` if `atomic`). Fails without
    /// side effects on the connection if a command holds a cursor argument or
    /// no arguments at all.
    pub(crate) fn encode<'a, F: Frame>(
        &'a mut self,
        cmds: &'a [F],
        atomic: bool,
    ) -> RedisResult<Encoded<'a>> {
        self.scratch.clear();
        let mut marks = Vec::new();
        if atomic {
            push_small_cmd(&mut self.scratch, &[b"MULTI"]);
        }
        {
            let mut framer = Framer {
                scratch: &mut self.scratch,
                marks: &mut marks,
            };
            for cmd in cmds {
                cmd.frame(&mut framer)?;
            }
        }
        if atomic {
            push_small_cmd(&mut self.scratch, &[b"EXEC"]);
        }
        Ok(Encoded {
            scratch: &self.scratch,
            marks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_frames_and_splices() {
        let big = vec![b'z'; LARGE_ARG + 5];
        let mut c1 = redis::cmd("SET");
        c1.arg("k").arg(&big[..]);
        let mut c2 = redis::cmd("GET");
        c2.arg("k");
        let cmds = [c1, c2];
        let mut enc = Encoder::default();
        let e = enc.encode(&cmds, true).unwrap();
        assert!(!e.is_contiguous());
        let mut wire = Vec::new();
        for s in e.io_slices() {
            wire.extend_from_slice(&s);
        }
        assert_eq!(wire.len(), e.total_len());
        let mut expected = Vec::new();
        expected.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        expected.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", big.len()).as_bytes(),
        );
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n");
        assert_eq!(wire, expected);
        // Same bytes as redis-rs's own packing.
        let mut rr = Vec::new();
        rr.extend_from_slice(&redis::cmd("MULTI").get_packed_command());
        for c in &cmds {
            rr.extend_from_slice(&c.get_packed_command());
        }
        rr.extend_from_slice(&redis::cmd("EXEC").get_packed_command());
        assert_eq!(wire, rr);

        let mut cur = redis::cmd("SCAN");
        cur.cursor_arg(0);
        assert!(enc.encode(std::slice::from_ref(&cur), false).is_err());
    }
}
