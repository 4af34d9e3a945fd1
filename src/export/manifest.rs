//! The export directory's manifests, in the field names of DynamoDB's export to S3.
//!
//! An export directory holds (DynamoDB's layout under `AWSDynamoDB/<ExportId>/`):
//!
//! ```text
//! <dir>/_started                  the start time (ISO 8601), written first
//! <dir>/data/<exportId>-<shard>-<seq>.<ext>   the parts (ext: json.gz, json.zst, json,
//!                                 resp.gz, resp.zst, resp)
//! <dir>/rejects/<exportId>-<shard>.jsonl      the keys that could not be exported
//! <dir>/manifest-files.json       one JSON object per line per part
//! <dir>/manifest-summary.json     the export's summary
//! <dir>/_export-state.json        while the export runs only: the completed parts
//! ```
//!
//! A line of `manifest-files.json` is a [`ManifestFileEntry`]; `manifest-summary.json`
//! is a [`ManifestSummary`]. Paths in them (`dataFileS3Key`, `manifestFilesS3Key`,
//! `rejectsS3Key`) are relative to the export directory (DynamoDB's are S3 keys that
//! start with the export prefix), always with `/` separators.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Origin, Result, ValueProblem};

/// The `version` of the summary manifest (DynamoDB's).
pub const MANIFEST_VERSION: &str = "2020-06-30";
/// The name of the files manifest in an export directory.
pub const MANIFEST_FILES: &str = "manifest-files.json";
/// The name of the summary manifest in an export directory.
pub const MANIFEST_SUMMARY: &str = "manifest-summary.json";
/// The marker written when an export starts (DynamoDB writes an empty one; redstash's
/// holds the start time).
pub const STARTED: &str = "_started";
/// The state of an export that has not finished (the completed parts), replaced
/// atomically after each part and removed by `finish`.
pub const STATE_FILE: &str = "_export-state.json";
/// The folder of the parts.
pub const DATA_DIR: &str = "data";
/// The folder of the rejects files.
pub const REJECTS_DIR: &str = "rejects";

/// The longest line of `manifest-files.json` read back (1 MiB): a longer one is an
/// error, not an allocation.
pub const MAX_MANIFEST_LINE: usize = 1 << 20;
/// The most parts a files manifest may list (10 million).
pub const MAX_MANIFEST_PARTS: usize = 10_000_000;
/// The largest summary manifest or state file read back (64 MiB: the state file lists
/// every completed part).
pub const MAX_SUMMARY_BYTES: u64 = 64 << 20;

/// One line of `manifest-files.json`: one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFileEntry {
    /// Items (lines, or RESP commands) in the part.
    #[serde(rename = "itemCount")]
    pub item_count: u64,
    /// The base64 MD5 digest of the part file as stored (its compressed bytes): what
    /// DynamoDB's manifest holds, and S3's `Content-MD5` of the object.
    #[serde(rename = "md5Checksum")]
    pub md5_checksum: String,
    /// The hex MD5 digest of the part file: the S3 ETag of the object when it is
    /// uploaded in one `PutObject` (a multipart upload has another ETag).
    pub etag: String,
    /// The part's path relative to the export directory (`data/...`).
    #[serde(rename = "dataFileS3Key")]
    pub data_file_s3_key: String,
}

/// Which shard of an export a directory holds: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, in `0..count`.
    pub index: u32,
    /// How many shards the export has.
    pub count: u32,
}

impl Shard {
    /// The whole export in one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Check `index < count`.
    pub fn check(self) -> Result<Self> {
        if self.count == 0 || self.index >= self.count {
            return Err(Error::InvalidArgument(format!(
                "shard {}/{}: the index must be below the count",
                self.index, self.count
            )));
        }
        Ok(self)
    }
}

impl Default for Shard {
    fn default() -> Self {
        Self::WHOLE
    }
}

