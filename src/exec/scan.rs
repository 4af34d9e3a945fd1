//! Walking the key space with `SCAN`: page by page, or all the keys at once.

use std::collections::BTreeSet;

use super::{Replies, Request, Step};
use crate::error::{Error, Result};

/// Keys asked per `SCAN` page by default (`COUNT`).
pub const DEFAULT_SCAN_COUNT: u32 = 1000;

/// A walk of the key space with `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`
/// (never `KEYS`).
///
/// [`page`](Self::page) plans one `SCAN` call and gives the next cursor with the keys
/// of the page, for a caller that works page by page (an exporter); [`keys`](Self::keys)
/// loops until the cursor is back to 0 and returns every key found, deduplicated
/// (`SCAN` may return a key more than once while the server rehashes) and sorted,
/// optionally bounded by [`with_max_keys`](Self::with_max_keys).
///
/// Plain `SCAN` commands work on every connection: on a Redis Cluster, a
/// `cluster::ClusterConnection` (feature `cluster`) turns the cursor into a composite
/// one that walks every primary in turn, so the walk covers the whole cluster.
///
/// ```no_run
/// use redstash::exec::{Scan, run};
/// # fn main() -> redstash::Result<()> {
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// // Every hash under `batches:`.
/// let keys = run(&mut con, Scan::matching("batches:*").with_type("hash").keys())?;
/// // The same, a page at a time.
/// let scan = Scan::matching("batches:*").with_type("hash");
/// let mut cursor = 0;
/// loop {
///     let page = run(&mut con, scan.page(cursor))?;
///     println!("{} keys", page.keys.len());
///     cursor = page.cursor;
///     if cursor == 0 {
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pattern: Option<String>,
    count: u32,
    type_filter: Option<String>,
    max_keys: Option<(usize, &'static str)>,
}

/// One page of a [`Scan`]: the cursor to ask for next (0: the walk is over) and the
/// keys of the page, as the server sent them (a key may appear on two pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The cursor of the next page; 0 when the walk is complete.
    pub cursor: u64,
    /// The keys of this page.
    pub keys: Vec<Vec<u8>>,
}

impl Default for Scan {
    fn default() -> Self {
        Self::all()
    }
}

impl Scan {
    /// A walk of every key.
    pub fn all() -> Self {
        Scan {
            pattern: None,
            count: DEFAULT_SCAN_COUNT,
            type_filter: None,
            max_keys: None,
        }
    }

    /// A walk of the keys matching the glob `pattern` (`SCAN ... MATCH pattern`).
    pub fn matching(pattern: impl Into<String>) -> Self {
        Scan {
            pattern: Some(pattern.into()),
            ..Self::all()
        }
    }

    /// Keys the server looks at per page (`COUNT`, a hint; default
    /// [`DEFAULT_SCAN_COUNT`], at least 1).
    pub fn with_count(mut self, count: u32) -> Self {
        self.count = count.max(1);
        self
    }

    /// Only keys of this Redis type (`TYPE`: `string`, `hash`, `list`...).
    pub fn with_type(mut self, type_name: impl Into<String>) -> Self {
        self.type_filter = Some(type_name.into());
        self
    }

    /// [`keys`](Self::keys) fails once it has found more than `max` distinct keys
    /// (memory stays bounded by `max` keys and one page), with an
    /// [`Error::InvalidValue`] ([`ValueProblem::Corrupt`](crate::ValueProblem::Corrupt))
    /// whose format is `what` (what the keys were to be, e.g. `"table batch keys"`).
    pub fn with_max_keys(mut self, max: usize, what: &'static str) -> Self {
        self.max_keys = Some((max, what));
        self
    }

