//! The layouts a view's vectors are stored in: for each, how an entity's vector is
//! written (the commands of a chunk), read (the commands of a read and their replies)
//! and parsed, in one place ([`Encoding`]).

use std::ops::Range;

use redis::Value;
use serde::{Deserialize, Serialize};

use super::write::Write;
use super::{View, bytes_of, corrupt};
use crate::dtype::{ByteOrder, DType, swap_bytes_in_place};
use crate::error::{Error, Origin, Result};
use crate::exec::{Packed, Replies, Request, describe, push_header};

/// Bytes of the timestamp in front of a vector ([`Layout::Native`]).
pub const TIMESTAMP_LEN: usize = 8;

/// How the vectors of a view are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Layout {
    /// One string per (view, entity): 8-byte timestamp + raw little-endian vector
    /// (see the [module docs](super)).
    #[default]
    Native,
    /// One hash per (view, entity) with `data` (the vector's `tobytes()`), `dtype`,
    /// `shape` and `updated_at` fields: the layout of the common Python feature-store
    /// recipe, for sharing data with Python services that use it. Registered as
    /// `"hash"` (registries that say `"recipe"`, the name of earlier versions, read as
    /// this).
    #[serde(alias = "recipe")]
    Hash,
}

impl Layout {
    /// How vectors are written and read in this layout.
    pub(super) fn encoding(self) -> &'static dyn Encoding {
        match self {
            Layout::Native => &NativeString,
            Layout::Hash => &HashFields,
        }
    }
}

/// What a read of one (view, entity) found.
pub(super) enum Found<'a> {
    Missing,
    Vector {
        ts_ms: Option<u64>,
        data: &'a [u8],
        big_endian: bool,
    },
}

/// What a layout does: the commands that write and read a view's vectors and the parse
/// of what a read returns. Nothing else in the feature store depends on the layout.
pub(super) trait Encoding: Sync {
    /// Commands (and so replies) per entity written.
    fn commands_per_entity(&self, view: &View) -> usize;

    /// Encode the commands writing entities `items` of `w` into `p`.
    fn encode_writes(&self, w: &Write<'_>, items: Range<usize>, p: &mut Packed);

    /// Add the commands reading the vectors at `keys` to `req`.
    fn push_reads(&self, keys: &[String], req: &mut Request<'_>);

    /// Take the replies of the commands [`push_reads`](Self::push_reads) added from
    /// `r`: one value per key. The keys whose reply does not tell a missing key from a
    /// key of another type go to `unsure` (checked afterwards).
    fn take_reads(
        &self,
        keys: &[String],
        r: &mut Replies,
        unsure: &mut Vec<String>,
    ) -> Result<Vec<Value>>;

    /// Parse the value read for one entity.
    fn parse<'v>(&self, view: &View, key: &str, v: &'v Value) -> Result<Found<'v>>;
}

/// A native-order vector as the little-endian bytes stored (a copy into `scratch` only
/// on big-endian machines).
pub(super) fn as_le<'b>(row: &'b [u8], unit: usize, scratch: &'b mut Vec<u8>) -> &'b [u8] {
    if ByteOrder::NATIVE == ByteOrder::Big && unit > 1 {
        scratch.clear();
        scratch.extend_from_slice(row);
        swap_bytes_in_place(scratch, unit);
        scratch
    } else {
        row
    }
}

/// [`Layout::Native`]: one string per (view, entity), `SET key <ts + vector> [PX ttl]`,
/// read with one `MGET` per view.
struct NativeString;

impl Encoding for NativeString {
    fn commands_per_entity(&self, _: &View) -> usize {
        1
    }

