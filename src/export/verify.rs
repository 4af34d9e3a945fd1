//! Checking an export directory against its manifests ([`verify`]), and merging the
//! directories of the shards of one export into one ([`merge`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use md5::{Digest, Md5};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::manifest::{
    self, DATA_DIR, MANIFEST_FILES, MANIFEST_SUMMARY, ManifestFileEntry, ManifestSummary,
    REJECTS_DIR, STARTED, Shard, corrupt,
};
use super::parts::OutputFormat;
use crate::error::{Error, Result};

/// Lines of a part up to this length are read whole and parsed from memory; a longer
/// one is parsed as it streams (so memory stays bounded whatever the part holds).
const MAX_BUFFERED_LINE: usize = 16 << 20;
/// The longest RESP header line (`*<n>\r\n`, `$<len>\r\n`).
const MAX_RESP_HEADER: usize = 32;
/// The most arguments of one RESP command read back.
const MAX_RESP_ARGS: u64 = 1 << 24;
/// The longest RESP bulk string read back (Redis's `proto-max-bulk-len` ceiling).
const MAX_RESP_BULK: u64 = 1 << 32;

/// What is wrong with an export directory ([`VerifyReport::problems`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartProblem {
    /// A `dataFileS3Key` (or rejects key) is not a plain file name under `data/` (or
    /// `rejects/`): absolute, with `..`, nested, empty.
    BadKey {
        /// The key as listed.
        key: String,
    },
    /// A part is listed twice.
    Duplicate {
        /// The part.
        key: String,
    },
    /// A listed part does not exist.
    Missing {
        /// The part.
        key: String,
    },
    /// A part's MD5 is not its manifest line's (`md5Checksum`, or `etag`).
    Md5Mismatch {
        /// The part.
        key: String,
        /// What the manifest says.
        expected: String,
        /// The file's.
        found: String,
    },
    /// A part cannot be read or decompressed (truncated, corrupt).
    Unreadable {
        /// The part.
        key: String,
        /// Why.
        reason: String,
    },
    /// An item of a part is not what the output format requires (the first such item
    /// of the part).
    InvalidItem {
        /// The part.
        key: String,
        /// Its number in the part, from 1.
        item: u64,
        /// What is wrong.
        reason: String,
    },
    /// A part holds another number of items than its manifest line says.
    ItemCount {
        /// The part.
        key: String,
        /// Its `itemCount`.
        expected: u64,
        /// Items in the part.
        found: u64,
    },
    /// A file in `data/` that the manifest does not list (a leftover `.tmp` part, a
    /// stray file).
    Unlisted {
        /// Its path relative to the directory.
        key: String,
    },
    /// A summary field is not what the parts add up to.
    Summary {
        /// The field (`itemCount`, `billedSizeBytes`, `partCount`,
        /// `compressedSizeBytes`, `itemCountByType`, `rejected`, ...).
        field: &'static str,
        /// The summary's value.
        expected: u64,
        /// What the parts (or rejects files) add up to.
        found: u64,
    },
}

