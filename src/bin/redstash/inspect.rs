//! `redstash inspect KEY`: which redstash value a key holds, and what is in it.
//!
//! Recognised: arrays (`.npy`, plain or lz4/zlib/zstd), chunked arrays (the manifest at
//! the key, the chunks beside it), batches (a hash of arrays), feature vectors (both
//! layouts) and the feature view registry, table batches, table manifests and
//! split-in-progress markers, and arrays in the Python recipe's two-key layout.

use std::fmt::Display;
use std::io::Cursor;

use clap::Args;
use redis::Connection as RedisConnection;
use redstash::codec::arrow::decode_stream;
use redstash::codec::arrow_file::IpcInput;
use redstash::codec::sniff::ChunkedValue;
use redstash::codec::{self, Format, Limits};
use redstash::store::table::{GENERATION_METADATA, MANIFEST_SUFFIX, PENDING_SUFFIX};
use redstash::{ArrayStore, DType, DataMetaStore, FeatureStore, Layout, TableStore};
use serde_json::{Value as Json, json};

use crate::{Cli, Connection, Fail, connect, mb, report};

/// `redstash inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The Redis key.
    pub key: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// What was found at a key: JSON fields and text lines, in the order they are shown.
struct Description {
    fields: Vec<(&'static str, Json, Option<String>)>,
}

impl Description {
    fn new(kind: &str) -> Self {
        let mut d = Description { fields: Vec::new() };
        d.show("kind", kind, kind);
        d
    }

    /// A field shown in JSON and text.
    fn show(&mut self, name: &'static str, json: impl Into<Json>, text: impl Display) {
        self.fields
            .push((name, json.into(), Some(text.to_string())));
    }

    /// A field shown in JSON only.
    fn json(&mut self, name: &'static str, json: impl Into<Json>) {
        self.fields.push((name, json.into(), None));
    }

    /// Stored and raw bytes, with their ratio.
    fn sizes(&mut self, stored: u64, raw: u64, raw_label: &str) {
        self.show("stored_bytes", stored, format!("{stored} bytes"));
        self.show(
            "raw_bytes",
            raw,
            format!(
                "{raw} bytes {raw_label}(ratio {:.2})",
                raw as f64 / stored.max(1) as f64
            ),
        );
    }

    fn to_json(&self, key: &str) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("key".into(), key.into());
        for (name, v, _) in &self.fields {
            m.insert((*name).into(), v.clone());
        }
        Json::Object(m)
    }

    fn to_text(&self, key: &str) -> String {
        let mut out = format!("{:<14}{key}", "key:");
        for (name, _, text) in &self.fields {
            if let Some(t) = text {
                let label = match *name {
                    "ttl_seconds" => "ttl",
                    "written_at_ms" => "written at",
                    "updated_at" => "updated at",
                    other => other.trim_end_matches("_bytes"),
                };
                out.push_str(&format!("\n{:<14}{t}", format!("{label}:")));
            }
        }
        out
    }
}

/// `redstash inspect KEY`.
pub fn inspect(cli: &Cli, a: &InspectArgs) -> Result<(), Fail> {
    let key = a.key.as_str();
    let mut con = connect(&a.connection)?;
    let kind: String = redis::cmd("TYPE").arg(key).query(&mut con)?;
    let mut d = match kind.as_str() {
        "none" => return Err(Fail(3, format!("key {key:?} not found"))),
        "string" => string_value(&mut con, key)?,
        "hash" => hash_value(&mut con, key)?,
        other => {
            return Err(Fail(
                1,
                format!("key {key:?} holds a Redis {other}, not a redstash value"),
            ));
        }
    };
    let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con)?;
    let ttl = (pttl >= 0).then_some(pttl as f64 / 1000.0);
    d.show(
        "ttl_seconds",
        ttl,
        ttl.map_or_else(|| "none".into(), |t| format!("{t:.3} s")),
    );
    report(cli, d.to_json(key), d.to_text(key));
    Ok(())
}

