//! Restoring a JSON Lines export into Redis: every key of every part rebuilt with the
//! same commands as the RESP format (`DEL`, the value, `PEXPIREAT`), pipelined, each
//! key's replies checked. An export is also a backup.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value as Json;

use super::format::resp_commands;
use super::manifest::{read_files_manifest, read_summary};
use super::value::{KeyRecord, RedisValue, StreamEntry};
use super::verify::{open_part, safe_key};
use crate::error::{Error, Result};
use crate::exec::{Command, Packed, Request, Step, SyncConnection, run};

/// Keys per pipelined request.
const KEYS_PER_REQUEST: usize = 1_000;

/// The longest line read (a longer one is an error, not an allocation).
const MAX_LINE_BYTES: u64 = 512 << 20;

/// What a restore did.
#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    /// Parts read.
    pub parts: u64,
    /// Keys read from the parts.
    pub keys: u64,
    /// Keys whose every command the server acknowledged.
    pub restored: u64,
    /// Keys the server refused a command of.
    pub failed: u64,
    /// Commands sent.
    pub commands: u64,
    /// The first errors (key and the server's message).
    pub errors: Vec<String>,
    /// Wall time.
    pub elapsed_s: f64,
}

fn bad(what: impl Into<String>) -> Error {
    super::manifest::corrupt("a JSON Lines export", what)
}

fn bytes_of(v: &Json) -> Result<Vec<u8>> {
    match v {
        Json::String(s) => Ok(s.clone().into_bytes()),
        Json::Object(o) => match o.get("base64") {
            Some(Json::String(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| bad(format!("bad base64: {e}"))),
            _ => Err(bad("an object that is not {\"base64\": ...}")),
        },
        _ => Err(bad("a value that is not a string")),
    }
}

fn pairs_of(v: &Json) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let Json::Array(a) = v else {
        return Err(bad("pairs that are not an array"));
    };
    a.iter()
        .map(|p| match p {
            Json::Array(kv) if kv.len() == 2 => Ok((bytes_of(&kv[0])?, bytes_of(&kv[1])?)),
            _ => Err(bad("a pair that is not [a, b]")),
        })
        .collect()
}

fn score_of(v: &Json) -> Result<f64> {
    match v {
        Json::Number(n) => n.as_f64().ok_or_else(|| bad("a score out of range")),
        Json::String(s) if s == "inf" => Ok(f64::INFINITY),
        Json::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
        _ => Err(bad("a score that is not a number")),
    }
}

/// A JSON Lines export line (what [`json_line`](super::json_line) writes) as the key it
/// describes.
pub fn parse_json_line(line: &[u8]) -> Result<KeyRecord> {
    let v: Json = serde_json::from_slice(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let key = bytes_of(v.get("key").ok_or_else(|| bad("no key"))?)?;
    let ttl = match v.get("ttl") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => Some(n.as_u64().ok_or_else(|| bad("a ttl that is not a time"))?),
        Some(_) => return Err(bad("a ttl that is not a number")),
    };
    let value = v.get("value").ok_or_else(|| bad("no value"))?;
    let list = |value: &Json| -> Result<Vec<Vec<u8>>> {
        match value {
            Json::Array(a) => a.iter().map(bytes_of).collect(),
            _ => Err(bad("a list that is not an array")),
        }
    };
    let value = match v.get("type").and_then(Json::as_str) {
        Some("string") => RedisValue::String(bytes_of(value)?),
        Some("hash") => RedisValue::Hash(pairs_of(value)?),
        Some("list") => RedisValue::List(list(value)?),
        Some("set") => RedisValue::Set(list(value)?),
        Some("zset") => {
            let Json::Array(a) = value else {
                return Err(bad("a sorted set that is not an array"));
            };
            RedisValue::ZSet(
                a.iter()
                    .map(|p| match p {
                        Json::Array(ms) if ms.len() == 2 => {
                            Ok((bytes_of(&ms[0])?, score_of(&ms[1])?))
                        }
                        _ => Err(bad("a sorted-set member that is not [member, score]")),
                    })
                    .collect::<Result<_>>()?,
            )
        }
        Some("stream") => {
            let Json::Array(a) = value else {
                return Err(bad("a stream that is not an array"));
            };
            RedisValue::Stream(
                a.iter()
                    .map(|e| {
                        let id = e
                            .get("id")
                            .and_then(Json::as_str)
                            .ok_or_else(|| bad("a stream entry without an id"))?;
                        let fields = pairs_of(
                            e.get("fields")
                                .ok_or_else(|| bad("a stream entry without fields"))?,
                        )?;
                        Ok(StreamEntry {
                            id: id.to_owned(),
                            fields,
                        })
                    })
                    .collect::<Result<_>>()?,
            )
        }
        other => return Err(bad(format!("unknown type {other:?}"))),
    };
    Ok(KeyRecord {
        key,
        value,
        expire_at_ms: ttl,
    })
}

