//! The table manifest: `{prefix}:__manifest__`, JSON, written last by a split.

use serde::{Deserialize, Serialize};

use super::{MANIFEST_FORMAT, MANIFEST_VERSION, PartitionInfo, TableInfo};
use crate::codec::Limits;
use crate::codec::arrow::{IpcCompression, decode_schema};
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
struct ManifestJson {
    format: String,
    version: u32,
    generation: u64,
    compression: String,
    created_at_ms: u64,
    rows: u64,
    bytes: u64,
    partitions: Vec<PartitionInfo>,
    schema: String,
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2)
        .map(|p| Some(v(p[0])? << 4 | v(p[1])?))
        .collect()
}

fn manifest_error(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::corrupt("table manifest", reason.to_string()).at_key(key)
}

pub(crate) fn parse_manifest(
    prefix: &str,
    key: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<TableInfo> {
    let m: ManifestJson = serde_json::from_slice(bytes).map_err(|e| manifest_error(key, e))?;
    if m.format != MANIFEST_FORMAT {
        return Err(manifest_error(key, format!("format {:?}", m.format)));
    }
    if m.version != MANIFEST_VERSION {
        return Err(manifest_error(
            key,
            format!(
                "version {} (this build reads {MANIFEST_VERSION})",
                m.version
            ),
        ));
    }
    let compression = IpcCompression::from_name(&m.compression)
        .ok_or_else(|| manifest_error(key, format!("compression {:?}", m.compression)))?;
    let schema_bytes = unhex(&m.schema).ok_or_else(|| manifest_error(key, "schema is not hex"))?;
    let schema = decode_schema(&schema_bytes, limits)
        .map_err(|e| manifest_error(key, format!("schema: {e}")))?;
    let mut last = None;
    let (mut batches, mut rows, mut bytes) = (0u64, 0u64, 0u64);
    for p in &m.partitions {
        if last.is_some_and(|l| l >= p.id) {
            return Err(manifest_error(key, "partitions not in ascending order"));
        }
        last = Some(p.id);
        batches = batches
            .checked_add(u64::from(p.batches))
            .ok_or_else(|| manifest_error(key, "batch count overflows"))?;
        if batches > limits.max_table_batches {
            return Err(manifest_error(
                key,
                format!(
                    "declares more than {} batches (Limits::max_table_batches)",
                    limits.max_table_batches
                ),
            ));
        }
        if !p.checksums.is_empty() && p.checksums.len() != p.batches as usize {
            return Err(manifest_error(
                key,
                format!(
                    "partition {} has {} checksums for {} batches",
                    p.id,
                    p.checksums.len(),
                    p.batches
                ),
            ));
        }
        // A batch value is at most `max_value_len` bytes.
        let most_bytes = u64::from(p.batches).saturating_mul(limits.max_value_len);
        if p.bytes > most_bytes {
            return Err(manifest_error(
                key,
                format!(
                    "partition {} declares {} bytes in {} batches",
                    p.id, p.bytes, p.batches
                ),
            ));
        }
        rows = rows
            .checked_add(p.rows)
            .ok_or_else(|| manifest_error(key, "row count overflows"))?;
        bytes = bytes
            .checked_add(p.bytes)
            .ok_or_else(|| manifest_error(key, "byte count overflows"))?;
    }
    if rows != m.rows || bytes != m.bytes {
        return Err(manifest_error(
            key,
            format!(
                "totals ({} rows, {} bytes) are not the sum of its partitions ({rows} rows, {bytes} bytes)",
                m.rows, m.bytes
            ),
        ));
    }
    Ok(TableInfo {
        prefix: prefix.to_owned(),
        schema,
        partitions: m.partitions,
        rows: m.rows,
        bytes: m.bytes,
        compression,
        generation: m.generation,
        created_at_ms: m.created_at_ms,
        format_version: m.version,
    })
}

/// The manifest of `info`, as stored.
pub(crate) fn encode_manifest(info: &TableInfo) -> Result<Vec<u8>> {
    let json = ManifestJson {
        format: MANIFEST_FORMAT.to_owned(),
        version: MANIFEST_VERSION,
        generation: info.generation,
        compression: info.compression.name().to_owned(),
        created_at_ms: info.created_at_ms,
        rows: info.rows,
        bytes: info.bytes,
        partitions: info.partitions.clone(),
        schema: hex(&crate::codec::arrow::encode_schema(&info.schema)?),
    };
    Ok(serde_json::to_vec(&json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