/// `manifest-summary.json`: DynamoDB's summary fields, then redstash's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestSummary {
    /// `2020-06-30`.
    pub version: String,
    /// `redstash:export/<exportId>` (DynamoDB: the export's ARN).
    #[serde(rename = "exportArn")]
    pub export_arn: String,
    /// When the export started (ISO 8601, UTC, milliseconds).
    #[serde(rename = "startTime")]
    pub start_time: String,
    /// When it finished.
    #[serde(rename = "endTime")]
    pub end_time: String,
    /// The source's description (DynamoDB: the table's ARN), e.g. `redis://host:6379/0`.
    #[serde(rename = "tableArn")]
    pub table_arn: String,
    /// The point in time of the data: the start time (a Redis `SCAN` is not a snapshot;
    /// see `changed` and `vanished`).
    #[serde(rename = "exportTime")]
    pub export_time: String,
    /// The bucket the directory is meant for, if given.
    #[serde(rename = "s3Bucket")]
    pub s3_bucket: Option<String>,
    /// The prefix in the bucket, if given.
    #[serde(rename = "s3Prefix")]
    pub s3_prefix: Option<String>,
    /// Always `null` (DynamoDB's server-side encryption setting).
    #[serde(rename = "s3SseAlgorithm")]
    pub s3_sse_algorithm: Option<String>,
    /// Always `null`.
    #[serde(rename = "s3SseKmsKeyId")]
    pub s3_sse_kms_key_id: Option<String>,
    /// `manifest-files.json` (relative to the export directory).
    #[serde(rename = "manifestFilesS3Key")]
    pub manifest_files_s3_key: String,
    /// The uncompressed bytes of all parts.
    #[serde(rename = "billedSizeBytes")]
    pub billed_size_bytes: u64,
    /// The items of all parts (lines; RESP: commands).
    #[serde(rename = "itemCount")]
    pub item_count: u64,
    /// redstash: the keys exported (the sum of `itemCountByType`; for the JSON formats,
    /// `itemCount`, one line per key; for RESP, a key may take several commands).
    #[serde(rename = "keyCount")]
    pub key_count: u64,
    /// `DYNAMODB_JSON`, `JSON_LINES` or `RESP`.
    #[serde(rename = "outputFormat")]
    pub output_format: String,
    /// `FULL_EXPORT`.
    #[serde(rename = "exportType")]
    pub export_type: String,
    /// redstash: the export's id (the part names start with it).
    #[serde(rename = "exportId")]
    pub export_id: String,
    /// redstash: which shard of the export this directory holds (a merged directory:
    /// `{index: 0, count: 1}`).
    pub shard: Shard,
    /// redstash: how many shards were merged into this directory (`1` when not merged).
    #[serde(rename = "mergedShards", default = "one")]
    pub merged_shards: u32,
    /// redstash: the source's description (as `tableArn`).
    pub source: String,
    /// redstash: `GZIP`, `ZSTD` or `NONE`.
    pub compression: String,
    /// redstash: how many parts (lines of the files manifest).
    #[serde(rename = "partCount")]
    pub part_count: u64,
    /// redstash: the bytes of all part files as stored.
    #[serde(rename = "compressedSizeBytes")]
    pub compressed_size_bytes: u64,
    /// redstash: items by Redis type (`string`, `hash`, ...).
    #[serde(rename = "itemCountByType")]
    pub item_count_by_type: BTreeMap<String, u64>,
    /// redstash: keys that could not be exported (listed in the rejects files).
    pub rejected: u64,
    /// redstash: keys the scan listed that were gone when read.
    pub vanished: u64,
    /// redstash: keys that changed while they were read (exported as read last).
    pub changed: u64,
    /// redstash: the rejects files, relative to the export directory.
    #[serde(rename = "rejectsS3Keys", default)]
    pub rejects_s3_keys: Vec<String>,
    /// redstash: the version of redstash that wrote the export.
    #[serde(rename = "redstashVersion")]
    pub redstash_version: String,
}

fn one() -> u32 {
    1
}

/// A data error about a manifest (or a part) read back.
pub(crate) fn corrupt(format: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidValue {
        origin: Origin::Input,
        problem: ValueProblem::Corrupt {
            format,
            reason: reason.into(),
        },
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` since the Unix epoch as ISO 8601 UTC with milliseconds
/// (`2020-11-04T07:28:34.028Z`, DynamoDB's form).
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Write `bytes` to `path` atomically: a temporary file beside it, `fsync`ed, renamed
/// over `path`, then the directory `fsync`ed (best effort).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path);
    Ok(())
}

/// `fsync` the directory holding `path` (best effort: some file systems refuse it), so
/// that a rename into it is durable.
pub(crate) fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(d) = File::open(parent)
    {
        let _ = d.sync_all();
    }
}

/// Read a small JSON file (a summary, the state), refusing one over `MAX_SUMMARY_BYTES`.
pub(crate) fn read_small_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let f = File::open(path)?;
    let mut bytes = Vec::new();
    f.take(MAX_SUMMARY_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SUMMARY_BYTES {
        return Err(corrupt(
            what,
            format!("{}: larger than {MAX_SUMMARY_BYTES} bytes", path.display()),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| corrupt(what, format!("{}: {e}", path.display())))
}

/// Read the summary manifest of an export directory.
pub fn read_summary(dir: &Path) -> Result<ManifestSummary> {
    read_small_json(&dir.join(MANIFEST_SUMMARY), "manifest-summary.json")
}

/// Read the files manifest of an export directory, line by line: a line longer than
/// [`MAX_MANIFEST_LINE`], more than [`MAX_MANIFEST_PARTS`] lines, or a line that is not
/// a [`ManifestFileEntry`] is an error. Empty lines are skipped.
pub fn read_files_manifest(dir: &Path) -> Result<Vec<ManifestFileEntry>> {
    let path = dir.join(MANIFEST_FILES);
    let mut reader = BufReader::new(File::open(&path)?);
    let mut entries = Vec::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        let n = (&mut reader)
            .take(MAX_MANIFEST_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && n > MAX_MANIFEST_LINE {
            return Err(corrupt(
                "manifest-files.json",
                format!("line {number} is longer than {MAX_MANIFEST_LINE} bytes"),
            ));
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if entries.len() >= MAX_MANIFEST_PARTS {
            return Err(corrupt(
                "manifest-files.json",
                format!("more than {MAX_MANIFEST_PARTS} parts"),
            ));
        }
        let entry: ManifestFileEntry = serde_json::from_slice(text)
            .map_err(|e| corrupt("manifest-files.json", format!("line {number}: {e}")))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// The files manifest's text for `entries` (one JSON object per line).
pub(crate) fn files_manifest_text(entries: &[ManifestFileEntry]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.len() * 160);
    for e in entries {
        serde_json::to_writer(&mut out, e)?;
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_604_474_914_028), "2020-11-04T07:28:34.028Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn files_manifest_rejects_long_lines_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let long = vec![b'x'; MAX_MANIFEST_LINE + 10];
        std::fs::write(dir.path().join(MANIFEST_FILES), &long).unwrap();
        let e = read_files_manifest(dir.path()).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
        std::fs::write(dir.path().join(MANIFEST_FILES), b"{\"itemCount\": -1}\n").unwrap();
        let e = read_files_manifest(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn shard_check() {
        assert!(Shard { index: 0, count: 0 }.check().is_err());
        assert!(Shard { index: 3, count: 3 }.check().is_err());
        assert!(Shard { index: 2, count: 3 }.check().is_ok());
    }
}
