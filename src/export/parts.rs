//! Writing an export directory: items into compressed parts of a target size, the
//! rejects, and at the end the manifests (see [`manifest`](super::manifest) for the
//! layout).
//!
//! Each part is written to `data/<name>.tmp` as items come (encoded straight into the
//! compressor, whose output is hashed with MD5 on its way to the file), then `fsync`ed
//! and renamed to `data/<name>`; then the state file (`_export-state.json`, the
//! completed parts and the caller's checkpoint) is replaced atomically. A writer
//! reopened on the directory after a crash keeps the parts the state lists, deletes the
//! rest (a `.tmp` part, a part renamed but not yet recorded), truncates the rejects file
//! to its recorded length and numbers on; the caller resumes from the checkpoint it
//! stored with the last completed part ([`PartWriter::checkpoint`]).
//!
//! Part names are `<exportId>-<shard>-<seq>.<ext>`: the export's id (by default
//! `<start ms, 14 digits>-<8 hex digits>`, DynamoDB's form; give the same id to every
//! shard of one export), the shard index (4 digits) and the part's sequence number in
//! the shard (6 digits), so they are unique across the shards of an export and stable
//! across a resume. (DynamoDB's part names are random ids.)

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::manifest::{
    self, DATA_DIR, MANIFEST_FILES, MANIFEST_SUMMARY, MANIFEST_VERSION, ManifestFileEntry,
    ManifestSummary, REJECTS_DIR, STARTED, STATE_FILE, Shard,
};
use crate::error::{Error, Result};

/// The default target size of a part: 128 MiB of uncompressed items.
pub const DEFAULT_PART_SIZE: u64 = 128 << 20;
/// The default gzip level: 2. Measured on DynamoDB JSON lines (zlib-rs, one core):
/// level 1 writes 59 MB/s but 47% of the input (zlib-rs's level 1 is its quick
/// strategy), level 2 46 MB/s at 36.7%, level 3 44 MB/s at 36.1%, level 6 34 MB/s at 36%.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;
/// The default zstd level: 1 (170 MB/s at 34.9% on the same lines; level 3 96 MB/s at
/// 35.4%).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// How parts are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (DynamoDB's own export format) at a level `0..=9`.
    Gzip(u32),
    /// zstd at a level `1..=22` (with a content checksum in each frame).
    Zstd(i32),
    /// Not compressed.
    None,
}

impl Compression {
    /// gzip at [`DEFAULT_GZIP_LEVEL`].
    pub fn gzip() -> Self {
        Compression::Gzip(DEFAULT_GZIP_LEVEL)
    }

    /// zstd at [`DEFAULT_ZSTD_LEVEL`].
    pub fn zstd() -> Self {
        Compression::Zstd(DEFAULT_ZSTD_LEVEL)
    }

    /// The name in the summary manifest: `GZIP`, `ZSTD`, `NONE`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip(_) => "GZIP",
            Compression::Zstd(_) => "ZSTD",
            Compression::None => "NONE",
        }
    }

    /// From a summary's name (`GZIP`, `ZSTD`, `NONE`; any case), at the default level.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "GZIP" | "GZ" => Ok(Self::gzip()),
            "ZSTD" | "ZST" => Ok(Self::zstd()),
            "NONE" => Ok(Compression::None),
            _ => Err(Error::InvalidArgument(format!(
                "unknown compression {name:?} (gzip, zstd, none)"
            ))),
        }
    }

    /// The file name suffix (`.gz`, `.zst`, nothing).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip(_) => ".gz",
            Compression::Zstd(_) => ".zst",
            Compression::None => "",
        }
    }

    fn check(self) -> Result<Self> {
        match self {
            Compression::Gzip(l) if l > 9 => Err(Error::InvalidArgument(format!(
                "gzip level {l}: must be 0 to 9"
            ))),
            Compression::Zstd(l) if !(1..=22).contains(&l) => Err(Error::InvalidArgument(format!(
                "zstd level {l}: must be 1 to 22"
            ))),
            other => Ok(other),
        }
    }
}

/// What the items of a part are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// DynamoDB JSON: one `{"Item": {...}}` object per line (DynamoDB's export format,
    /// what DynamoDB's import from S3 reads).
    DynamoDbJson,
    /// redstash's JSON Lines: one object per line with at least `key` and `type`.
    JsonLines,
    /// RESP: the commands that recreate each key, as sent to Redis (one item is one or
    /// more commands, written as given, no separator added).
    Resp,
}

