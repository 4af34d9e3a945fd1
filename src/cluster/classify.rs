//! Classifying a command for a Redis Cluster (sans-IO): where it goes (the slot of its
//! key, any primary, every primary, one command per slot for multi-key commands whose
//! keys span slots), and how the replies of a command sent to several nodes become one.

use std::borrow::Cow;

use redis::Cmd;

use crate::error::{Error, Result};
use crate::exec::Command;
use crate::resp::slot::key_slot;

/// How the replies of a command sent to several nodes (or slots) become one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Integers added (`DEL`, `EXISTS`, `DBSIZE`...).
    Sum,
    /// Every part must succeed; the reply of the first (`FLUSHALL`, `MSET`...).
    FirstOk,
    /// Arrays concatenated (`KEYS`).
    Concat,
    /// Array elements put back at the positions of the keys (`MGET`).
    InOrder,
}

/// Where a command goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Keyless: any primary.
    Any,
    /// The primary serving this slot.
    Slot(u16),
    /// Every primary, replies folded.
    All(Fold),
    /// A multi-key command whose keys span slots: one command per slot (the argument
    /// indices it takes, key and value for `MSET`), replies folded.
    Split(Fold, Vec<(u16, Vec<usize>)>),
    /// `SCAN` with this composite cursor.
    Scan(u64),
    /// `MULTI`: opens a transaction block.
    Multi,
    /// `EXEC` or `DISCARD`: closes it.
    Exec,
}

/// Arguments of a command, read by index.
pub(super) trait Args {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> Option<Cow<'_, [u8]>>;
}

impl Args for [&[u8]] {
    fn len(&self) -> usize {
        <[&[u8]]>::len(self)
    }

    fn at(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        self.get(i).map(|a| Cow::Borrowed(*a))
    }
}

pub(super) struct PiecesArgs<'x>(pub(super) &'x [Vec<Cow<'x, [u8]>>]);

impl Args for PiecesArgs<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn at(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        match self.0.get(i)?.as_slice() {
            [one] => Some(Cow::Borrowed(&one[..])),
            many => Some(Cow::Owned(many.concat())),
        }
    }
}

/// The arguments of a (non-packed) command as slices.
pub(super) fn cmd_args(c: &Cmd) -> Vec<&[u8]> {
    c.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b,
            _ => &b""[..],
        })
        .collect()
}

/// Upper-case `name` into `buf` (names longer than `buf` are not any we route by).
fn upper<'b>(name: &[u8], buf: &'b mut [u8; 16]) -> &'b [u8] {
    if name.len() > buf.len() {
        return b"";
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    out.make_ascii_uppercase();
    out
}

fn slot_of(args: &(impl Args + ?Sized), i: usize) -> Route {
    match args.at(i) {
        Some(k) => Route::Slot(key_slot(&k)),
        None => Route::Any,
    }
}

/// Group the keys at `first..` (every `step`-th argument) by slot.
fn keys_by_slot(args: &(impl Args + ?Sized), first: usize, step: usize, fold: Fold) -> Route {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    let mut i = first;
    while i + step <= args.len() {
        let Some(k) = args.at(i) else { break };
        let slot = key_slot(&k);
        let group = match groups.iter().rposition(|g| g.0 == slot) {
            Some(g) => g,
            None => {
                groups.push((slot, Vec::new()));
                groups.len() - 1
            }
        };
        groups[group].1.extend(i..i + step);
        i += step;
    }
    match groups.len() {
        0 => Route::Any,
        1 => Route::Slot(groups[0].0),
        _ => Route::Split(fold, groups),
    }
}

