//! Verification after a load: the source is read again, each record's commands made
//! with the same [`Mapping`], and Redis is asked (pipelined, a batch of records per
//! round trip) whether each command's effect is there: `SET k v` -> a string equal to
//! `v`; `HSET k f v ...` -> a hash whose fields hold the values; `SADD s m` -> `m` is a
//! member; `ZADD z score m` -> `m` has that score; a TTL -> the key expires, no later
//! than the mapping says (for absolute times, at that time within a tolerance).
//!
//! `RPUSH` and `HINCRBY` index operations are not checked (a list or a counter holds
//! every record together): they are counted as `unchecked`. Every record is checked
//! against its own commands: in a source with repeated keys (or lookup fields), the
//! records a later one overwrote are reported as wrong values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use serde::Serialize;

use super::estimate::pipeline;
use super::mapping::{Encoder, Mapping};
use super::record::Record;
use super::source::{Read, Source};
use crate::error::Result;
use crate::exec::SyncConnection;

/// Mismatches a [`VerifyReport`] lists (all are counted).
pub const MAX_REPORTED_MISMATCHES: usize = 10;

/// How [`verify_load`] reads and checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check only the first this many records (all when `None`).
    pub sample: Option<u64>,
    /// Records checked per pipelined round trip.
    pub batch_size: usize,
    /// How far an absolute expiry time (`PXAT`/`PEXPIREAT`) may be from the one the
    /// record gives (clocks of the client and the server, time between the two reads).
    pub ttl_tolerance: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            sample: None,
            batch_size: 1_000,
            ttl_tolerance: Duration::from_secs(5),
        }
    }
}

/// What a mismatch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The key does not exist.
    Missing,
    /// The key holds another type.
    WrongType,
    /// The value (a string, hash fields, a set member, a score) differs.
    WrongValue,
    /// The key has no TTL, or a later one than the record says.
    WrongTtl,
}

/// One record's command whose effect is not in Redis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// The record's ordinal in the source, from 0.
    pub record: u64,
    /// Its line (text sources), else 0.
    pub line: u64,
    /// The key checked.
    pub key: String,
    /// What is wrong.
    pub kind: MismatchKind,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            MismatchKind::Missing => "missing",
            MismatchKind::WrongType => "wrong type",
            MismatchKind::WrongValue => "wrong value",
            MismatchKind::WrongTtl => "wrong TTL",
        };
        write!(
            f,
            "record {} (line {}) key {:?}: {kind}: expected {}, found {}",
            self.record, self.line, self.key, self.expected, self.found
        )
    }
}

/// The outcome of [`verify_load`]: counts of checks (one per `SET`, `HSET`, `SADD`,
/// `ZADD` command of a record, its TTL included) and the first mismatches.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Records read from the source.
    pub records_read: u64,
    /// Records checked (read and mapped).
    pub records_checked: u64,
    /// Records whose every check passed.
    pub records_ok: u64,
    /// Records that could not be read or mapped (not checked).
    pub records_skipped: u64,
    /// Commands checked.
    pub checked: u64,
    /// Checks that passed.
    pub ok: u64,
    /// Keys missing.
    pub missing: u64,
    /// Keys of another type.
    pub wrong_type: u64,
    /// Values that differ.
    pub wrong_value: u64,
    /// TTLs missing or later than expected.
    pub wrong_ttl: u64,
    /// Commands not checked (`RPUSH`, `HINCRBY`).
    pub unchecked: u64,
    /// The first [`MAX_REPORTED_MISMATCHES`] mismatches.
    pub mismatches: Vec<Mismatch>,
}