impl OutputFormat {
    /// The name in the summary manifest: `DYNAMODB_JSON`, `JSON_LINES`, `RESP`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::DynamoDbJson => "DYNAMODB_JSON",
            OutputFormat::JsonLines => "JSON_LINES",
            OutputFormat::Resp => "RESP",
        }
    }

    /// From its name (`DYNAMODB_JSON`, `JSON_LINES`, `RESP`; any case).
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "DYNAMODB_JSON" => Ok(OutputFormat::DynamoDbJson),
            "JSON_LINES" | "JSONL" => Ok(OutputFormat::JsonLines),
            "RESP" => Ok(OutputFormat::Resp),
            _ => Err(Error::InvalidArgument(format!(
                "unknown output format {name:?} (DYNAMODB_JSON, JSON_LINES, RESP)"
            ))),
        }
    }

    /// The file name extension before the compression's (`.json`, `.resp`).
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::DynamoDbJson | OutputFormat::JsonLines => ".json",
            OutputFormat::Resp => ".resp",
        }
    }
}

/// How a [`PartWriter`] writes.
#[derive(Debug, Clone)]
pub struct PartWriterOptions {
    /// What the items are.
    pub format: OutputFormat,
    /// How parts are compressed (default gzip level [`DEFAULT_GZIP_LEVEL`]).
    pub compression: Compression,
    /// Uncompressed bytes per part: a part is closed before an item that would take it
    /// past this size (an item larger than it gets a part of its own). Default 128 MiB.
    pub part_size: u64,
    /// The export's id (letters, digits, `-`, `_`; at most 64): give every shard of one
    /// export the same. Default: `<start ms, 14 digits>-<8 hex digits>`.
    pub export_id: Option<String>,
    /// Which shard of the export this directory holds.
    pub shard: Shard,
    /// The source's description for the summary (`tableArn`, `source`), e.g. a Redis
    /// URL without its password.
    pub source: String,
    /// The bucket the directory is meant for (`s3Bucket`), if any.
    pub s3_bucket: Option<String>,
    /// The prefix in the bucket (`s3Prefix`), if any.
    pub s3_prefix: Option<String>,
}

impl PartWriterOptions {
    /// Options for `format` with the defaults: gzip at [`DEFAULT_GZIP_LEVEL`], 128 MiB parts, a new
    /// export id, one shard, source `redis`.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            compression: Compression::gzip(),
            part_size: DEFAULT_PART_SIZE,
            export_id: None,
            shard: Shard::WHOLE,
            source: "redis".to_owned(),
            s3_bucket: None,
            s3_prefix: None,
        }
    }
}

/// A completed part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// Its sequence number in the shard (from 0).
    pub seq: u64,
    /// Its path relative to the export directory (`data/<name>`).
    pub key: String,
    /// Items in it (lines; RESP: commands).
    pub item_count: u64,
    /// Keys in it (calls of `write_item`).
    pub key_count: u64,
    /// Bytes of items (uncompressed).
    pub uncompressed_bytes: u64,
    /// Bytes of the file.
    pub compressed_bytes: u64,
    /// The MD5 digest of the file, base64 (`md5Checksum`).
    pub md5_base64: String,
    /// The MD5 digest of the file, hex (`etag`).
    pub md5_hex: String,
}

impl PartInfo {
    /// Its line of `manifest-files.json`.
    pub fn manifest_entry(&self) -> ManifestFileEntry {
        ManifestFileEntry {
            item_count: self.item_count,
            md5_checksum: self.md5_base64.clone(),
            etag: self.md5_hex.clone(),
            data_file_s3_key: self.key.clone(),
        }
    }
}

/// What an export has written so far (kept in the state file after each part, and the
/// summary's counts at the end).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCounts {
    /// Items in the completed parts (lines; RESP: commands).
    pub items: u64,
    /// Keys in the completed parts (calls of `write_item`).
    pub keys: u64,
    /// Those keys by Redis type.
    pub by_type: BTreeMap<String, u64>,
    /// Uncompressed bytes of the completed parts.
    pub uncompressed_bytes: u64,
    /// File bytes of the completed parts.
    pub compressed_bytes: u64,
    /// Keys rejected (in the rejects file).
    pub rejected: u64,
    /// Keys gone when read.
    pub vanished: u64,
    /// Keys that changed while read.
    pub changed: u64,
}