/// Restore the JSON Lines export in `dir` (every part its manifest lists) through `con`.
/// A key that expired since the export is written and expires at once (`PEXPIREAT` in
/// the past), as it would have. A connection failure stops the restore with its error;
/// running it again is safe (each key is rebuilt from `DEL`).
pub fn restore<C: SyncConnection + ?Sized>(dir: &Path, con: &mut C) -> Result<RestoreReport> {
    let start = Instant::now();
    let summary = read_summary(dir)?;
    match summary.output_format.as_str() {
        "JSON_LINES" => {}
        "RESP" => {
            return Err(Error::InvalidArgument(
                "a RESP export is replayed with redis-cli --pipe (zcat -f data/* | redis-cli --pipe)".into(),
            ));
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "a {other} export cannot be restored into Redis (its items do not keep Redis's types): export as jsonl"
            )));
        }
    }
    let mut report = RestoreReport::default();
    for entry in read_files_manifest(dir)? {
        if !safe_key(&entry.data_file_s3_key, "data") {
            return Err(bad(format!(
                "{:?} is not a part of the export",
                entry.data_file_s3_key
            )));
        }
        let mut reader = BufReader::new(open_part(&dir.join(&entry.data_file_s3_key))?);
        report.parts += 1;
        let mut batch: Vec<KeyRecord> = Vec::with_capacity(KEYS_PER_REQUEST);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.len() as u64 > MAX_LINE_BYTES {
                return Err(bad(format!("a line longer than {MAX_LINE_BYTES} bytes")));
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.is_empty() {
                continue;
            }
            batch.push(parse_json_line(&line)?);
            if batch.len() == KEYS_PER_REQUEST {
                send(con, &mut batch, &mut report)?;
            }
        }
        send(con, &mut batch, &mut report)?;
    }
    report.elapsed_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Send the keys of `batch` (emptied) and account for each from its replies.
fn send<C: SyncConnection + ?Sized>(
    con: &mut C,
    batch: &mut Vec<KeyRecord>,
    report: &mut RestoreReport,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    let mut counts = Vec::with_capacity(batch.len());
    for rec in batch.iter() {
        counts.push(resp_commands(rec, &mut buf));
    }
    let total: usize = counts.iter().sum();
    let mut packed = Packed::with_capacity(buf.len());
    packed.raw(&buf, total);
    let replies = run(
        con,
        Step::then(Request::single(Command::Packed(packed), None), |mut r| {
            let mut out = Vec::with_capacity(r.remaining());
            while r.remaining() > 0 {
                out.push(r.next_raw()?);
            }
            Ok(out)
        }),
    )?;
    let mut at = 0;
    for (rec, n) in batch.iter().zip(counts) {
        let mine = replies.get(at..at + n).unwrap_or(&[]);
        at += n;
        report.keys += 1;
        report.commands += n as u64;
        match mine.iter().find_map(|v| match v {
            redis::Value::ServerError(e) => Some(e.to_string()),
            _ => None,
        }) {
            None if mine.len() == n => report.restored += 1,
            found => {
                report.failed += 1;
                if report.errors.len() < 100 {
                    report.errors.push(format!(
                        "{}: {}",
                        String::from_utf8_lossy(&rec.key),
                        found.unwrap_or_else(|| "missing replies".into())
                    ));
                }
            }
        }
    }
    batch.clear();
    Ok(())
}