impl fmt::Display for PartProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartProblem::BadKey { key } => write!(f, "{key:?}: not a file of the export"),
            PartProblem::Duplicate { key } => write!(f, "{key}: listed twice"),
            PartProblem::Missing { key } => write!(f, "{key}: missing"),
            PartProblem::Md5Mismatch {
                key,
                expected,
                found,
            } => write!(f, "{key}: MD5 {found}, the manifest says {expected}"),
            PartProblem::Unreadable { key, reason } => write!(f, "{key}: unreadable: {reason}"),
            PartProblem::InvalidItem { key, item, reason } => {
                write!(f, "{key}: item {item}: {reason}")
            }
            PartProblem::ItemCount {
                key,
                expected,
                found,
            } => write!(f, "{key}: {found} items, the manifest says {expected}"),
            PartProblem::Unlisted { key } => write!(f, "{key}: not listed in the manifest"),
            PartProblem::Summary {
                field,
                expected,
                found,
            } => write!(
                f,
                "summary {field} is {expected}, the export adds up to {found}"
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Parts listed.
    pub parts: u64,
    /// Items (lines; RESP: commands) read from the parts.
    pub items: u64,
    /// Uncompressed bytes read from the parts.
    pub uncompressed_bytes: u64,
    /// Bytes of the part files.
    pub compressed_bytes: u64,
    /// Lines of the rejects files.
    pub rejected: u64,
    /// Everything wrong, in the order found (empty: the export is whole).
    pub problems: Vec<PartProblem>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Whether `key` is `<folder>/<plain file name>`.
pub(crate) fn safe_key(key: &str, folder: &str) -> bool {
    match key.strip_prefix(folder).and_then(|k| k.strip_prefix('/')) {
        Some(name) => {
            !name.is_empty()
                && name != "."
                && name != ".."
                && !name.contains(['/', '\\', '\0'])
                && !name.starts_with('.')
        }
        None => false,
    }
}

/// The MD5 digest and size of a file, streamed.
fn md5_file(path: &Path) -> io::Result<([u8; 16], u64)> {
    let mut f = File::open(path)?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        total += n as u64;
    }
    Ok((md5.finalize().into(), total))
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A part's decompressed stream, by its file name.
pub(crate) fn open_part(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = BufReader::with_capacity(256 << 10, File::open(path)?);
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    })
}

/// Which keys a line's object has (the top level only; values are skipped unread).
#[derive(Default)]
struct Shape {
    keys: u64,
    item: bool,
    item_object: bool,
    key: bool,
    key_type: bool,
}

