//! Reading the keys of a SCAN page (sans-IO plans): `TYPE` and `PTTL` of every key in one
//! pipelined request, then its value in pages (`HSCAN`, `SSCAN`, `ZSCAN`, `LRANGE`
//! ranges, `XRANGE` with `COUNT`), all the page's keys in one request per round, so a big
//! value never comes in one reply. A key gone since the `SCAN` is counted `vanished`, one
//! whose type changed `changed`; neither is an error.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Value;

use super::value::{KeyRecord, RedisValue, StreamEntry};
use crate::error::{Error, RedisErrorKind, Result};
use crate::exec::{Replies, Request, Step};

/// Elements asked per page of a collection by default (`COUNT`, `LRANGE` span).
pub const DEFAULT_PAGE_ELEMENTS: usize = 1_000;

/// The largest value read by default (a bigger one is rejected, counted, not read on).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 64 << 20;

/// How values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Elements per page of a hash, set, sorted set, list or stream.
    pub page_elements: usize,
    /// A value bigger than this (bytes of its elements) is rejected.
    pub max_value_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            page_elements: DEFAULT_PAGE_ELEMENTS,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// What reading a page of keys gave.
#[derive(Debug, Default)]
pub struct PageRead {
    /// The keys read, with their values.
    pub records: Vec<KeyRecord>,
    /// Keys gone between the `SCAN` and their read.
    pub vanished: u64,
    /// Keys whose type changed between the `SCAN` and their read.
    pub changed: u64,
    /// Keys not exported: the key, its type, why (too large, an unknown type).
    pub rejected: Vec<(Vec<u8>, String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Hash,
    List,
    Set,
    ZSet,
    Stream,
}

/// A key being read.
struct Pending {
    key: Vec<u8>,
    kind: Kind,
    expire_at_ms: Option<u64>,
    value: RedisValue,
    /// The next `*SCAN` cursor, `LRANGE` start, or stream ID (exclusive) to read from.
    cursor: u64,
    after: Option<String>,
    pages: u32,
    bytes: u64,
    seen: HashSet<Vec<u8>>,
    done: bool,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Read,
    Vanished,
    Changed,
    TooLarge,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The plan that reads `keys` (a page of a `SCAN`).
pub fn read_keys(keys: Vec<Vec<u8>>, options: ReadOptions) -> Step<'static, PageRead> {
    if keys.is_empty() {
        return Step::Done(PageRead::default());
    }
    let mut req = Request::new(None).idempotent();
    for k in &keys {
        req.push(redis::cmd("TYPE").arg(k.as_slice()).clone());
        req.push(redis::cmd("PTTL").arg(k.as_slice()).clone());
    }
    Step::send(req, move |mut r| {
        let now = now_ms();
        let mut out = PageRead::default();
        let mut pending = Vec::with_capacity(keys.len());
        for key in keys {
            let ty = status_text(r.next_value()?);
            let pttl = r.next_int()?;
            let kind = match ty.as_str() {
                "none" => {
                    out.vanished += 1;
                    continue;
                }
                "string" => Kind::String,
                "hash" => Kind::Hash,
                "list" => Kind::List,
                "set" => Kind::Set,
                "zset" => Kind::ZSet,
                "stream" => Kind::Stream,
                other => {
                    out.rejected.push((
                        key,
                        other.to_owned(),
                        format!("type {other} is not exported"),
                    ));
                    continue;
                }
            };
            if pttl == -2 {
                out.vanished += 1;
                continue;
            }
            let expire_at_ms = (pttl >= 0).then(|| now.saturating_add(pttl as u64));
            let value = empty(kind);
            pending.push(Pending {
                key,
                kind,
                expire_at_ms,
                value,
                cursor: 0,
                after: None,
                pages: 0,
                bytes: 0,
                seen: HashSet::new(),
                done: false,
                outcome: Outcome::Read,
            });
        }
        r.finish()?;
        Ok(round(pending, out, options))
    })
}

fn status_text(v: Value) -> String {
    match v {
        Value::SimpleString(s) => s,
        Value::Okay => "ok".into(),
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    }
}

/// One round: the next page of every key not done yet.
fn round(
    mut pending: Vec<Pending>,
    mut out: PageRead,
    options: ReadOptions,
) -> Step<'static, PageRead> {
    let mut req = Request::new(None).idempotent();
    let mut asked = Vec::new();
    let page = options.page_elements.max(1);
    for (i, p) in pending.iter().enumerate() {
        if p.done {
            continue;
        }
        let k = p.key.as_slice();
        let cmd = match p.kind {
            Kind::String => redis::cmd("GET").arg(k).clone(),
            Kind::Hash => redis::cmd("HSCAN")
                .arg(k)
                .arg(p.cursor)
                .arg("COUNT")
                .arg(page)
                .clone(),
            Kind::Set => redis::cmd("SSCAN")
                .arg(k)
                .arg(p.cursor)
                .arg("COUNT")
                .arg(page)
                .clone(),
            Kind::ZSet => redis::cmd("ZSCAN")
                .arg(k)
                .arg(p.cursor)
                .arg("COUNT")
                .arg(page)
                .clone(),
            Kind::List => redis::cmd("LRANGE")
                .arg(k)
                .arg(p.cursor)
                .arg(p.cursor + page as u64 - 1)
                .clone(),
            Kind::Stream => {
                let from = match &p.after {
                    Some(id) => format!("({id}"),
                    None => "-".to_owned(),
                };
                redis::cmd("XRANGE")
                    .arg(k)
                    .arg(from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(page)
                    .clone()
            }
        };
        req.push(cmd);
        asked.push(i);
    }
    if asked.is_empty() {
        for p in pending {
            match p.outcome {
                Outcome::Read => out.records.push(KeyRecord {
                    key: p.key,
                    value: finish_value(p.value),
                    expire_at_ms: p.expire_at_ms,
                }),
                Outcome::Vanished => out.vanished += 1,
                Outcome::Changed => out.changed += 1,
                Outcome::TooLarge => {
                    let ty = p.value.type_name().to_owned();
                    out.rejected.push((
                        p.key,
                        ty,
                        format!(
                            "larger than {} bytes (max_value_bytes)",
                            options.max_value_bytes
                        ),
                    ))
                }
            }
        }
        return Step::Done(out);
    }
    Step::send(req, move |mut r| {
        for i in asked {
            let p = &mut pending[i];
            let reply = r.next_raw()?;
            if let Value::ServerError(e) = &reply {
                let err = Error::redis(e.clone().into(), None);
                if err.redis_kind() == Some(RedisErrorKind::WrongType) {
                    p.outcome = Outcome::Changed;
                    p.done = true;
                    continue;
                }
                return Err(err);
            }
            take_page(p, reply, page, &r, options)?;
        }
        r.finish()?;
        Ok(round(pending, out, options))
    })
}

/// Sorted sets come in `ZSCAN` order: put them in score order (ties by member, as Redis).
fn finish_value(v: RedisValue) -> RedisValue {
    match v {
        RedisValue::ZSet(mut m) => {
            m.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            RedisValue::ZSet(m)
        }
        other => other,
    }
}

fn bulk(v: Value, r: &Replies) -> Result<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(r.unexpected(format_args!("expected a string element, got {other:?}"))),
    }
}

