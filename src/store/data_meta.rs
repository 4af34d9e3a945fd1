//! [`DataMetaStore`]: arrays as two keys, `{key}:data` and `{key}:meta`: the `tobytes()` +
//! JSON metadata layout common in Python code (e.g. the "Storing NumPy arrays in Redis"
//! recipe), so Python services using it and Rust services share data.
//!
//! `{key}:data` holds the raw C-order element bytes (optionally an lz4 frame or a zlib
//! stream of them) and `{key}:meta` a JSON object
//! `{"dtype": "float64", "shape": [..], "compression": "lz4" | "zlib" | null, "original_size": n}`.
//! Unlike the recipe, redstash writes both keys in one MULTI/EXEC transaction and reads
//! them with one MGET, so readers never see a data key of one write with the meta key of
//! another. On a Redis Cluster the two keys must share a slot: give the prefix (or the
//! names) a hash tag, e.g. `DataMetaStore::new("{arrays}")`; otherwise a write fails with
//! [`Error::CrossSlot`] before anything is sent.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::array::{AsArray, Order, RawArray, c_order_bytes};
use crate::codec::{Compression, Format, Limits, compress, decode_cost};
use crate::dtype::{ByteOrder, DType, swap_bytes_in_place};
use crate::error::{Error, Result};
use crate::exec::{Replies, Request, Step, reply_bytes};
use crate::store::{join_key, sync_and_async, ttl_millis};

/// Arrays as a data key and a JSON meta key (`key:data` + `key:meta`), the `tobytes()` +
/// JSON metadata layout common in Python code.
///
/// ```no_run
/// # fn main() -> redstash::Result<()> {
/// use redstash::{Compression, DataMetaStore};
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// let store = DataMetaStore::new("").with_compression(Compression::Lz4);
/// // written in Python by store_array_compressed('my_array', arr, 'lz4')
/// let a = store.get(&mut con, "my_array")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DataMetaStore {
    prefix: String,
    compression: Compression,
    ttl: Option<Duration>,
    limits: Limits,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    dtype: String,
    shape: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_size: Option<u64>,
}

impl DataMetaStore {
    /// A store of recipe-layout arrays under `prefix` (`""` for none), uncompressed.
    pub fn new(prefix: impl Into<String>) -> Self {
        DataMetaStore {
            prefix: prefix.into(),
            compression: Compression::None,
            ttl: None,
            limits: Limits::default(),
        }
    }