enum KeyName {
    Item,
    Key,
    Type,
    Other,
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<KeyName, E> {
                Ok(match v {
                    "Item" => KeyName::Item,
                    "key" | "keyBase64" => KeyName::Key,
                    "type" => KeyName::Type,
                    _ => KeyName::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A value that must be an object; its entries are skipped.
struct AnyObject(bool);

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject(true))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Shape, A::Error> {
                let mut s = Shape::default();
                while let Some(k) = map.next_key::<KeyName>()? {
                    s.keys += 1;
                    match k {
                        KeyName::Item => {
                            s.item = true;
                            s.item_object = map.next_value::<AnyObject>()?.0;
                        }
                        KeyName::Key => {
                            s.key = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                        KeyName::Type => {
                            s.key_type = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                        KeyName::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether a line's shape is the format's.
fn check_shape(shape: &Shape, format: OutputFormat) -> std::result::Result<(), String> {
    match format {
        OutputFormat::DynamoDbJson => {
            if shape.keys == 1 && shape.item && shape.item_object {
                Ok(())
            } else {
                Err("not an object with exactly one key, \"Item\", holding an object".into())
            }
        }
        OutputFormat::JsonLines => {
            if shape.key && shape.key_type {
                Ok(())
            } else {
                Err("an object without \"key\" and \"type\"".into())
            }
        }
        OutputFormat::Resp => Ok(()),
    }
}

/// Reads one line of a `BufRead` (the rest of it, up to `\n`, which it consumes) and
/// then says end of file.
struct RestOfLine<'a, R> {
    inner: &'a mut R,
    done: bool,
}

impl<R: BufRead> Read for RestOfLine<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            self.done = true;
            return Ok(0);
        }
        let avail = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if i == 0 {
                    self.inner.consume(1);
                    self.done = true;
                    return Ok(0);
                }
                i
            }
            None => buf.len(),
        };
        let n = avail.min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.inner.consume(n);
        Ok(n)
    }
}

/// Counts and checks the lines of a JSON part. `Ok((lines, first invalid))`.
fn count_json_lines<R: BufRead>(
    r: &mut R,
    format: OutputFormat,
) -> io::Result<(u64, Option<(u64, String)>)> {
    let mut lines = 0u64;
    let mut first_bad = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *r)
            .take(MAX_BUFFERED_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        lines += 1;
        let whole = line.last() == Some(&b'\n') || n < MAX_BUFFERED_LINE;
        let result: std::result::Result<Shape, serde_json::Error> = if whole {
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let mut de = serde_json::Deserializer::from_slice(text);
            Shape::deserialize(&mut de).and_then(|s| de.end().map(|()| s))
        } else {
            // A long line: parse what was read, then the rest as it streams.
            let mut rest = RestOfLine {
                inner: r,
                done: false,
            };
            let chained = io::Cursor::new(&line[..]).chain(&mut rest);
            let mut de = serde_json::Deserializer::from_reader(chained);
            let res = Shape::deserialize(&mut de).and_then(|s| de.end().map(|()| s));
            // Skip what the parser left of the line (after an error).
            io::copy(&mut rest, &mut io::sink())?;
            res
        };
        let verdict = match result {
            Ok(shape) => check_shape(&shape, format),
            Err(e) if e.is_io() => return Err(io::Error::other(e)),
            Err(e) => Err(format!("not JSON: {e}")),
        };
        if let Err(reason) = verdict
            && first_bad.is_none()
        {
            first_bad = Some((lines, reason));
        }
    }
    Ok((lines, first_bad))
}

/// Reads one RESP header line (`<tag><digits>\r\n`) and returns the number, `None` at
/// the end of the stream.
fn resp_header<R: BufRead>(r: &mut R, tag: u8) -> std::result::Result<Option<u64>, String> {
    let mut line = Vec::with_capacity(MAX_RESP_HEADER);
    let n = r
        .take(MAX_RESP_HEADER as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or_else(|| "a RESP header line without CRLF (or too long)".to_string())?;
    let (&first, digits) = body
        .split_first()
        .ok_or_else(|| "an empty RESP header line".to_string())?;
    if first != tag {
        return Err(format!(
            "expected '{}', found {:?}",
            tag as char,
            String::from_utf8_lossy(body)
        ));
    }
    std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| format!("a bad RESP length {:?}", String::from_utf8_lossy(digits)))
}

/// Skips `n` bytes of a `BufRead` without copying them.
fn skip<R: BufRead>(r: &mut R, mut n: u64) -> std::result::Result<(), String> {
    while n > 0 {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("a RESP bulk string cut short".into());
        }
        let k = (buf.len() as u64).min(n) as usize;
        r.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Counts the RESP commands (arrays of bulk strings) of a stream, streaming bulk
/// strings without holding them.
pub(crate) fn count_resp_commands<R: BufRead>(r: &mut R) -> std::result::Result<u64, String> {
    let mut commands = 0u64;
    while let Some(args) = resp_header(r, b'*')? {
        if args == 0 || args > MAX_RESP_ARGS {
            return Err(format!("command {}: {args} arguments", commands + 1));
        }
        for _ in 0..args {
            let len = resp_header(r, b'$')?
                .ok_or_else(|| format!("command {} cut short", commands + 1))?;
            if len > MAX_RESP_BULK {
                return Err(format!("a bulk string of {len} bytes"));
            }
            skip(r, len)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)
                .map_err(|_| format!("command {} cut short", commands + 1))?;
            if crlf != *b"\r\n" {
                return Err(format!(
                    "command {}: a bulk string not followed by CRLF",
                    commands + 1
                ));
            }
        }
        commands += 1;
    }
    Ok(commands)
}

/// Reads, checks and counts one part. Problems go to `report`.
fn check_part(
    dir: &Path,
    entry: &ManifestFileEntry,
    format: OutputFormat,
    report: &mut VerifyReport,
) {
    let key = &entry.data_file_s3_key;
    let path = dir.join(key);
    let (digest, size) = match md5_file(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            report
                .problems
                .push(PartProblem::Missing { key: key.clone() });
            return;
        }
        Err(e) => {
            report.problems.push(PartProblem::Unreadable {
                key: key.clone(),
                reason: e.to_string(),
            });
            return;
        }
    };
    report.compressed_bytes = report.compressed_bytes.saturating_add(size);
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if b64 != entry.md5_checksum {
        report.problems.push(PartProblem::Md5Mismatch {
            key: key.clone(),
            expected: entry.md5_checksum.clone(),
            found: b64,
        });
    } else if !entry.etag.is_empty() && !entry.etag.contains('-') && entry.etag != hex {
        // An etag with a '-' is a multipart upload's: not an MD5 of the file.
        report.problems.push(PartProblem::Md5Mismatch {
            key: key.clone(),
            expected: entry.etag.clone(),
            found: hex,
        });
    }
    let stream = match open_part(&path) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(PartProblem::Unreadable {
                key: key.clone(),
                reason: e.to_string(),
            });
            return;
        }
    };
    let mut counting = BufReader::with_capacity(
        256 << 10,
        Counting {
            inner: stream,
            bytes: 0,
        },
    );
    let counted = match format {
        OutputFormat::Resp => count_resp_commands(&mut counting).map(|n| (n, None)),
        _ => count_json_lines(&mut counting, format).map_err(|e| e.to_string()),
    };
    report.uncompressed_bytes = report
        .uncompressed_bytes
        .saturating_add(counting.get_ref().bytes);
    match counted {
        Ok((items, bad)) => {
            report.items = report.items.saturating_add(items);
            if let Some((item, reason)) = bad {
                report.problems.push(PartProblem::InvalidItem {
                    key: key.clone(),
                    item,
                    reason,
                });
            }
            if items != entry.item_count {
                report.problems.push(PartProblem::ItemCount {
                    key: key.clone(),
                    expected: entry.item_count,
                    found: items,
                });
            }
        }
        Err(reason) => report.problems.push(PartProblem::Unreadable {
            key: key.clone(),
            reason,
        }),
    }
}