/// A string key: an array, a chunked array, a table batch or manifest, a feature
/// vector, or one key of the recipe layout.
fn string_value(con: &mut RedisConnection, key: &str) -> Result<Description, Fail> {
    let raw: Vec<u8> = redis::cmd("GET").arg(key).query(con)?;
    if let Some(prefix) = strip_key_suffix(key, MANIFEST_SUFFIX) {
        return table_manifest(con, key, prefix);
    }
    if let Some(prefix) = strip_key_suffix(key, PENDING_SUFFIX) {
        let mut d = Description::new("table split in progress");
        d.show("table", prefix, prefix);
        d.show(
            "generation",
            String::from_utf8_lossy(&raw).into_owned(),
            String::from_utf8_lossy(&raw),
        );
        return Ok(d);
    }
    match Format::sniff(&raw) {
        Format::Npy | Format::Lz4Frame | Format::Zstd => array(&raw),
        Format::ChunkManifest => chunked_array(con, key, &raw),
        Format::ArrowIpc => table_batch(key, raw),
        // A feature vector starts with its timestamp, which may look like a zlib
        // header: the registry decides first.
        _ => {
            if let Some(d) = feature_vector(con, key, &raw)? {
                Ok(d)
            } else if let Some(d) = recipe_array(con, key)? {
                Ok(d)
            } else if Format::sniff(&raw) == Format::Zlib {
                array(&raw)
            } else {
                Err(Fail(
                    1,
                    format!(
                        "key {key:?} holds {} bytes that are not a redstash value (no known format, no feature view)",
                        raw.len()
                    ),
                ))
            }
        }
    }
}

/// `PREFIX` of a key `PREFIX:SUFFIX`.
fn strip_key_suffix<'k>(key: &'k str, suffix: &str) -> Option<&'k str> {
    key.strip_suffix(suffix)?.strip_suffix(':')
}

/// An array value (`.npy`, possibly compressed).
fn array(raw: &[u8]) -> Result<Description, Fail> {
    let i = codec::inspect(raw, &Limits::default())?;
    let layers: Vec<&str> = i.layers.iter().map(|f| f.name()).collect();
    let mut d = Description::new("array");
    d.show("format", layers.join("+"), layers.join("+"));
    describe_array(&mut d, i.dtype, &i.shape, i.order);
    d.sizes(raw.len() as u64, i.raw_len as u64, "as .npy ");
    Ok(d)
}

fn describe_array(d: &mut Description, dtype: DType, shape: &[usize], order: redstash::Order) {
    d.show(
        "dtype",
        dtype.name(),
        format!("{dtype} ({})", dtype.descr()),
    );
    d.json("descr", dtype.descr());
    d.show("shape", shape, format!("{shape:?}"));
    d.show("order", format!("{order:?}"), format!("{order:?}"));
}

/// A chunked array: the manifest at the key, the chunks beside it; the stored size is
/// the manifest's and the chunks'.
fn chunked_array(con: &mut RedisConnection, key: &str, raw: &[u8]) -> Result<Description, Fail> {
    let m = ChunkedValue::read(raw).ok_or_else(|| {
        Fail(
            1,
            format!(
                "key {key:?}: a chunk manifest of {} bytes (expected 36 or 44)",
                raw.len()
            ),
        )
    })?;
    let a = ArrayStore::new("")
        .get(con, key)?
        .ok_or_else(|| Fail(3, format!("key {key:?} vanished")))?;
    let header = codec::npy::header_len(&a.as_array_ref());
    let mut d = Description::new("chunked array");
    d.show(
        "format",
        "chunked",
        format!(
            "chunked: {} chunks of {} bytes{}",
            m.chunks,
            m.chunk_len,
            if m.checksummed { ", checksummed" } else { "" }
        ),
    );
    d.json("chunks", m.chunks);
    d.json("chunk_bytes", m.chunk_len);
    describe_array(&mut d, a.dtype(), a.shape(), a.order());
    let stored = (raw.len() as u64).saturating_add(m.total_len);
    d.sizes(
        stored,
        (header as u64).saturating_add(a.nbytes() as u64),
        "as .npy ",
    );
    Ok(d)
}