/// A line of the rejects file.
#[derive(Serialize)]
struct RejectLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(rename = "keyBase64", skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(rename = "type")]
    redis_type: &'a str,
    reason: &'a str,
}

/// The state file: what a reopened writer keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    export_id: String,
    format: String,
    compression: String,
    shard: Shard,
    source: String,
    s3_bucket: Option<String>,
    s3_prefix: Option<String>,
    start_ms: u64,
    parts: Vec<PartInfo>,
    counts: ExportCounts,
    rejects_len: u64,
    checkpoint: Option<serde_json::Value>,
}

/// Counts bytes and hashes them with MD5 on their way to the file.
struct HashingWriter {
    inner: BufWriter<File>,
    md5: Md5,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.md5.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor of the open part.
enum Sink {
    Gzip(GzEncoder<HashingWriter>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter>),
    Plain(HashingWriter),
}

impl Sink {
    fn new(file: File, compression: Compression) -> Result<Self> {
        let hashing = HashingWriter {
            inner: BufWriter::with_capacity(256 << 10, file),
            md5: Md5::new(),
            bytes: 0,
        };
        Ok(match compression {
            Compression::Gzip(level) => {
                Sink::Gzip(GzEncoder::new(hashing, flate2::Compression::new(level)))
            }
            Compression::Zstd(level) => {
                let mut enc = zstd::stream::write::Encoder::new(hashing, level)?;
                enc.include_checksum(true)?;
                Sink::Zstd(enc)
            }
            Compression::None => Sink::Plain(hashing),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Gzip(w) => w.write_all(bytes),
            Sink::Zstd(w) => w.write_all(bytes),
            Sink::Plain(w) => w.write_all(bytes),
        }
    }

    /// Finish the stream, flush and `fsync` the file: its MD5 and size.
    fn finish(self) -> Result<([u8; 16], u64)> {
        let hashing = match self {
            Sink::Gzip(w) => w.finish()?,
            Sink::Zstd(w) => w.finish()?,
            Sink::Plain(w) => w,
        };
        let HashingWriter { inner, md5, bytes } = hashing;
        let file = inner.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        file.sync_all()?;
        Ok((md5.finalize().into(), bytes))
    }
}

/// The part being written.
struct OpenPart {
    seq: u64,
    name: String,
    sink: Sink,
    items: u64,
    keys: u64,
    bytes: u64,
    by_type: BTreeMap<String, u64>,
}

/// Writes an export directory: parts of items, the rejects file, the manifests.
///
/// ```no_run
/// # fn main() -> redstash::Result<()> {
/// use redstash::export::{OutputFormat, PartWriter, PartWriterOptions};
/// let mut w = PartWriter::open("out".as_ref(), PartWriterOptions::new(OutputFormat::JsonLines))?;
/// w.write_item(br#"{"key":"a","type":"string","value":"1"}"#, "string")?;
/// let summary = w.finish()?;
/// assert_eq!(summary.item_count, 1);
/// # Ok(()) }
/// ```
pub struct PartWriter {
    dir: PathBuf,
    options: PartWriterOptions,
    export_id: String,
    start_ms: u64,
    parts: Vec<PartInfo>,
    counts: ExportCounts,
    next_seq: u64,
    open: Option<OpenPart>,
    rejects: BufWriter<File>,
    rejects_key: String,
    rejects_len: u64,
    checkpoint: Option<serde_json::Value>,
    resumed: bool,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("dir", &self.dir)
            .field("export_id", &self.export_id)
            .field("parts", &self.parts.len())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

fn check_export_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::InvalidArgument(format!(
            "export id {id:?}: 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// A new export id: `<ms, 14 digits>-<8 hex digits>`.
fn new_export_id(start_ms: u64, dir: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{nanos}/{}/{}", std::process::id(), dir.display());
    let h = xxhash_rust::xxh3::xxh3_64(seed.as_bytes());
    format!("{start_ms:014}-{:08x}", h as u32)
}

impl PartWriter {
    /// Open an export directory (created if needed): a new export, or, when the
    /// directory holds the state of an unfinished one, that export resumed (its format,
    /// compression and shard must be `options`'; its id and start time are kept). A
    /// directory with a finished export (a summary manifest) or with files of another
    /// kind in `data/` is refused.
    pub fn open(dir: &Path, options: PartWriterOptions) -> Result<Self> {
        let compression = options.compression.check()?;
        let shard = options.shard.check()?;
        if options.part_size == 0 {
            return Err(Error::InvalidArgument("part size 0".into()));
        }
        if let Some(id) = &options.export_id {
            check_export_id(id)?;
        }
        fs::create_dir_all(dir.join(DATA_DIR))?;
        fs::create_dir_all(dir.join(REJECTS_DIR))?;
        if dir.join(MANIFEST_SUMMARY).exists() {
            return Err(Error::InvalidArgument(format!(
                "{}: the export there is finished ({MANIFEST_SUMMARY} exists)",
                dir.display()
            )));
        }
        let state_path = dir.join(STATE_FILE);
        let state: Option<State> = if state_path.exists() {
            Some(manifest::read_small_json(&state_path, "export state")?)
        } else {
            None
        };
        let resumed = state.is_some();
        let (export_id, start_ms, parts, counts, rejects_len, checkpoint) = match state {
            Some(s) => {
                if s.format != options.format.name()
                    || s.compression != compression.name()
                    || s.shard != shard
                    || options
                        .export_id
                        .as_ref()
                        .is_some_and(|id| *id != s.export_id)
                {
                    return Err(Error::InvalidArgument(format!(
                        "{}: the unfinished export there is {} {} shard {}/{} id {}, not what was asked",
                        dir.display(),
                        s.format,
                        s.compression,
                        s.shard.index,
                        s.shard.count,
                        s.export_id
                    )));
                }
                check_export_id(&s.export_id)?;
                (
                    s.export_id,
                    s.start_ms,
                    s.parts,
                    s.counts,
                    s.rejects_len,
                    s.checkpoint,
                )
            }
            None => {
                let start_ms = manifest::now_ms();
                let id = options
                    .export_id
                    .clone()
                    .unwrap_or_else(|| new_export_id(start_ms, dir));
                (id, start_ms, Vec::new(), ExportCounts::default(), 0, None)
            }
        };
        let prefix = format!("{export_id}-{:04}-", shard.index);
        // Keep the listed parts; delete what a crashed run left of this shard.
        let listed: std::collections::HashSet<String> =
            parts.iter().map(|p| p.key.clone()).collect();
        for entry in fs::read_dir(dir.join(DATA_DIR))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("{DATA_DIR}/{name}");
            if listed.contains(&key) {
                continue;
            }
            if name.starts_with(&prefix) {
                fs::remove_file(entry.path())?;
            } else {
                return Err(Error::InvalidArgument(format!(
                    "{}: {key} is not a part of this export",
                    dir.display()
                )));
            }
        }
        for p in &parts {
            if !dir.join(&p.key).is_file() {
                return Err(Error::InvalidArgument(format!(
                    "{}: completed part {} is missing",
                    dir.display(),
                    p.key
                )));
            }
        }
        let next_seq = parts.iter().map(|p| p.seq + 1).max().unwrap_or(0);
        let rejects_key = format!("{REJECTS_DIR}/{export_id}-{:04}.jsonl", shard.index);
        let rejects_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(&rejects_key))?;
        rejects_file.set_len(rejects_len)?;
        let mut rejects_file = rejects_file;
        io::Seek::seek(&mut rejects_file, io::SeekFrom::Start(rejects_len))?;
        if !resumed {
            manifest::write_atomic(
                &dir.join(STARTED),
                format!("{}\n", manifest::iso8601(start_ms)).as_bytes(),
            )?;
        }
        let mut w = PartWriter {
            dir: dir.to_owned(),
            options: PartWriterOptions {
                compression,
                shard,
                ..options
            },
            export_id,
            start_ms,
            parts,
            counts,
            next_seq,
            open: None,
            rejects: BufWriter::new(rejects_file),
            rejects_key,
            rejects_len,
            checkpoint,
            resumed,
        };
        if !resumed {
            w.save_state()?;
        }
        Ok(w)
    }

    /// The export's id.
    pub fn export_id(&self) -> &str {
        &self.export_id
    }

    /// Whether this writer continued an unfinished export.
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// The completed parts (those a reopened writer keeps), in order.
    pub fn completed_parts(&self) -> &[PartInfo] {
        &self.parts
    }

    /// The counts of the completed parts (and the rejected, vanished and changed keys
    /// counted so far).
    pub fn counts(&self) -> &ExportCounts {
        &self.counts
    }

    /// The checkpoint stored with the last completed part (see
    /// [`set_checkpoint`](Self::set_checkpoint)): on a resumed writer, where the caller
    /// continues.
    pub fn checkpoint(&self) -> Option<&serde_json::Value> {
        self.checkpoint.as_ref()
    }

    /// Set the caller's checkpoint (e.g. a scan cursor): it is stored in the state file
    /// with the next completed part, so it always describes exactly the items of the
    /// completed parts. Set it after writing the items it covers and before the part is
    /// closed (or close it with [`complete_part`](Self::complete_part)).
    pub fn set_checkpoint(&mut self, checkpoint: serde_json::Value) {
        self.checkpoint = Some(checkpoint);
    }

    /// Items in the open part.
    pub fn open_part_items(&self) -> u64 {
        self.open.as_ref().map_or(0, |p| p.items)
    }

    /// Append one item. For the JSON formats, `line` is one JSON object without a line
    /// break (the writer adds `\n`); for RESP, one or more complete commands, written
    /// as they are. `redis_type` is counted in the summary (`itemCountByType`).
    pub fn write_item(&mut self, line: &[u8], redis_type: &str) -> Result<()> {
        let json = self.options.format != OutputFormat::Resp;
        if json && line.contains(&b'\n') {
            return Err(Error::InvalidArgument(
                "an item of a JSON export holds a line break".into(),
            ));
        }
        let items = if json {
            1
        } else {
            match super::verify::count_resp_commands(&mut &line[..]) {
                Ok(0) => {
                    return Err(Error::InvalidArgument(
                        "an item of a RESP export holds no command".into(),
                    ));
                }
                Ok(n) => n,
                Err(e) => {
                    return Err(Error::InvalidArgument(format!(
                        "an item of a RESP export is not complete RESP commands: {e}"
                    )));
                }
            }
        };
        let len = line.len() as u64 + u64::from(json);
        if let Some(p) = &self.open
            && p.keys > 0
            && p.bytes + len > self.options.part_size
        {
            self.complete_part()?;
        }
        if self.open.is_none() {
            self.open_part()?;
        }
        let Some(p) = self.open.as_mut() else {
            return Err(Error::InvalidArgument("no open part".into()));
        };
        p.sink.write_all(line)?;
        if json {
            p.sink.write_all(b"\n")?;
        }
        p.items += items;
        p.keys += 1;
        p.bytes += len;
        match p.by_type.get_mut(redis_type) {
            Some(n) => *n += 1,
            None => {
                p.by_type.insert(redis_type.to_owned(), 1);
            }
        }
        Ok(())
    }

    /// Record a key that could not be exported: a line of the rejects file
    /// (`{"key": ..., "type": ..., "reason": ...}`, with `key` as UTF-8 when it is,
    /// else `keyBase64`).
    pub fn reject(&mut self, key: &[u8], redis_type: &str, reason: &str) -> Result<()> {
        let utf8 = std::str::from_utf8(key).ok();
        let line = RejectLine {
            key: utf8,
            key_base64: match utf8 {
                Some(_) => None,
                None => Some(base64::engine::general_purpose::STANDARD.encode(key)),
            },
            redis_type,
            reason,
        };
        let mut line = serde_json::to_vec(&line)?;
        line.push(b'\n');
        self.rejects.write_all(&line)?;
        self.counts.rejected += 1;
        Ok(())
    }

    /// Count keys the scan listed that were gone when read.
    pub fn add_vanished(&mut self, n: u64) {
        self.counts.vanished += n;
    }

    /// Count keys that changed while they were read.
    pub fn add_changed(&mut self, n: u64) {
        self.counts.changed += n;
    }

    fn open_part(&mut self) -> Result<()> {
        let seq = self.next_seq;
        let name = format!(
            "{}-{:04}-{seq:06}{}{}",
            self.export_id,
            self.options.shard.index,
            self.options.format.extension(),
            self.options.compression.suffix()
        );
        let tmp = self.dir.join(DATA_DIR).join(format!("{name}.tmp"));
        let file = File::create(&tmp)?;
        self.open = Some(OpenPart {
            seq,
            name,
            sink: Sink::new(file, self.options.compression)?,
            items: 0,
            keys: 0,
            bytes: 0,
            by_type: BTreeMap::new(),
        });
        self.next_seq += 1;
        Ok(())
    }

    /// Close the open part (if it has items): finish its compression, `fsync` it, rename
    /// it to its name, and record it (and the checkpoint) in the state file. Returns it.
    /// The writer closes parts itself at the target size; call this to line a
    /// checkpoint up with a part boundary.
    pub fn complete_part(&mut self) -> Result<Option<&PartInfo>> {
        let Some(p) = self.open.take() else {
            return Ok(None);
        };
        let OpenPart {
            seq,
            name,
            sink,
            items,
            keys,
            bytes,
            by_type,
        } = p;
        let (digest, compressed) = sink.finish()?;
        let data = self.dir.join(DATA_DIR);
        let tmp = data.join(format!("{name}.tmp"));
        if keys == 0 {
            fs::remove_file(&tmp)?;
            return Ok(None);
        }
        let path = data.join(&name);
        fs::rename(&tmp, &path)?;
        manifest::sync_parent(&path);
        let info = PartInfo {
            seq,
            key: format!("{DATA_DIR}/{name}"),
            item_count: items,
            key_count: keys,
            uncompressed_bytes: bytes,
            compressed_bytes: compressed,
            md5_base64: base64::engine::general_purpose::STANDARD.encode(digest),
            md5_hex: digest.iter().map(|b| format!("{b:02x}")).collect(),
        };
        self.counts.items += items;
        self.counts.keys += keys;
        self.counts.uncompressed_bytes += bytes;
        self.counts.compressed_bytes += compressed;
        for (t, n) in by_type {
            *self.counts.by_type.entry(t).or_insert(0) += n;
        }
        self.parts.push(info);
        self.save_state()?;
        Ok(self.parts.last())
    }

    /// Flush the rejects file and replace the state file.
    fn save_state(&mut self) -> Result<()> {
        self.rejects.flush()?;
        self.rejects.get_ref().sync_data()?;
        self.rejects_len = self.rejects.get_ref().metadata()?.len();
        let state = State {
            version: 1,
            export_id: self.export_id.clone(),
            format: self.options.format.name().to_owned(),
            compression: self.options.compression.name().to_owned(),
            shard: self.options.shard,
            source: self.options.source.clone(),
            s3_bucket: self.options.s3_bucket.clone(),
            s3_prefix: self.options.s3_prefix.clone(),
            start_ms: self.start_ms,
            parts: self.parts.clone(),
            counts: self.counts.clone(),
            rejects_len: self.rejects_len,
            checkpoint: self.checkpoint.clone(),
        };
        manifest::write_atomic(&self.dir.join(STATE_FILE), &serde_json::to_vec(&state)?)
    }

    /// Close the last part, write `manifest-files.json` then `manifest-summary.json`
    /// (each atomically), and remove the state file. Returns the summary.
    pub fn finish(mut self) -> Result<ManifestSummary> {
        self.complete_part()?;
        self.save_state()?;
        let entries: Vec<ManifestFileEntry> =
            self.parts.iter().map(PartInfo::manifest_entry).collect();
        manifest::write_atomic(
            &self.dir.join(MANIFEST_FILES),
            &manifest::files_manifest_text(&entries)?,
        )?;
        let c = &self.counts;
        let summary = ManifestSummary {
            version: MANIFEST_VERSION.to_owned(),
            export_arn: format!("redstash:export/{}", self.export_id),
            start_time: manifest::iso8601(self.start_ms),
            end_time: manifest::iso8601(manifest::now_ms()),
            table_arn: self.options.source.clone(),
            export_time: manifest::iso8601(self.start_ms),
            s3_bucket: self.options.s3_bucket.clone(),
            s3_prefix: self.options.s3_prefix.clone(),
            s3_sse_algorithm: None,
            s3_sse_kms_key_id: None,
            manifest_files_s3_key: MANIFEST_FILES.to_owned(),
            billed_size_bytes: c.uncompressed_bytes,
            item_count: c.items,
            key_count: c.keys,
            output_format: self.options.format.name().to_owned(),
            export_type: "FULL_EXPORT".to_owned(),
            export_id: self.export_id.clone(),
            shard: self.options.shard,
            merged_shards: 1,
            source: self.options.source.clone(),
            compression: self.options.compression.name().to_owned(),
            part_count: self.parts.len() as u64,
            compressed_size_bytes: c.compressed_bytes,
            item_count_by_type: c.by_type.clone(),
            rejected: c.rejected,
            vanished: c.vanished,
            changed: c.changed,
            rejects_s3_keys: vec![self.rejects_key.clone()],
            redstash_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let mut text = serde_json::to_vec_pretty(&summary)?;
        text.push(b'\n');
        manifest::write_atomic(&self.dir.join(MANIFEST_SUMMARY), &text)?;
        fs::remove_file(self.dir.join(STATE_FILE))?;
        manifest::sync_parent(&self.dir.join(STATE_FILE));
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(c: Compression, part_size: u64) -> PartWriterOptions {
        PartWriterOptions {
            compression: c,
            part_size,
            export_id: Some("01700000000000-abcdef01".into()),
            ..PartWriterOptions::new(OutputFormat::JsonLines)
        }
    }

    #[test]
    fn rotates_at_the_part_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PartWriter::open(dir.path(), opts(Compression::None, 100)).unwrap();
        for i in 0..10 {
            // 40 bytes + \n
            let line = format!("{{\"key\":\"k{i:03}\",\"type\":\"string\",\"v\":\"0123456\"}}");
            assert_eq!(line.len(), 44);
            w.write_item(line.as_bytes(), "string").unwrap();
        }
        let s = w.finish().unwrap();
        assert_eq!(s.item_count, 10);
        assert_eq!(s.part_count, 5);
        assert_eq!(s.billed_size_bytes, 450);
        let first = fs::read(
            dir.path()
                .join("data/01700000000000-abcdef01-0000-000000.json"),
        )
        .unwrap();
        assert_eq!(first.len(), 90);
        assert!(!dir.path().join(STATE_FILE).exists());
        assert!(dir.path().join(STARTED).exists());
    }

    #[test]
    fn md5_is_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PartWriter::open(dir.path(), opts(Compression::gzip(), 1 << 20)).unwrap();
        w.write_item(br#"{"key":"a","type":"string"}"#, "string")
            .unwrap();
        let info = w.complete_part().unwrap().unwrap().clone();
        let bytes = fs::read(dir.path().join(&info.key)).unwrap();
        let digest: [u8; 16] = Md5::digest(&bytes).into();
        assert_eq!(
            info.md5_base64,
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert_eq!(info.compressed_bytes, bytes.len() as u64);
    }

    #[test]
    fn refuses_line_breaks_and_bad_options() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PartWriter::open(dir.path(), opts(Compression::None, 100)).unwrap();
        assert!(w.write_item(b"{}\n{}", "string").is_err());
        let bad = PartWriterOptions {
            export_id: Some("../x".into()),
            ..opts(Compression::None, 100)
        };
        assert!(PartWriter::open(tempfile::tempdir().unwrap().path(), bad).is_err());
        let bad = opts(Compression::Gzip(10), 100);
        assert!(PartWriter::open(tempfile::tempdir().unwrap().path(), bad).is_err());
    }

    #[test]
    fn rejects_are_counted_and_truncated_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PartWriter::open(dir.path(), opts(Compression::None, 1 << 20)).unwrap();
        w.reject(b"good", "string", "too large").unwrap();
        w.write_item(br#"{"key":"a","type":"string"}"#, "string")
            .unwrap();
        w.complete_part().unwrap();
        w.reject(&[0xff, 0xfe], "hash", "lost").unwrap();
        drop(w);
        let w = PartWriter::open(dir.path(), opts(Compression::None, 1 << 20)).unwrap();
        assert!(w.is_resumed());
        assert_eq!(w.counts().rejected, 1);
        let s = w.finish().unwrap();
        assert_eq!(s.rejected, 1);
        let text = fs::read_to_string(dir.path().join(&s.rejects_s3_keys[0])).unwrap();
        assert_eq!(
            text,
            "{\"key\":\"good\",\"type\":\"string\",\"reason\":\"too large\"}\n"
        );
    }
}