/// Lines of a file, streamed.
fn count_lines(path: &Path) -> io::Result<u64> {
    let mut r = BufReader::new(File::open(path)?);
    let mut n = 0u64;
    let mut last = b'\n';
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        n += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[buf.len() - 1];
        let len = buf.len();
        r.consume(len);
    }
    Ok(n + u64::from(last != b'\n'))
}

/// Check an export directory against its manifests: every listed part exists, has the
/// listed MD5, decompresses to exactly `itemCount` items of the format (DYNAMODB_JSON:
/// lines that are objects with exactly one key `Item`, an object; JSON_LINES: objects
/// with `key` (or `keyBase64`) and `type`; RESP: complete commands), the summary's
/// counts are the parts' sums, the rejects files hold `rejected` lines, and `data/`
/// holds nothing unlisted.
///
/// Parts are streamed (memory stays bounded whatever they hold). A manifest that cannot
/// be read (missing, not JSON, a line over 1 MiB, more than 10 million parts) is an
/// error; everything else wrong is a [`PartProblem`] in the report.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let summary = manifest::read_summary(dir)?;
    let format = OutputFormat::from_name(&summary.output_format).map_err(|_| {
        corrupt(
            "manifest-summary.json",
            format!("unknown outputFormat {:?}", summary.output_format),
        )
    })?;
    let entries = manifest::read_files_manifest(dir)?;
    let mut report = VerifyReport {
        parts: entries.len() as u64,
        ..VerifyReport::default()
    };
    let mut listed = HashSet::new();
    let mut listed_count = 0u64;
    for entry in &entries {
        let key = &entry.data_file_s3_key;
        if !safe_key(key, DATA_DIR) {
            report
                .problems
                .push(PartProblem::BadKey { key: key.clone() });
            continue;
        }
        if !listed.insert(key.clone()) {
            report
                .problems
                .push(PartProblem::Duplicate { key: key.clone() });
            continue;
        }
        listed_count = listed_count.saturating_add(entry.item_count);
        check_part(dir, entry, format, &mut report);
    }
    for entry in fs::read_dir(dir.join(DATA_DIR))? {
        let key = format!("{DATA_DIR}/{}", entry?.file_name().to_string_lossy());
        if !listed.contains(&key) {
            report.problems.push(PartProblem::Unlisted { key });
        }
    }
    let mut rejected = 0u64;
    for key in &summary.rejects_s3_keys {
        if !safe_key(key, REJECTS_DIR) {
            report
                .problems
                .push(PartProblem::BadKey { key: key.clone() });
            continue;
        }
        match count_lines(&dir.join(key)) {
            Ok(n) => rejected = rejected.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::NotFound => report
                .problems
                .push(PartProblem::Missing { key: key.clone() }),
            Err(e) => report.problems.push(PartProblem::Unreadable {
                key: key.clone(),
                reason: e.to_string(),
            }),
        }
    }
    report.rejected = rejected;
    let by_type = summary
        .item_count_by_type
        .values()
        .fold(0u64, |a, &n| a.saturating_add(n));
    let checks: [(&'static str, u64, u64); 7] = [
        ("itemCount", summary.item_count, report.items),
        (
            "itemCount (manifest-files.json)",
            summary.item_count,
            listed_count,
        ),
        (
            "billedSizeBytes",
            summary.billed_size_bytes,
            report.uncompressed_bytes,
        ),
        (
            "compressedSizeBytes",
            summary.compressed_size_bytes,
            report.compressed_bytes,
        ),
        ("partCount", summary.part_count, report.parts),
        ("keyCount (itemCountByType)", summary.key_count, by_type),
        ("rejected", summary.rejected, rejected),
    ];
    for (field, expected, found) in checks {
        if expected != found {
            report.problems.push(PartProblem::Summary {
                field,
                expected,
                found,
            });
        }
    }
    if format != OutputFormat::Resp && summary.key_count != summary.item_count {
        report.problems.push(PartProblem::Summary {
            field: "keyCount",
            expected: summary.key_count,
            found: summary.item_count,
        });
    }
    Ok(report)
}