    fn encode_writes(&self, w: &Write<'_>, items: Range<usize>, p: &mut Packed) {
        let vlen = w.view.vector_len();
        let unit = w.view.dtype.swap_unit();
        let ttl = w.view.ttl_ms().map(|ms| ms.to_string());
        let mut swapped = Vec::new();
        // SET key <ts + vector> [PX ttl]: the constant parts encoded once.
        let head: &[u8] = if ttl.is_some() {
            b"*5\r\n$3\r\nSET\r\n"
        } else {
            b"*3\r\n$3\r\nSET\r\n"
        };
        let mut value_head = Vec::with_capacity(16);
        push_header(&mut value_head, b'$', TIMESTAMP_LEN + vlen);
        value_head.extend_from_slice(&w.ts_ms.to_le_bytes());
        let mut tail = b"\r\n".to_vec();
        if let Some(ms) = &ttl {
            tail.extend_from_slice(b"$2\r\nPX\r\n");
            push_header(&mut tail, b'$', ms.len());
            tail.extend_from_slice(ms.as_bytes());
            tail.extend_from_slice(b"\r\n");
        }
        for i in items {
            p.raw(head, 1);
            p.arg_pieces(&[w.key_prefix.as_bytes(), w.ids.get(i).as_bytes()]);
            p.raw(&value_head, 0);
            p.raw(as_le(w.row(i), unit, &mut swapped), 0);
            p.raw(&tail, 0);
        }
    }

    fn push_reads(&self, keys: &[String], req: &mut Request<'_>) {
        // One MGET: the cheapest read of many strings.
        let mut c = redis::cmd("MGET");
        for k in keys {
            c.arg(k);
        }
        req.push(c);
    }

    fn take_reads(
        &self,
        keys: &[String],
        r: &mut Replies,
        unsure: &mut Vec<String>,
    ) -> Result<Vec<Value>> {
        let values = r.next_array_of(keys.len())?;
        // MGET answers nil for a key of another type.
        unsure.extend(
            keys.iter()
                .zip(&values)
                .filter(|(_, v)| matches!(v, Value::Nil))
                .map(|(k, _)| k.clone()),
        );
        Ok(values)
    }

    fn parse<'v>(&self, view: &View, key: &str, v: &'v Value) -> Result<Found<'v>> {
        let Some(b) = bytes_of(v, key, "a feature value")? else {
            return Ok(Found::Missing);
        };
        if b.len() != TIMESTAMP_LEN + view.vector_len() {
            return Err(corrupt(
                key,
                format!(
                    "a {} value holds {} bytes, expected {} (8 of timestamp + {} of vector)",
                    view,
                    b.len(),
                    TIMESTAMP_LEN + view.vector_len(),
                    view.vector_len()
                ),
            ));
        }
        let (ts, data) = b.split_at(TIMESTAMP_LEN);
        let mut t = [0u8; TIMESTAMP_LEN];
        t.copy_from_slice(ts);
        Ok(Found::Vector {
            ts_ms: Some(u64::from_le_bytes(t)),
            data,
            big_endian: false,
        })
    }
}

/// [`Layout::Hash`]: the common Python recipe's hash per entity (`data`, `dtype`,
/// `shape`, `updated_at`), `HSET` [+ `PEXPIRE`], read with one `HMGET` per entity.
struct HashFields;

/// The fields of a recipe hash, in the order they are read.
const RECIPE_FIELDS: [&str; 4] = ["data", "dtype", "shape", "updated_at"];

impl Encoding for HashFields {
    fn commands_per_entity(&self, view: &View) -> usize {
        if view.ttl.is_some() { 2 } else { 1 }
    }

    fn encode_writes(&self, w: &Write<'_>, items: Range<usize>, p: &mut Packed) {
        let unit = w.view.dtype.swap_unit();
        let ttl = w.view.ttl_ms().map(|ms| ms.to_string());
        let mut swapped = Vec::new();
        // The recipe stores str(arr.dtype) (little-endian data, numpy's name),
        // the shape as JSON and str(time.time()).
        let shape = format!("[{}]", w.view.dim);
        let updated = format!("{:.6}", w.ts_ms as f64 / 1000.0);
        for i in items {
            let key = w.key(i);
            let data = as_le(w.row(i), unit, &mut swapped);
            p.command(10);
            for arg in [
                &b"HSET"[..],
                key.as_bytes(),
                b"data",
                data,
                b"dtype",
                w.view.dtype.name().as_bytes(),
                b"shape",
                shape.as_bytes(),
                b"updated_at",
                updated.as_bytes(),
            ] {
                p.arg(arg);
            }
            if let Some(ms) = &ttl {
                p.command(3);
                p.arg(b"PEXPIRE");
                p.arg(key.as_bytes());
                p.arg(ms.as_bytes());
            }
        }
    }