/// A table batch: one Arrow IPC stream of a record batch at `PREFIX:{part=N}:batch=M`.
fn table_batch(key: &str, raw: Vec<u8>) -> Result<Description, Fail> {
    let limits = Limits::default();
    let stored = raw.len() as u64;
    let (schema, batches) = decode_stream(&raw, None, &limits)?;
    let input = IpcInput::from_stream(Cursor::new(raw), limits)?;
    let mut compression = Vec::new();
    for b in input {
        let name = b?.compression().map_or("other", |c| c.name());
        if !compression.contains(&name) {
            compression.push(name);
        }
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let decoded: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let mut d = Description::new("table batch");
    d.show("format", "arrow", "arrow (IPC stream)");
    if let Some((prefix, part, batch)) = batch_key_parts(key) {
        d.show("table", prefix, prefix);
        d.show("partition", part, part);
        d.show("batch", batch, batch);
    }
    d.show("rows", rows, rows);
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    d.show("columns", columns.clone(), columns.join(", "));
    d.show("compression", compression.join("+"), compression.join("+"));
    if let Some(g) = schema.metadata().get(GENERATION_METADATA) {
        d.show("generation", g.as_str(), g);
    }
    d.json("batches", batches.len());
    d.show("stored_bytes", stored, format!("{stored} bytes"));
    d.show(
        "decoded_bytes",
        decoded,
        format!("{decoded} bytes in memory"),
    );
    Ok(d)
}

/// `(prefix, partition, batch)` of a batch key `PREFIX:{part=N}:batch=M`.
fn batch_key_parts(key: &str) -> Option<(&str, u32, u32)> {
    let (rest, batch) = key.rsplit_once(":batch=")?;
    let (prefix, part) = rest.rsplit_once(":{part=")?;
    let part = part.strip_suffix('}')?;
    Some((prefix, part.parse().ok()?, batch.parse().ok()?))
}

/// A table manifest at `PREFIX:__manifest__`.
fn table_manifest(con: &mut RedisConnection, key: &str, prefix: &str) -> Result<Description, Fail> {
    let info = TableStore::new("")
        .info(con, prefix)?
        .ok_or_else(|| Fail(3, format!("key {key:?} vanished")))?;
    let mut d = Description::new("table manifest");
    d.show("table", prefix, prefix);
    d.show("rows", info.rows, info.rows);
    d.show(
        "batches",
        info.batches(),
        format!("{} in {} partitions", info.batches(), info.partitions.len()),
    );
    d.json(
        "partitions",
        info.partitions
            .iter()
            .map(|p| json!({"id": p.id, "batches": p.batches, "rows": p.rows, "bytes": p.bytes}))
            .collect::<Vec<_>>(),
    );
    d.show(
        "compression",
        info.compression.name(),
        info.compression.name(),
    );
    d.show("generation", info.generation, info.generation);
    let columns: Vec<String> = info
        .schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    d.show("columns", columns.clone(), columns.join(", "));
    d.show(
        "stored_bytes",
        info.bytes,
        format!("{:.2} MB in batches", mb(info.bytes)),
    );
    Ok(d)
}

/// The prefixes a feature key `PREFIX:VIEW:ENTITY` may have: none, then every part
/// before a colon (a bounded number of them).
fn feature_prefixes(key: &str) -> Vec<&str> {
    const MOST: usize = 32;
    std::iter::once("")
        .chain(key.match_indices(':').map(|(i, _)| &key[..i]))
        .take(MOST)
        .collect()
}

/// A feature vector in the native layout (`PREFIX:VIEW:ENTITY`: 8-byte timestamp and
/// the vector), found through the view registry of its prefix.
fn feature_vector(
    con: &mut RedisConnection,
    key: &str,
    raw: &[u8],
) -> Result<Option<Description>, Fail> {
    for prefix in feature_prefixes(key) {
        let store = FeatureStore::new(prefix);
        let kind: String = redis::cmd("TYPE").arg(store.registry_key()).query(con)?;
        if kind != "hash" {
            continue;
        }
        let Ok(views) = store.load_views(con) else {
            continue;
        };
        // The longest view name that fits: `a:b` before `a` for key `p:a:b:e`.
        let rest = if prefix.is_empty() {
            key
        } else {
            &key[prefix.len() + 1..]
        };
        let found = views
            .iter()
            .filter(|v| v.layout() == Layout::Native)
            .filter(|v| {
                rest.strip_prefix(v.name())
                    .is_some_and(|r| r.starts_with(':') && r.len() > 1)
            })
            .max_by_key(|v| v.name().len());
        let Some(v) = found else {
            continue;
        };
        let entity = &rest[v.name().len() + 1..];
        let ts = redstash::store::feature::TIMESTAMP_LEN;
        let want = v
            .dim()
            .checked_mul(v.dtype().size())
            .and_then(|n| n.checked_add(ts));
        if want != Some(raw.len()) {
            return Err(Fail(
                1,
                format!(
                    "key {key:?} is an entity of feature view {:?} ({v}) but holds {} bytes, not {}",
                    v.name(),
                    raw.len(),
                    want.map_or_else(|| "a representable size".into(), |n| n.to_string())
                ),
            ));
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&raw[..ts]);
        let written_ms = u64::from_le_bytes(stamp);
        let mut d = Description::new("feature vector");
        d.show("format", "native", "native (8-byte timestamp + vector)");
        d.show(
            "prefix",
            prefix,
            if prefix.is_empty() { "(none)" } else { prefix },
        );
        d.show("view", v.name(), format!("{} ({v})", v.name()));
        d.show("entity", entity, entity);
        d.show(
            "dtype",
            v.dtype().name(),
            format!("{} ({})", v.dtype(), v.dtype().descr()),
        );
        d.show("shape", [v.dim()], format!("[{}]", v.dim()));
        d.show("written_at_ms", written_ms, written_at(written_ms));
        d.sizes(raw.len() as u64, (raw.len() - ts) as u64, "of vector ");
        return Ok(Some(d));
    }
    Ok(None)
}

/// A timestamp in milliseconds since the Unix epoch, with its age.
fn written_at(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match now.checked_sub(ms) {
        Some(age) => format!(
            "{ms} ms since the Unix epoch ({:.1} s ago)",
            age as f64 / 1e3
        ),
        None => format!("{ms} ms since the Unix epoch (in the future)"),
    }
}

/// One key of an array in the Python recipe's layout (`NAME:data` + `NAME:meta`).
fn recipe_array(con: &mut RedisConnection, key: &str) -> Result<Option<Description>, Fail> {
    let Some(name) = strip_key_suffix(key, "data").or_else(|| strip_key_suffix(key, "meta")) else {
        return Ok(None);
    };
    let (data, meta) = (format!("{name}:data"), format!("{name}:meta"));
    // MGET answers nil for a key that is not a string.
    let both: (Option<Vec<u8>>, Option<Vec<u8>>) =
        redis::cmd("MGET").arg(&data).arg(&meta).query(con)?;
    let (Some(data_bytes), Some(meta_bytes)) = both else {
        return Ok(None);
    };
    let Ok(meta_json) = serde_json::from_slice::<Json>(&meta_bytes) else {
        return Ok(None);
    };
    if meta_json.get("dtype").is_none() || meta_json.get("shape").is_none() {
        return Ok(None);
    }
    let a = DataMetaStore::new("")
        .get(con, name)?
        .ok_or_else(|| Fail(3, format!("key {key:?} vanished")))?;
    let mut d = Description::new("recipe array");
    d.show(
        "format",
        "recipe",
        "the tobytes() + JSON metadata layout of the Python recipe",
    );
    d.show("name", name, format!("{name} ({data} + {meta})"));
    let compression = meta_json
        .get("compression")
        .and_then(Json::as_str)
        .unwrap_or("none")
        .to_owned();
    d.show("compression", compression.clone(), compression);
    describe_array(&mut d, a.dtype(), a.shape(), a.order());
    d.sizes(
        (data_bytes.len() + meta_bytes.len()) as u64,
        a.nbytes() as u64,
        "of elements ",
    );
    Ok(Some(d))
}

/// A hash key: a batch of arrays, a feature vector in the recipe layout, or a feature
/// view registry.
fn hash_value(con: &mut RedisConnection, key: &str) -> Result<Description, Fail> {
    if let Some(prefix) = strip_key_suffix(key, "__views__").or((key == "__views__").then_some(""))
    {
        return view_registry(con, prefix);
    }
    let names: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(key).query(con)?;
    let has = |f: &str| names.iter().any(|n| n == f.as_bytes());
    if has("data") && has("dtype") && has("shape") {
        return recipe_feature_vector(con, key);
    }
    let not_ours = |why: String| {
        Fail(
            1,
            format!("key {key:?} holds a Redis hash that is not a redstash batch ({why})"),
        )
    };
    let mut d = Description::new("batch");
    let (mut stored, mut raw_total) = (0u64, 0u64);
    let mut arrays = Vec::new();
    let mut lines = Vec::new();
    let mut names = names;
    names.sort();
    for n in &names {
        let field = String::from_utf8_lossy(n).into_owned();
        let v: Vec<u8> = redis::cmd("HGET").arg(key).arg(n).query(con)?;
        let i = codec::inspect(&v, &Limits::default())
            .map_err(|e| not_ours(format!("field {field:?}: {e}")))?;
        let layers: Vec<&str> = i.layers.iter().map(|f| f.name()).collect();
        stored = stored.saturating_add(v.len() as u64);
        raw_total = raw_total.saturating_add(i.raw_len as u64);
        lines.push(format!(
            "{field}: {} {:?} {:?} ({}, {} bytes)",
            i.dtype,
            i.shape,
            i.order,
            layers.join("+"),
            v.len()
        ));
        arrays.push(json!({
            "name": field, "format": layers.join("+"), "dtype": i.dtype.name(),
            "shape": i.shape, "order": format!("{:?}", i.order),
            "stored_bytes": v.len(), "raw_bytes": i.raw_len,
        }));
    }
    if arrays.is_empty() {
        return Err(not_ours("no fields".into()));
    }
    d.show(
        "arrays",
        arrays,
        format!("{}\n  {}", names.len(), lines.join("\n  ")),
    );
    d.sizes(stored, raw_total, "as .npy ");
    Ok(d)
}

/// A feature vector in the recipe layout: a hash with `data`, `dtype`, `shape` (and
/// `updated_at`).
fn recipe_feature_vector(con: &mut RedisConnection, key: &str) -> Result<Description, Fail> {
    let (data, dtype, shape, updated): (Vec<u8>, String, String, Option<String>) =
        redis::cmd("HMGET")
            .arg(key)
            .arg("data")
            .arg("dtype")
            .arg("shape")
            .arg("updated_at")
            .query(con)?;
    let bad = |why: String| {
        Fail(
            1,
            format!("key {key:?} holds a recipe-layout hash with a bad {why}"),
        )
    };
    let (dt, _) = DType::parse_any(&dtype).map_err(|e| bad(format!("dtype: {e}")))?;
    let shape: Vec<usize> =
        serde_json::from_str(&shape).map_err(|e| bad(format!("shape {shape:?}: {e}")))?;
    let want = shape.iter().try_fold(dt.size(), |n, &d| n.checked_mul(d));
    if want != Some(data.len()) {
        return Err(bad(format!(
            "data: {} bytes for {dt} {shape:?}",
            data.len()
        )));
    }
    let mut d = Description::new("feature vector");
    d.show(
        "format",
        "recipe",
        "recipe layout (hash: data, dtype, shape, updated_at)",
    );
    d.show("dtype", dt.name(), format!("{dt} ({})", dt.descr()));
    d.show("shape", shape.clone(), format!("{shape:?}"));
    if let Some(u) = updated {
        d.show("updated_at", u.clone(), u);
    }
    d.show(
        "stored_bytes",
        data.len(),
        format!("{} bytes of vector", data.len()),
    );
    Ok(d)
}

/// The feature view registry at `PREFIX:__views__`.
fn view_registry(con: &mut RedisConnection, prefix: &str) -> Result<Description, Fail> {
    let views = FeatureStore::new(prefix).load_views(con)?;
    let mut d = Description::new("feature view registry");
    d.show(
        "prefix",
        prefix,
        if prefix.is_empty() { "(none)" } else { prefix },
    );
    let lines: Vec<String> = views.iter().map(|v| format!("{}: {v}", v.name())).collect();
    d.show(
        "views",
        views
            .iter()
            .map(|v| {
                json!({
                    "name": v.name(), "dtype": v.dtype().name(), "dim": v.dim(),
                    "ttl_ms": v.ttl().map(|t| t.as_millis() as u64),
                    "layout": match v.layout() { Layout::Native => "native", _ => "hash" },
                })
            })
            .collect::<Vec<_>>(),
        format!("{}\n  {}", views.len(), lines.join("\n  ")),
    );
    Ok(d)
}