/// What [`merge`] did.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// Shards merged.
    pub shards: u32,
    /// Parts in the merged directory.
    pub parts: u64,
    /// Files hard-linked into it.
    pub linked: u64,
    /// Files copied into it (where a hard link was refused, e.g. across file systems).
    pub copied: u64,
    /// The merged summary.
    pub summary: ManifestSummary,
}

fn add(a: u64, b: u64, what: &str) -> Result<u64> {
    a.checked_add(b)
        .ok_or_else(|| corrupt("manifest-summary.json", format!("{what} overflows")))
}

/// Hard-link `from` to `to` (replacing `to`), or copy it when a link is refused.
fn link_or_copy(from: &Path, to: &Path, report: &mut MergeReport) -> Result<()> {
    match fs::remove_file(to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    if fs::hard_link(from, to).is_ok() {
        report.linked += 1;
    } else {
        fs::copy(from, to)?;
        File::open(to)?.sync_all()?;
        report.copied += 1;
    }
    Ok(())
}

/// Merge the directories of the shards of one export into one export directory `out`.
///
/// Every directory must hold a finished export (a summary) of the same export id,
/// output format, compression and shard count N, and the shard indexes must be `0..N`,
/// each exactly once. The parts (and rejects files) are hard-linked into `out/data/`
/// (`out/rejects/`), or copied where a link is refused; the shard directories are left
/// as they are. Part names hold the shard index, so they do not collide. `out` gets
/// `_started`, `manifest-files.json` (the shards' lines in shard order) and
/// `manifest-summary.json` (the counts summed, the earliest start and the latest end,
/// `shard` `{0, 1}` and `mergedShards` N), and can be checked with [`verify`].
/// The shards' parts are not re-read: verify each shard (or `out`) for that.
pub fn merge<P: AsRef<Path>>(dirs: &[P], out: &Path) -> Result<MergeReport> {
    if dirs.is_empty() {
        return Err(Error::InvalidArgument("merge: no directories".into()));
    }
    let mut shards: Vec<(PathBuf, ManifestSummary, Vec<ManifestFileEntry>)> = Vec::new();
    for d in dirs {
        let d = d.as_ref();
        if !d.join(MANIFEST_SUMMARY).is_file() {
            return Err(Error::InvalidArgument(format!(
                "merge: {} holds no finished export ({MANIFEST_SUMMARY})",
                d.display()
            )));
        }
        let summary = manifest::read_summary(d)?;
        let entries = manifest::read_files_manifest(d)?;
        shards.push((d.to_owned(), summary, entries));
    }
    let first = shards[0].1.clone();
    let count = first.shard.count;
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for (d, s, entries) in &shards {
        if s.export_id != first.export_id
            || s.output_format != first.output_format
            || s.compression != first.compression
            || s.shard.count != count
            || s.merged_shards != 1
        {
            return Err(Error::InvalidArgument(format!(
                "merge: {} is not a shard of the export of {} (export {} {} {}, shard {}/{}, merged {})",
                d.display(),
                shards[0].0.display(),
                s.export_id,
                s.output_format,
                s.compression,
                s.shard.index,
                s.shard.count,
                s.merged_shards
            )));
        }
        if s.shard.index >= count {
            return Err(Error::InvalidArgument(format!(
                "merge: {} declares shard {}/{}",
                d.display(),
                s.shard.index,
                count
            )));
        }
        if let Some(other) = seen.insert(s.shard.index, d) {
            return Err(Error::InvalidArgument(format!(
                "merge: shard {}/{count} is in both {} and {}",
                s.shard.index,
                other.display(),
                d.display()
            )));
        }
        let listed = entries
            .iter()
            .try_fold(0u64, |a, e| add(a, e.item_count, "itemCount"))?;
        if listed != s.item_count {
            return Err(corrupt(
                "manifest-summary.json",
                format!(
                    "{}: itemCount {} but manifest-files.json lists {listed}",
                    d.display(),
                    s.item_count
                ),
            ));
        }
    }
    let missing: Vec<u32> = (0..count).filter(|i| !seen.contains_key(i)).collect();
    if !missing.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "merge: shards {missing:?} of {count} are missing"
        )));
    }
    shards.sort_by_key(|(_, s, _)| s.shard.index);

    if out.join(MANIFEST_SUMMARY).exists() {
        return Err(Error::InvalidArgument(format!(
            "merge: {} already holds a finished export",
            out.display()
        )));
    }
    fs::create_dir_all(out.join(DATA_DIR))?;
    fs::create_dir_all(out.join(REJECTS_DIR))?;
    let out_canon = out.canonicalize()?;
    for (d, _, _) in &shards {
        if d.canonicalize()? == out_canon {
            return Err(Error::InvalidArgument(format!(
                "merge: the output {} is one of the shards",
                out.display()
            )));
        }
    }
    let mut merged = first.clone();
    merged.shard = Shard::WHOLE;
    merged.merged_shards = count;
    merged.item_count = 0;
    merged.key_count = 0;
    merged.billed_size_bytes = 0;
    merged.compressed_size_bytes = 0;
    merged.part_count = 0;
    merged.rejected = 0;
    merged.vanished = 0;
    merged.changed = 0;
    merged.item_count_by_type.clear();
    merged.rejects_s3_keys.clear();
    let mut report = MergeReport {
        shards: count,
        parts: 0,
        linked: 0,
        copied: 0,
        summary: first.clone(),
    };
    let mut all_entries = Vec::new();
    let mut sources: Vec<&str> = Vec::new();
    for (d, s, entries) in &shards {
        for e in entries {
            if !safe_key(&e.data_file_s3_key, DATA_DIR) {
                return Err(corrupt(
                    "manifest-files.json",
                    format!(
                        "{}: bad dataFileS3Key {:?}",
                        d.display(),
                        e.data_file_s3_key
                    ),
                ));
            }
            link_or_copy(
                &d.join(&e.data_file_s3_key),
                &out.join(&e.data_file_s3_key),
                &mut report,
            )?;
            all_entries.push(e.clone());
        }
        for key in &s.rejects_s3_keys {
            if !safe_key(key, REJECTS_DIR) {
                return Err(corrupt(
                    "manifest-summary.json",
                    format!("{}: bad rejects key {key:?}", d.display()),
                ));
            }
            link_or_copy(&d.join(key), &out.join(key), &mut report)?;
            merged.rejects_s3_keys.push(key.clone());
        }
        merged.item_count = add(merged.item_count, s.item_count, "itemCount")?;
        merged.key_count = add(merged.key_count, s.key_count, "keyCount")?;
        merged.billed_size_bytes = add(merged.billed_size_bytes, s.billed_size_bytes, "size")?;
        merged.compressed_size_bytes = add(
            merged.compressed_size_bytes,
            s.compressed_size_bytes,
            "size",
        )?;
        merged.part_count = add(merged.part_count, s.part_count, "partCount")?;
        merged.rejected = add(merged.rejected, s.rejected, "rejected")?;
        merged.vanished = add(merged.vanished, s.vanished, "vanished")?;
        merged.changed = add(merged.changed, s.changed, "changed")?;
        for (t, n) in &s.item_count_by_type {
            let slot = merged.item_count_by_type.entry(t.clone()).or_insert(0);
            *slot = add(*slot, *n, "itemCountByType")?;
        }
        if s.start_time < merged.start_time {
            merged.start_time = s.start_time.clone();
            merged.export_time = s.export_time.clone();
        }
        if s.end_time > merged.end_time {
            merged.end_time = s.end_time.clone();
        }
        if !sources.contains(&s.source.as_str()) {
            sources.push(&s.source);
        }
    }
    merged.source = sources.join(", ");
    merged.table_arn = merged.source.clone();
    report.parts = all_entries.len() as u64;
    manifest::write_atomic(
        &out.join(STARTED),
        format!("{}\n", merged.start_time).as_bytes(),
    )?;
    manifest::write_atomic(
        &out.join(MANIFEST_FILES),
        &manifest::files_manifest_text(&all_entries)?,
    )?;
    let mut text = serde_json::to_vec_pretty(&merged)?;
    text.push(b'\n');
    manifest::write_atomic(&out.join(MANIFEST_SUMMARY), &text)?;
    report.summary = merged;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_keys() {
        assert!(safe_key("data/a.json.gz", "data"));
        for bad in [
            "data/",
            "data/../x",
            "/etc/passwd",
            "data/a/b",
            "x/a",
            "data/.x",
            "data",
        ] {
            assert!(!safe_key(bad, "data"), "{bad}");
        }
    }

    #[test]
    fn resp_counting() {
        let two = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(count_resp_commands(&mut &two[..]), Ok(2));
        assert!(count_resp_commands(&mut &two[..two.len() - 3]).is_err());
        assert!(count_resp_commands(&mut &b"*1\r\n$99999999999\r\n"[..]).is_err());
        assert!(count_resp_commands(&mut &b"PING\r\n"[..]).is_err());
        assert_eq!(count_resp_commands(&mut &b""[..]), Ok(0));
    }

    #[test]
    fn json_lines_shapes() {
        let text = b"{\"Item\":{\"pk\":{\"S\":\"a\"}}}\n{\"Item\":1}\n{\"Item\":{},\"x\":1}\n";
        let (n, bad) = count_json_lines(&mut &text[..], OutputFormat::DynamoDbJson).unwrap();
        assert_eq!(n, 3);
        assert_eq!(bad.unwrap().0, 2);
        let text = b"{\"key\":\"a\",\"type\":\"string\"}\n{\"key\":\"a\"}\n";
        let (n, bad) = count_json_lines(&mut &text[..], OutputFormat::JsonLines).unwrap();
        assert_eq!((n, bad.unwrap().0), (2, 2));
        let (_, bad) = count_json_lines(&mut &b"not json\n"[..], OutputFormat::JsonLines).unwrap();
        assert!(bad.unwrap().1.contains("not JSON"));
    }

    #[test]
    fn long_lines_stream() {
        let big = "x".repeat(MAX_BUFFERED_LINE + 100);
        let text = format!("{{\"key\":\"{big}\",\"type\":\"string\"}}\n{{\"key\":1,\"type\":2}}\n");
        let (n, bad) = count_json_lines(&mut text.as_bytes(), OutputFormat::JsonLines).unwrap();
        assert_eq!((n, bad), (2, None));
        let text = format!("{{\"key\":\"{big}\"}}\n{{\"key\":1,\"type\":2}}\n");
        let (n, bad) = count_json_lines(&mut text.as_bytes(), OutputFormat::JsonLines).unwrap();
        assert_eq!((n, bad.unwrap().0), (2, 1));
    }
}