impl VerifyReport {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.checked == self.ok
    }

    /// Mismatches of every kind.
    pub fn mismatched(&self) -> u64 {
        self.missing + self.wrong_type + self.wrong_value + self.wrong_ttl
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "verified {} records ({} ok, {} skipped): {} checks, {} ok, {} missing, \
             {} wrong type, {} wrong value, {} wrong TTL",
            self.records_checked,
            self.records_ok,
            self.records_skipped,
            self.checked,
            self.ok,
            self.missing,
            self.wrong_type,
            self.wrong_value,
            self.wrong_ttl
        );
        if self.unchecked > 0 {
            s.push_str(&format!(
                ", {} not checkable (RPUSH/HINCRBY)",
                self.unchecked
            ));
        }
        for m in &self.mismatches {
            s.push_str(&format!("\n  {m}"));
        }
        s
    }

    fn count(&mut self, m: Mismatch) {
        match m.kind {
            MismatchKind::Missing => self.missing += 1,
            MismatchKind::WrongType => self.wrong_type += 1,
            MismatchKind::WrongValue => self.wrong_value += 1,
            MismatchKind::WrongTtl => self.wrong_ttl += 1,
        }
        if self.mismatches.len() < MAX_REPORTED_MISMATCHES {
            self.mismatches.push(m);
        }
    }
}

/// What a command should have left.
enum Expect {
    String(Vec<u8>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Member(Vec<u8>),
    Score(f64, Vec<u8>),
}

impl Expect {
    fn type_name(&self) -> &'static str {
        match self {
            Expect::String(_) => "string",
            Expect::Hash(_) => "hash",
            Expect::Member(_) => "set",
            Expect::Score(..) => "zset",
        }
    }
}

/// The expiry a command set.
#[derive(Clone, Copy)]
enum TtlExpect {
    /// At most this many milliseconds.
    Within(u64),
    /// At this Unix time in milliseconds.
    At(u64),
}

struct Check {
    record: u64,
    line: u64,
    key: Vec<u8>,
    expect: Expect,
    ttl: Option<TtlExpect>,
}

impl Check {
    fn commands(&self, out: &mut Vec<redis::Cmd>) {
        let key = &self.key[..];
        let mut t = redis::cmd("TYPE");
        t.arg(key);
        out.push(t);
        let mut c = match &self.expect {
            Expect::String(_) => redis::cmd("GET"),
            Expect::Hash(_) => redis::cmd("HMGET"),
            Expect::Member(_) => redis::cmd("SISMEMBER"),
            Expect::Score(..) => redis::cmd("ZSCORE"),
        };
        c.arg(key);
        match &self.expect {
            Expect::String(_) => {}
            Expect::Hash(fields) => {
                for (f, _) in fields {
                    c.arg(&f[..]);
                }
            }
            Expect::Member(m) | Expect::Score(_, m) => {
                c.arg(&m[..]);
            }
        }
        out.push(c);
        if self.ttl.is_some() {
            let mut p = redis::cmd("PTTL");
            p.arg(key);
            out.push(p);
        }
    }

    fn replies(&self) -> usize {
        2 + usize::from(self.ttl.is_some())
    }

    fn mismatch(&self, kind: MismatchKind, expected: String, found: String) -> Mismatch {
        Mismatch {
            record: self.record,
            line: self.line,
            key: String::from_utf8_lossy(&self.key).into_owned(),
            kind,
            expected,
            found,
        }
    }