    fn push_reads(&self, keys: &[String], req: &mut Request<'_>) {
        for k in keys {
            let mut c = redis::cmd("HMGET");
            c.arg(k).arg(&RECIPE_FIELDS[..]);
            req.push(c);
        }
    }

    fn take_reads(
        &self,
        keys: &[String],
        r: &mut Replies,
        _: &mut Vec<String>,
    ) -> Result<Vec<Value>> {
        // HMGET of a key of another type is a WRONGTYPE error: nothing is unsure.
        keys.iter().map(|_| r.next_raw()).collect()
    }

    fn parse<'v>(&self, view: &View, key: &str, v: &'v Value) -> Result<Found<'v>> {
        let fields = match v {
            Value::Array(f) if f.len() == 4 => f,
            Value::ServerError(e) => return Err(Error::redis(e.clone().into(), Some(key))),
            other => {
                return Err(Error::unexpected(
                    format!("HMGET of 4 fields replied {}", describe(other)),
                    Some(key.to_owned()),
                ));
            }
        };
        let data = bytes_of(&fields[0], key, "the data field")?;
        let dtype = bytes_of(&fields[1], key, "the dtype field")?;
        let shape = bytes_of(&fields[2], key, "the shape field")?;
        let updated = bytes_of(&fields[3], key, "the updated_at field")?;
        let (data, dtype, shape) = match (data, dtype, shape) {
            (None, None, None) => return Ok(Found::Missing),
            (Some(d), Some(t), Some(s)) => (d, t, s),
            _ => {
                return Err(corrupt(
                    key,
                    "not a recipe feature hash (needs data, dtype and shape fields)",
                ));
            }
        };
        let dtype =
            std::str::from_utf8(dtype).map_err(|_| corrupt(key, "the dtype field is not UTF-8"))?;
        let (found, order) = DType::parse_any(dtype)
            .map_err(|_| corrupt(key, format!("the dtype field {dtype:?} is not a dtype")))?;
        if found != view.dtype {
            return Err(Error::DTypeMismatch {
                origin: Origin::Key(key.to_owned()),
                expected: view.dtype,
                found,
            });
        }
        let shape: Vec<usize> = serde_json::from_slice(shape).map_err(|e| {
            corrupt(
                key,
                format!("the shape field is not a JSON list of sizes: {e}"),
            )
        })?;
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(view.dim) {
            return Err(Error::ShapeMismatch {
                origin: Origin::Key(key.to_owned()),
                expected: format!("{} elements (view {:?})", view.dim, view.name),
                found: shape,
            });
        }
        if data.len() != view.vector_len() {
            return Err(corrupt(
                key,
                format!(
                    "the data field holds {} bytes, dtype and shape need {}",
                    data.len(),
                    view.vector_len()
                ),
            ));
        }
        let ts_ms = match updated {
            None => None,
            Some(u) => {
                let secs: f64 = std::str::from_utf8(u)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        corrupt(key, "the updated_at field is not a number of seconds")
                    })?;
                Some((secs * 1000.0).round() as u64)
            }
        };
        Ok(Found::Vector {
            ts_ms,
            data,
            big_endian: order == ByteOrder::Big,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;

    /// The registry names layouts by their serde name; the name of earlier versions for
    /// the hash layout still reads.
    #[test]
    fn layout_registry_names() {
        assert_eq!(serde_json::to_string(&Layout::Hash).unwrap(), "\"hash\"");
        assert_eq!(
            serde_json::to_string(&Layout::Native).unwrap(),
            "\"native\""
        );
        for name in ["\"hash\"", "\"recipe\""] {
            assert_eq!(serde_json::from_str::<Layout>(name).unwrap(), Layout::Hash);
        }
        assert!(serde_json::from_str::<Layout>("\"other\"").is_err());
    }
}