/// Classify one command.
pub(super) fn route(args: &(impl Args + ?Sized)) -> Result<Route> {
    let n = args.len();
    let Some(name) = args.at(0) else {
        return Ok(Route::Any);
    };
    let mut buf = [0u8; 16];
    let name = upper(&name, &mut buf);
    let sub = || {
        let mut b = [0u8; 16];
        args.at(1)
            .map(|s| upper(&s, &mut b).to_vec())
            .unwrap_or_default()
    };
    Ok(match name {
        b"MGET" => keys_by_slot(args, 1, 1, Fold::InOrder),
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => keys_by_slot(args, 1, 1, Fold::Sum),
        b"MSET" => keys_by_slot(args, 1, 2, Fold::FirstOk),
        b"SCAN" => {
            let cursor = args
                .at(1)
                .and_then(|c| std::str::from_utf8(&c).ok()?.parse::<u64>().ok())
                .ok_or_else(|| Error::InvalidArgument("SCAN needs a numeric cursor".into()))?;
            Route::Scan(cursor)
        }
        b"MULTI" => Route::Multi,
        b"EXEC" | b"DISCARD" => Route::Exec,
        b"DBSIZE" => Route::All(Fold::Sum),
        b"FLUSHALL" | b"FLUSHDB" => Route::All(Fold::FirstOk),
        b"KEYS" => Route::All(Fold::Concat),
        b"SCRIPT" | b"FUNCTION" | b"CONFIG" => match (name, sub().as_slice()) {
            (b"SCRIPT", b"LOAD" | b"FLUSH")
            | (b"FUNCTION", b"LOAD" | b"FLUSH" | b"DELETE" | b"RESTORE")
            | (b"CONFIG", b"SET" | b"RESETSTAT") => Route::All(Fold::FirstOk),
            _ => Route::Any,
        },
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let keys = args
                .at(2)
                .and_then(|c| std::str::from_utf8(&c).ok()?.parse::<u64>().ok());
            match keys {
                Some(k) if k > 0 => slot_of(args, 3),
                _ => Route::Any,
            }
        }
        b"MEMORY" | b"OBJECT" | b"XINFO" | b"XGROUP" if n > 2 => slot_of(args, 2),
        b"XREAD" | b"XREADGROUP" => (1..n)
            .find(|&i| {
                args.at(i)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"STREAMS"))
            })
            .map_or(Route::Any, |i| slot_of(args, i + 1)),
        b"PING" | b"ECHO" | b"INFO" | b"TIME" | b"CLIENT" | b"COMMAND" | b"CLUSTER"
        | b"LASTSAVE" | b"SAVE" | b"BGSAVE" | b"BGREWRITEAOF" | b"READONLY" | b"READWRITE"
        | b"DEBUG" | b"SLOWLOG" | b"LATENCY" | b"ACL" | b"AUTH" | b"HELLO" | b"SELECT"
        | b"WAIT" | b"WAITAOF" | b"QUIT" | b"RANDOMKEY" | b"LOLWUT" | b"MODULE" | b"PUBLISH"
        | b"UNWATCH" | b"MEMORY" | b"OBJECT" | b"XINFO" | b"XGROUP" | b"ASKING" => Route::Any,
        _ => slot_of(args, 1),
    })
}

/// Whether a command only reads: it writes nothing, so it may run on a replica (when
/// its key has a slot), needs no `WAIT`, and may be sent again after a connection
/// failure. Any command not known to be a read counts as a write.
pub(super) fn is_read_only(args: &(impl Args + ?Sized)) -> bool {
    let Some(name) = args.at(0) else {
        return true;
    };
    let mut buf = [0u8; 16];
    matches!(
        upper(&name, &mut buf),
        b"GET"
            | b"MGET"
            | b"STRLEN"
            | b"GETRANGE"
            | b"SUBSTR"
            | b"GETBIT"
            | b"BITCOUNT"
            | b"BITPOS"
            | b"EXISTS"
            | b"TYPE"
            | b"TTL"
            | b"PTTL"
            | b"EXPIRETIME"
            | b"PEXPIRETIME"
            | b"DUMP"
            | b"HGET"
            | b"HMGET"
            | b"HGETALL"
            | b"HEXISTS"
            | b"HLEN"
            | b"HKEYS"
            | b"HVALS"
            | b"HSTRLEN"
            | b"HSCAN"
            | b"LRANGE"
            | b"LLEN"
            | b"LINDEX"
            | b"LPOS"
            | b"SMEMBERS"
            | b"SISMEMBER"
            | b"SMISMEMBER"
            | b"SCARD"
            | b"SSCAN"
            | b"ZRANGE"
            | b"ZRANGEBYSCORE"
            | b"ZREVRANGE"
            | b"ZSCORE"
            | b"ZMSCORE"
            | b"ZCARD"
            | b"ZCOUNT"
            | b"ZRANK"
            | b"ZREVRANK"
            | b"ZSCAN"
            | b"XRANGE"
            | b"XREVRANGE"
            | b"XLEN"
            | b"SCAN"
            | b"KEYS"
            | b"DBSIZE"
            | b"RANDOMKEY"
            | b"EVAL_RO"
            | b"EVALSHA_RO"
            | b"FCALL_RO"
            | b"PING"
            | b"ECHO"
            | b"TIME"
            | b"INFO"
            | b"LASTSAVE"
    )
}