/// `[cursor, [elements]]` of a `*SCAN`.
fn scan_reply(v: Value, r: &Replies) -> Result<(u64, Vec<Value>)> {
    match v {
        Value::Array(mut a) if a.len() == 2 => {
            let elems = match a.pop() {
                Some(Value::Array(e)) => e,
                _ => return Err(r.unexpected("a *SCAN reply without its elements")),
            };
            let cursor = match a.pop() {
                Some(c) => {
                    let c = bulk(c, r)?;
                    std::str::from_utf8(&c)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| r.unexpected("a *SCAN cursor that is not a number"))?
                }
                None => return Err(r.unexpected("a *SCAN reply without its cursor")),
            };
            Ok((cursor, elems))
        }
        other => Err(r.unexpected(format_args!("expected a *SCAN reply, got {other:?}"))),
    }
}

fn take_page(
    p: &mut Pending,
    reply: Value,
    page: usize,
    r: &Replies,
    options: ReadOptions,
) -> Result<()> {
    p.pages += 1;
    let first = p.pages == 1;
    let mut size = 0usize;
    match p.kind {
        Kind::String => {
            match reply {
                Value::Nil => p.outcome = Outcome::Vanished,
                v => {
                    let b = bulk(v, r)?;
                    size = b.len();
                    p.value = RedisValue::String(b);
                }
            }
            p.done = true;
        }
        Kind::Hash | Kind::Set | Kind::ZSet => {
            let (cursor, elems) = scan_reply(reply, r)?;
            if first && cursor == 0 && elems.is_empty() {
                p.outcome = Outcome::Vanished;
                p.done = true;
                return Ok(());
            }
            let pairs = p.kind != Kind::Set;
            // A `*SCAN` may return an element twice (while the server rehashes): a value
            // read in more than one page is deduplicated.
            let dedupe = !(first && cursor == 0);
            let mut it = elems.into_iter();
            while let Some(e) = it.next() {
                let e = bulk(e, r)?;
                let second = if pairs {
                    Some(bulk(
                        it.next()
                            .ok_or_else(|| r.unexpected("an odd *SCAN reply"))?,
                        r,
                    )?)
                } else {
                    None
                };
                if dedupe && !p.seen.insert(e.clone()) {
                    continue;
                }
                size += e.len() + second.as_ref().map_or(0, Vec::len);
                match (&mut p.value, second) {
                    (RedisValue::Hash(h), Some(v)) => h.push((e, v)),
                    (RedisValue::Set(s), None) => s.push(e),
                    (RedisValue::ZSet(z), Some(score)) => {
                        let score = std::str::from_utf8(&score)
                            .ok()
                            .and_then(parse_score)
                            .ok_or_else(|| {
                                r.unexpected("a sorted-set score that is not a number")
                            })?;
                        z.push((e, score));
                    }
                    _ => return Err(r.unexpected("a value read as another type")),
                }
            }
            p.cursor = cursor;
            p.done = cursor == 0;
        }
        Kind::List => {
            let elems = match reply {
                Value::Array(a) => a,
                other => {
                    return Err(
                        r.unexpected(format_args!("expected an LRANGE reply, got {other:?}"))
                    );
                }
            };
            if first && elems.is_empty() {
                p.outcome = Outcome::Vanished;
                p.done = true;
                return Ok(());
            }
            let n = elems.len();
            let RedisValue::List(l) = &mut p.value else {
                return Err(r.unexpected("a value read as another type"));
            };
            for e in elems {
                let e = bulk(e, r)?;
                size += e.len();
                l.push(e);
            }
            p.cursor += n as u64;
            p.done = n < page;
        }
        Kind::Stream => {
            let entries = match reply {
                Value::Array(a) => a,
                other => {
                    return Err(
                        r.unexpected(format_args!("expected an XRANGE reply, got {other:?}"))
                    );
                }
            };
            let n = entries.len();
            let RedisValue::Stream(s) = &mut p.value else {
                return Err(r.unexpected("a value read as another type"));
            };
            for e in entries {
                let Value::Array(mut parts) = e else {
                    return Err(r.unexpected("a stream entry that is not [id, fields]"));
                };
                if parts.len() != 2 {
                    return Err(r.unexpected("a stream entry that is not [id, fields]"));
                }
                let fields = parts.pop();
                let id = parts
                    .pop()
                    .map(|v| bulk(v, r))
                    .transpose()?
                    .unwrap_or_default();
                let id = String::from_utf8_lossy(&id).into_owned();
                let mut pairs = Vec::new();
                if let Some(Value::Array(f)) = fields {
                    let mut it = f.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        let (k, v) = (bulk(k, r)?, bulk(v, r)?);
                        size += k.len() + v.len();
                        pairs.push((k, v));
                    }
                }
                size += id.len();
                p.after = Some(id.clone());
                s.push(StreamEntry { id, fields: pairs });
            }
            p.done = n < page;
        }
    }
    p.bytes = p.bytes.saturating_add(size as u64);
    if p.bytes > options.max_value_bytes {
        // Not read on: the value is rejected (its memory dropped now).
        p.outcome = Outcome::TooLarge;
        p.done = true;
        p.value = empty(p.kind);
        p.seen = HashSet::new();
    }
    Ok(())
}

fn empty(kind: Kind) -> RedisValue {
    match kind {
        Kind::String => RedisValue::String(Vec::new()),
        Kind::Hash => RedisValue::Hash(Vec::new()),
        Kind::List => RedisValue::List(Vec::new()),
        Kind::Set => RedisValue::Set(Vec::new()),
        Kind::ZSet => RedisValue::ZSet(Vec::new()),
        Kind::Stream => RedisValue::Stream(Vec::new()),
    }
}

/// A score as Redis writes it (`inf`, `-inf` included).
fn parse_score(s: &str) -> Option<f64> {
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|f| !f.is_nan()),
    }
}