    /// The `MATCH` pattern, if one.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_deref()
    }

    /// The `SCAN` command of the page at `cursor`.
    fn command(&self, cursor: u64) -> redis::Cmd {
        let mut c = redis::cmd("SCAN");
        c.arg(cursor);
        if let Some(p) = &self.pattern {
            c.arg("MATCH").arg(p);
        }
        c.arg("COUNT").arg(self.count);
        if let Some(t) = &self.type_filter {
            c.arg("TYPE").arg(t);
        }
        c
    }

    /// The plan of one `SCAN` call: the page at `cursor` (0 for the first).
    pub fn page(&self, cursor: u64) -> Step<'static, ScanPage> {
        // The same cursor gives the same page (or a superset): safe to send again.
        let req = Request::single(self.command(cursor), self.pattern.as_deref()).idempotent();
        Step::then(req, |mut r| {
            let page = parse_page(&mut r)?;
            r.finish()?;
            Ok(page)
        })
    }

    /// The plan of the whole walk: every key found, once each, sorted. Keys that are
    /// not UTF-8 are left out (redstash's keys always are).
    pub fn keys(self) -> Step<'static, Vec<String>> {
        self.walk(0, BTreeSet::new())
            .map(|found| found.into_iter().collect())
    }

    fn walk(self, cursor: u64, mut found: BTreeSet<String>) -> Step<'static, BTreeSet<String>> {
        self.page(cursor).and_then(move |page| {
            for k in page.keys {
                if let Ok(s) = String::from_utf8(k) {
                    found.insert(s);
                }
            }
            if let Some((max, what)) = self.max_keys
                && found.len() > max
            {
                return Err(Error::corrupt(
                    what,
                    format!(
                        "SCAN MATCH {:?} found more than {max} keys",
                        self.pattern.as_deref().unwrap_or("*")
                    ),
                ));
            }
            Ok(match page.cursor {
                0 => Step::Done(found),
                next => self.walk(next, found),
            })
        })
    }
}

/// A `SCAN` reply: `[cursor, [key...]]`, the cursor as a decimal string (or an
/// integer).
fn parse_page(r: &mut Replies) -> Result<ScanPage> {
    let mut reply = r.next_array_of(2)?.into_iter();
    let cursor = match reply.next() {
        Some(redis::Value::BulkString(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok()),
        Some(redis::Value::Int(i)) => u64::try_from(i).ok(),
        _ => None,
    };
    let Some(cursor) = cursor else {
        return Err(r.unexpected("SCAN replied no numeric cursor"));
    };
    let keys = match reply.next() {
        Some(redis::Value::Array(keys)) => keys,
        _ => return Err(r.unexpected("SCAN replied no array of keys")),
    };
    let keys = keys
        .into_iter()
        .map(|k| match k {
            redis::Value::BulkString(b) => Ok(b),
            redis::Value::SimpleString(s) => Ok(s.into_bytes()),
            other => Err(r.unexpected(format_args!(
                "SCAN replied a key that is {}",
                super::describe(&other)
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ScanPage { cursor, keys })
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    #[test]
    fn scan_commands() {
        let packed = |s: &Scan, cursor| s.command(cursor).get_packed_command();
        let want = redis::cmd("SCAN")
            .arg(7)
            .arg("MATCH")
            .arg("a:*")
            .arg("COUNT")
            .arg(10)
            .arg("TYPE")
            .arg("hash")
            .get_packed_command();
        let s = Scan::matching("a:*").with_count(10).with_type("hash");
        assert_eq!(packed(&s, 7), want);
        let want = redis::cmd("SCAN")
            .arg(0)
            .arg("COUNT")
            .arg(DEFAULT_SCAN_COUNT)
            .get_packed_command();
        assert_eq!(packed(&Scan::all(), 0), want);
        assert_eq!(Scan::all().with_count(0).count, 1);
    }

    fn reply(v: Value) -> Result<ScanPage> {
        let mut r = Replies::new(vec![v], Some("a:*".into()));
        parse_page(&mut r)
    }

    #[test]
    fn scan_replies() {
        let page = reply(Value::Array(vec![
            Value::BulkString(b"42".to_vec()),
            Value::Array(vec![Value::BulkString(b"k".to_vec())]),
        ]))
        .unwrap();
        assert_eq!((page.cursor, page.keys), (42, vec![b"k".to_vec()]));
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::BulkString(b"x".to_vec()), Value::Array(vec![])]),
            Value::Array(vec![Value::Int(-1), Value::Array(vec![])]),
            Value::Array(vec![Value::Int(0), Value::Nil]),
            Value::Array(vec![Value::Int(0), Value::Array(vec![Value::Int(1)])]),
        ] {
            assert!(
                matches!(reply(bad.clone()), Err(Error::UnexpectedReply { .. })),
                "{bad:?}"
            );
        }
    }
}
