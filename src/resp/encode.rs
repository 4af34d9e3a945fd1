//! RESP encoding: headers, arguments, and commands already encoded as RESP
//! ([`Packed`]), with the walk over such a buffer.

use redis::Cmd;

use crate::error::{Error, Result};

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

// Built by the feature store's bulk writes (feature `ndarray`) and the tests.
#[cfg_attr(not(any(feature = "ndarray", feature = "load")), allow(dead_code))]
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
    #[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
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

#[cfg(test)]
pub(crate) mod tests {
    use redis::Cmd;

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

    /// Three commands (SET with pieces and raw parts, GET, PING), for tests.
    pub(crate) fn packed() -> Packed {
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
}