    /// Compression for writing: `None`, `Lz4` or `Zlib` (what the recipe knows).
    pub fn with_compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Expire both keys after `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Decoding limits (size caps against hostile values).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn keys(&self, name: &str) -> (String, String) {
        let base = join_key(&self.prefix, name);
        (format!("{base}:data"), format!("{base}:meta"))
    }

    /// Plan of [`put`](Self::put).
    pub fn plan_put(&self, name: &str, array: &impl AsArray) -> Result<Step<'static, ()>> {
        let (dkey, mkey) = self.keys(name);
        let (data, meta) = array.with_array_ref(|a| -> Result<_> {
            let raw = c_order_bytes(&a);
            let (data, compression) = match self.compression {
                Compression::None => (raw.into_owned(), None),
                Compression::Lz4 => (compress::Compression::Lz4.compress(&raw)?, Some("lz4")),
                c @ Compression::Zlib { .. } => (c.compress(&raw)?, Some("zlib")),
                Compression::Zstd { .. } => {
                    return Err(Error::InvalidArgument(
                        "the recipe layout knows lz4 and zlib only".into(),
                    ));
                }
            };
            let meta = Meta {
                dtype: a.dtype().name().to_owned(),
                shape: a.shape().to_vec(),
                compression: compression.map(str::to_owned),
                original_size: Some(a.nbytes() as u64),
            };
            Ok((data, serde_json::to_vec(&meta)?))
        })?;
        let mut req = Request::new(Some(&mkey));
        for (k, v) in [(&dkey, data), (&mkey, meta)] {
            let mut c = redis::cmd("SET");
            c.arg(k).arg(v);
            if let Some(t) = self.ttl {
                c.arg("PX").arg(ttl_millis(t));
            }
            req.push(c);
        }
        Ok(Step::then(req.atomic(), Replies::finish_ok))
    }

    /// Plan of [`get`](Self::get).
    pub fn plan_get(&self, name: &str) -> Result<Step<'static, Option<RawArray>>> {
        let (dkey, mkey) = self.keys(name);
        let mut c = redis::cmd("MGET");
        c.arg(&mkey).arg(&dkey);
        let limits = self.limits;
        Ok(Step::send(
            Request::single(c, Some(&mkey)).idempotent(),
            move |mut r| {
                let [meta, data] = r.next_array_n()?;
                r.finish()?;
                let meta = reply_bytes(meta, &mkey)?;
                let data = reply_bytes(data, &dkey)?;
                match (meta, data) {
                    (None, None) => Ok(Step::Done(None)),
                    (Some(meta), Some(data)) => {
                        let (meta, dtype, order) = parse_meta(&mkey, &meta)?;
                        Ok(Step::compute(
                            format!("the decode of {dkey:?}"),
                            data_cost(&meta, dtype, order, &data),
                            move || {
                                decode_data(&meta, dtype, order, data, &limits)
                                    .map_err(|e| e.at_key(&dkey))
                            },
                            |a| Ok(Step::Done(Some(a))),
                        ))
                    }
                    (None, Some(_)) => Err(Error::corrupt(
                        "recipe array",
                        "the data key exists but the meta key does not",
                    )
                    .at_key(&mkey)),
                    (Some(_), None) => Err(Error::corrupt(
                        "recipe array",
                        "the meta key exists but the data key does not",
                    )
                    .at_key(&dkey)),
                }
            },
        ))
    }

    /// Plan of [`delete`](Self::delete).
    pub fn plan_delete(&self, name: &str) -> Result<Step<'static, bool>> {
        let (dkey, mkey) = self.keys(name);
        let mut c = redis::cmd("DEL");
        c.arg(&dkey).arg(&mkey);
        Ok(Step::then(Request::single(c, Some(&mkey)), |mut r| {
            let n = r.next_int()?;
            r.finish()?;
            Ok(n > 0)
        }))
    }

    /// Plan of [`exists`](Self::exists).
    pub fn plan_exists(&self, name: &str) -> Result<Step<'static, bool>> {
        let (_, mkey) = self.keys(name);
        Ok(crate::store::exists_step(&mkey))
    }

    sync_and_async! {
        /// Write `array` as `name:data` + `name:meta` in one transaction (C order).
        fn put / put_async<A: AsArray>(name: &str, array: &A) -> () = plan_put;
        /// Read `name:meta` + `name:data` in one round trip; `None` if neither exists.
        fn get / get_async(name: &str) -> Option<RawArray> = plan_get;
        /// Delete both keys; `true` if any existed.
        fn delete / delete_async(name: &str) -> bool = plan_delete;
        /// Whether the meta key exists.
        fn exists / exists_async(name: &str) -> bool = plan_exists;
    }
}

/// The meta of a recipe array, its dtype and byte order (errors name the meta key
/// `mkey`).
fn parse_meta(mkey: &str, meta: &[u8]) -> Result<(Meta, DType, ByteOrder)> {
    let meta: Meta = serde_json::from_slice(meta).map_err(|e| {
        Error::corrupt("recipe meta", format!("not the recipe's JSON: {e}")).at_key(mkey)
    })?;
    let (dtype, order) = DType::parse_any(&meta.dtype).map_err(|e| e.at_key(mkey))?;
    Ok((meta, dtype, order))
}

/// The decode cost (see [`Step::compute`]) of a recipe array's data: what a compressed
/// one decompresses to, the length of data that must be byte-swapped or checked (bool),
/// 0 for data used in place.
fn data_cost(meta: &Meta, dtype: DType, order: ByteOrder, data: &[u8]) -> usize {
    match meta.compression.as_deref() {
        None | Some("none") | Some("None") | Some("") => {
            if dtype == DType::Bool || needs_swap(order) {
                data.len()
            } else {
                0
            }
        }
        _ => decode_cost(data, &Limits::default()),
    }
}

/// Whether data of byte order `order` must be swapped on this machine.
fn needs_swap(order: ByteOrder) -> bool {
    order == ByteOrder::Big && ByteOrder::NATIVE == ByteOrder::Little
        || order == ByteOrder::Little && ByteOrder::NATIVE == ByteOrder::Big
}

fn decode_data(
    meta: &Meta,
    dtype: DType,
    order: ByteOrder,
    data: Bytes,
    limits: &Limits,
) -> Result<RawArray> {
    let data = match meta.compression.as_deref() {
        None | Some("none") | Some("None") | Some("") => data,
        Some("lz4") => Bytes::from(compress::decompress(
            Format::Lz4Frame,
            &data,
            limits.max_value_len,
        )?),
        Some("zlib") => Bytes::from(compress::decompress(
            Format::Zlib,
            &data,
            limits.max_value_len,
        )?),
        Some(other) => {
            return Err(Error::unknown_format(format!(
                "compression {other:?} in the recipe meta"
            )));
        }
    };
    if let Some(n) = meta.original_size.filter(|&n| n != data.len() as u64) {
        return Err(Error::truncated("recipe data", n, data.len() as u64));
    }
    let data = if needs_swap(order) {
        let mut v = data.to_vec();
        swap_bytes_in_place(&mut v, dtype.swap_unit());
        Bytes::from(v)
    } else {
        data
    };
    if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
        return Err(Error::corrupt(
            "recipe data",
            "bool array holds bytes other than 0 and 1",
        ));
    }
    RawArray::new(dtype, meta.shape.clone(), Order::C, data)
}