    /// Judge the replies (`replies()` of them).
    fn judge(&self, replies: &[Value], now_ms: u64, tolerance_ms: u64) -> Option<Mismatch> {
        let ty = match &replies[0] {
            Value::SimpleString(s) => s.clone(),
            Value::Okay => "OK".into(),
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        };
        let want = self.expect.type_name();
        if ty == "none" {
            return Some(self.mismatch(
                MismatchKind::Missing,
                format!("a {want}"),
                "no key".into(),
            ));
        }
        if ty != want {
            return Some(self.mismatch(MismatchKind::WrongType, want.into(), ty));
        }
        let value = &replies[1];
        match &self.expect {
            Expect::String(v) => {
                if !matches!(value, Value::BulkString(b) if b == v) {
                    return Some(self.mismatch(
                        MismatchKind::WrongValue,
                        show(v),
                        show_value(value),
                    ));
                }
            }
            Expect::Hash(fields) => {
                let found: &[Value] = match value {
                    Value::Array(a) => a,
                    _ => &[],
                };
                if found.len() != fields.len() {
                    return Some(self.mismatch(
                        MismatchKind::WrongValue,
                        format!("{} fields", fields.len()),
                        show_value(value),
                    ));
                }
                for ((f, v), got) in fields.iter().zip(found) {
                    if !matches!(got, Value::BulkString(b) if b == v) {
                        return Some(self.mismatch(
                            MismatchKind::WrongValue,
                            format!("field {} = {}", show(f), show(v)),
                            show_value(got),
                        ));
                    }
                }
            }
            Expect::Member(m) => {
                if !matches!(value, Value::Int(1)) {
                    return Some(self.mismatch(
                        MismatchKind::WrongValue,
                        format!("member {}", show(m)),
                        "not a member".into(),
                    ));
                }
            }
            Expect::Score(s, m) => {
                let got = match value {
                    Value::BulkString(b) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|t| t.parse::<f64>().ok()),
                    Value::Double(d) => Some(*d),
                    _ => None,
                };
                if got != Some(*s) {
                    return Some(self.mismatch(
                        MismatchKind::WrongValue,
                        format!("member {} with score {s}", show(m)),
                        match got {
                            Some(g) => format!("score {g}"),
                            None => "not a member".into(),
                        },
                    ));
                }
            }
        }
        if let Some(ttl) = self.ttl {
            let pttl = match &replies[2] {
                Value::Int(i) => *i,
                _ => -1,
            };
            let expected = match ttl {
                TtlExpect::Within(ms) => format!("a TTL of at most {ms} ms"),
                TtlExpect::At(at) => format!("expiry at {at} ms (unix)"),
            };
            if pttl == -2 {
                return Some(self.mismatch(MismatchKind::Missing, expected, "no key".into()));
            }
            let good = pttl > 0
                && match ttl {
                    TtlExpect::Within(ms) => pttl as u64 <= ms,
                    TtlExpect::At(at) => (now_ms + pttl as u64).abs_diff(at) <= tolerance_ms,
                };
            if !good {
                let found = if pttl == -1 {
                    "no TTL".into()
                } else {
                    format!("a TTL of {pttl} ms")
                };
                return Some(self.mismatch(MismatchKind::WrongTtl, expected, found));
            }
        }
        None
    }
}