/// The route of a command given by its pieces or as a redis-rs command.
pub(super) fn route_command(c: &Command<'_>) -> Result<Route> {
    match c {
        Command::Cmd(c) => route(&cmd_args(c)[..]),
        Command::Pieces(p) => route(&PiecesArgs(p)),
        Command::Packed(_) => Err(Error::InvalidArgument(
            "packed commands are routed one by one".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Route {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        route(&a[..]).unwrap()
    }

    fn slot(k: &str) -> u16 {
        key_slot(k.as_bytes())
    }

    #[test]
    fn routes_commands() {
        assert_eq!(r(&["get", "foo"]), Route::Slot(12182));
        assert_eq!(r(&["PING"]), Route::Any);
        assert_eq!(r(&["info", "memory"]), Route::Any);
        assert_eq!(r(&["dbsize"]), Route::All(Fold::Sum));
        assert_eq!(r(&["script", "load", "x"]), Route::All(Fold::FirstOk));
        assert_eq!(r(&["script", "exists", "x"]), Route::Any);
        assert_eq!(r(&["MEMORY", "USAGE", "foo"]), Route::Slot(12182));
        assert_eq!(r(&["MEMORY", "STATS"]), Route::Any);
        assert_eq!(r(&["EVAL", "s", "1", "foo", "a"]), Route::Slot(12182));
        assert_eq!(r(&["EVAL", "s", "0", "a"]), Route::Any);
        assert_eq!(
            r(&["XREAD", "COUNT", "2", "STREAMS", "foo", "0"]),
            Route::Slot(12182)
        );
        assert_eq!(r(&["SCAN", "42", "MATCH", "*"]), Route::Scan(42));
        assert_eq!(r(&["mget", "{a}1", "{a}2"]), Route::Slot(slot("a")));
        assert_eq!(
            r(&["MGET", "foo", "bar", "{foo}x"]),
            Route::Split(
                Fold::InOrder,
                vec![(slot("foo"), vec![1, 3]), (slot("bar"), vec![2])]
            )
        );
        assert_eq!(
            r(&["MSET", "foo", "1", "bar", "2"]),
            Route::Split(
                Fold::FirstOk,
                vec![(slot("foo"), vec![1, 2]), (slot("bar"), vec![3, 4])]
            )
        );
        assert_eq!(r(&["multi"]), Route::Multi);
        assert_eq!(r(&["DISCARD"]), Route::Exec);
        let a: Vec<&[u8]> = vec![b"SCAN", b"x"];
        assert!(route(&a[..]).is_err());
    }

    #[test]
    fn tells_reads_from_writes() {
        let ro = |args: &[&str]| {
            let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
            is_read_only(&a[..])
        };
        for read in [
            &["get", "k"][..],
            &["MGET", "a", "b"],
            &["HGETALL", "h"],
            &["getrange", "k", "0", "9"],
            &["SCAN", "0"],
            &["PING"],
        ] {
            assert!(ro(read), "{read:?}");
        }
        for write in [
            &["SET", "k", "v"][..],
            &["HSET", "h", "f", "v"],
            &["DEL", "k"],
            &["MULTI"],
            &["EVAL", "s", "0"],
            &["SOMETHINGNEW", "k"],
            &["GETDEL", "k"],
        ] {
            assert!(!ro(write), "{write:?}");
        }
    }
}