fn show(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(b).into_owned();
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    format!("{s:?}")
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::BulkString(b) => show(b),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(show_value).collect::<Vec<_>>().join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn parse_ms(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A record's checks from its commands.
fn checks_of(
    record: &Record,
    commands: &mut Vec<Vec<Vec<u8>>>,
    out: &mut Vec<Check>,
    unchecked: &mut u64,
) {
    let first = out.len();
    for args in commands.drain(..) {
        let Some(name) = args.first() else { continue };
        let Some(key) = args.get(1).cloned() else {
            continue;
        };
        let expect = match name.as_slice() {
            b"SET" => {
                let Some(v) = args.get(2) else { continue };
                let ttl = match (args.get(3).map(Vec::as_slice), args.get(4)) {
                    (Some(b"PX"), Some(ms)) => parse_ms(ms).map(TtlExpect::Within),
                    (Some(b"PXAT"), Some(ms)) => parse_ms(ms).map(TtlExpect::At),
                    _ => None,
                };
                out.push(Check {
                    record: record.position.record,
                    line: record.position.line,
                    key,
                    expect: Expect::String(v.clone()),
                    ttl,
                });
                continue;
            }
            b"HSET" => Expect::Hash(
                args[2..]
                    .chunks_exact(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            ),
            b"SADD" => match args.get(2) {
                Some(m) => Expect::Member(m.clone()),
                None => continue,
            },
            b"ZADD" => match (args.get(2).and_then(|s| parse_f64(s)), args.get(3)) {
                (Some(s), Some(m)) => Expect::Score(s, m.clone()),
                _ => continue,
            },
            b"PEXPIRE" | b"PEXPIREAT" => {
                let ms = args.get(2).and_then(|m| parse_ms(m));
                let ttl = match (name.as_slice(), ms) {
                    (b"PEXPIRE", Some(ms)) => Some(TtlExpect::Within(ms)),
                    (_, Some(ms)) => Some(TtlExpect::At(ms)),
                    _ => None,
                };
                // The TTL of the key the record's value command wrote.
                if let Some(c) = out[first..].iter_mut().rev().find(|c| c.key == key) {
                    c.ttl = ttl;
                }
                continue;
            }
            _ => {
                *unchecked += 1;
                continue;
            }
        };
        out.push(Check {
            record: record.position.record,
            line: record.position.line,
            key,
            expect,
            ttl: None,
        });
    }
}

fn parse_f64(b: &[u8]) -> Option<f64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Check that what loading `source` under `mapping` writes is in Redis: each record's
/// commands are made again, and for `SET k v` the key must be a string equal to `v`,
/// for `HSET k f v ...` a hash with those field values, for `SADD s m` a set with member
/// `m`, for `ZADD z score m` a sorted set where `m` has that score, and a TTL must be
/// set and no later than the record's (an absolute one within
/// [`VerifyOptions::ttl_tolerance`]). `RPUSH` and `HINCRBY` are not checked
/// (`unchecked`). A record overwritten by a later one of the same key is reported as a
/// wrong value. Sends only reads (`TYPE`, `GET`, `HMGET`, `SISMEMBER`, `ZSCORE`,
/// `PTTL`), a batch of records per pipelined round trip.
pub fn verify_load<C: SyncConnection + ?Sized>(
    mapping: &Mapping,
    source: &mut dyn Source,
    con: &mut C,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut enc = Encoder::default();
    let mut record = Record::default();
    let mut commands: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    let mut in_batch = 0usize;
    let batch = options.batch_size.max(1);
    let limit = options.sample.unwrap_or(u64::MAX);
    loop {
        let more = report.records_read < limit
            && match source.next_record(&mut record)? {
                Read::End => false,
                Read::Malformed { .. } => {
                    report.records_read += 1;
                    report.records_skipped += 1;
                    true
                }
                Read::Record => {
                    report.records_read += 1;
                    match enc.encode(mapping, &record) {
                        Ok(e) => {
                            e.each_command(|args| {
                                commands.push(args.iter().map(|a| a.to_vec()).collect())
                            });
                            checks_of(&record, &mut commands, &mut checks, &mut report.unchecked);
                            report.records_checked += 1;
                            in_batch += 1;
                        }
                        Err(_) => report.records_skipped += 1,
                    }
                    true
                }
            };
        if in_batch >= batch || (!more && !checks.is_empty()) {
            run_checks(con, &checks, options, &mut report)?;
            checks.clear();
            in_batch = 0;
        }
        if !more {
            break;
        }
    }
    Ok(report)
}

/// Send a batch's checks in one pipeline and judge them; counts records ok.
fn run_checks<C: SyncConnection + ?Sized>(
    con: &mut C,
    checks: &[Check],
    options: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut cmds = Vec::with_capacity(checks.len() * 3);
    for c in checks {
        c.commands(&mut cmds);
    }
    let replies = pipeline(con, cmds)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let tolerance = options.ttl_tolerance.as_millis() as u64;
    let mut at = 0;
    // Records with at least one mismatch, as (record ordinal) runs: checks of one
    // record are adjacent.
    let mut records = 0u64;
    let mut bad = 0u64;
    let mut last: Option<(u64, bool)> = None;
    for c in checks {
        let n = c.replies();
        let verdict = c.judge(&replies[at..at + n], now_ms, tolerance);
        at += n;
        report.checked += 1;
        let failed = verdict.is_some();
        match verdict {
            Some(m) => report.count(m),
            None => report.ok += 1,
        }
        match &mut last {
            Some((r, f)) if *r == c.record => *f |= failed,
            _ => {
                if let Some((_, f)) = last {
                    records += 1;
                    bad += u64::from(f);
                }
                last = Some((c.record, failed));
            }
        }
    }
    if let Some((_, f)) = last {
        records += 1;
        bad += u64::from(f);
    }
    report.records_ok += records - bad;
    Ok(())
}
