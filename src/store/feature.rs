//! [`FeatureStore`]: an online store for ML feature vectors, with a registry of feature
//! views, pipelined bulk writes and reads into `ndarray` with a presence mask.
//!
//! # Layout
//!
//! Each feature vector is **one Redis string per (view, entity)**, at
//! `{prefix}:{view}:{entity_id}`, holding 8 bytes of write timestamp (milliseconds since
//! the Unix epoch, `u64` little-endian) followed by the raw little-endian vector bytes,
//! with no per-value header: the view registry (a hash at `{prefix}:__views__`, one
//! JSON field per view: dtype, dimension, TTL, layout) knows the dtype and dimension. A
//! write is one `SET key value PX ttl`, which refreshes the TTL with the value; a read of
//! many entities is a pipeline of `GET`s in one round trip.
//!
//! Python reads a value with
//! `np.frombuffer(v, dtype="<f4", offset=8).reshape(dim)` and its timestamp with
//! `int.from_bytes(v[:8], "little")`.
//!
//! ## Why this layout (measured)
//!
//! `benches/features.rs` measures the candidates on a local Redis 7.0 (jemalloc) with
//! 100,000 entities of 128 `float32` (512 bytes) and a TTL, writing in pipelines of
//! 5,000 entities through redis-rs, reading 1,000 random entities per round trip (one
//! run on a shared 2-core development machine under load; the bench prints them again):
//!
//! | layout | `used_memory` / entity | write rate | read 1,000 p50 |
//! |---|---|---|---|
//! | string per (view, entity): ts + vector, `SET .. PX` (chosen) | 757 B | 190k/s | 2.8 ms |
//! | hash per entity, one field per view (ts + vector), `HSET` + `PEXPIRE` | 893 B | 145k/s | 3.1 ms |
//! | hash per entity, vector and `_ts:view` fields (Feast-like), `HSET` + `PEXPIRE` | 956 B | 134k/s | 4.1 ms |
//! | the common Python recipe's hash (`data`, `dtype`, `shape`, `updated_at`) | 1,077 B | 105k/s | 6.4 ms |
//!
//! The string layout is the only one under the 800 B/entity target (jemalloc rounds the
//! 520-byte value up to its 640-byte class; a hash adds its own dict and field
//! entries), it needs one command per write instead of two (`HSET` + `PEXPIRE`), so it
//! writes fastest, and it gives every view its own TTL, which a hash per entity cannot
//! (a hash has one TTL for all its fields). Reading several views of an entity costs one
//! `GET` per view in the same pipeline ([`read_views`](FeatureStore::read_views)).
//!
//! ## Compatibility layout
//!
//! A view registered with [`Layout::Recipe`] reads and writes the hash layout of the common Python recipe
//! instead: `{prefix}:{view}:{entity_id}` (with prefix `""`: `{view}:{entity_id}`, the
//! recipe's `{name}:{entity_id}`) is a hash with fields `data` (raw vector bytes),
//! `dtype` (`"float32"`), `shape` (JSON, `[128]`) and `updated_at` (`str(time.time())`),
//! so a Python service using the recipe and a Rust service share data.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::{Cmd, Value};
use serde::{Deserialize, Serialize};

use crate::array::{AsArray, Order, RawArray, c_order_bytes};
use crate::codec::Limits;
use crate::dtype::{ByteOrder, DType, Element, swap_bytes_in_place};
use crate::error::{Error, Result};
use crate::exec::{Delivered, Delivery, Packed, Request, Requests, Step, push_header, reply_ok};
use crate::store::tally::Tally;
use crate::store::{join_key, sync_and_async, ttl_millis};

/// Default number of entities per request (chunk) of [`FeatureStore::write_many`].
///
/// Each chunk is encoded straight into one buffer just before it is sent. redstash's
/// direct connections write every chunk as soon as it is built, without waiting for
/// replies, so building the next chunk overlaps with the server's work and the chunk
/// size hardly matters. redis-rs connections take one call at a time, so there each
/// chunk is a round trip and the server waits while the client finishes one call and
/// starts the next: measured with 100,000 entities of 128 `f32` (`benches/features.rs`),
/// 2,000 per chunk kept the server as busy as 5,000 on `redis::Connection` and busier
/// than 5,000 or 20,000 on `MultiplexedConnection` (whose per-call packing costs less
/// on smaller, cache-resident buffers). A chunk of 2,000 such entities is about 1.4 MB
/// of commands.
pub const DEFAULT_CHUNK_SIZE: usize = 2_000;

/// Bytes of the timestamp in front of a vector ([`Layout::Native`]).
pub const TIMESTAMP_LEN: usize = 8;

/// Name of the registry key (under the store's prefix).
const REGISTRY: &str = "__views__";

/// How the vectors of a view are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One string per (view, entity): 8-byte timestamp + raw little-endian vector
    /// (see the [module docs](self)).
    #[default]
    Native,
    /// The common Python recipe (`tobytes()` into a hash): one hash per entity with `data`, `dtype`, `shape`,
    /// `updated_at` fields, for sharing data with Python services that use it.
    Recipe,
}

/// A feature view: a named kind of vector (dtype, dimension), its TTL and layout.
///
/// ```
/// use redstash::{DType, Layout, View};
/// use std::time::Duration;
/// let v = View::new("user_emb", DType::F32, 128).with_ttl(Duration::from_secs(3600));
/// assert_eq!(v.dim(), 128);
/// assert_eq!(v.layout(), Layout::Native);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    name: String,
    dtype: DType,
    dim: usize,
    ttl: Option<Duration>,
    layout: Layout,
}

/// The registry's JSON of a view.
#[derive(Serialize, Deserialize)]
struct ViewJson {
    dtype: String,
    dim: usize,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    layout: Layout,
}

impl View {
    /// A view of `dim`-long vectors of `dtype`, no TTL, [`Layout::Native`].
    pub fn new(name: impl Into<String>, dtype: DType, dim: usize) -> Self {
        View {
            name: name.into(),
            dtype,
            dim,
            ttl: None,
            layout: Layout::Native,
        }
    }

    /// A view of `dim`-long vectors of `T`.
    pub fn of<T: Element>(name: impl Into<String>, dim: usize) -> Self {
        Self::new(name, T::DTYPE, dim)
    }

    /// Expire each written vector `ttl` after its write (refreshed on every write).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Store the view in another layout.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// TTL of written vectors.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
    /// Storage layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Bytes of one vector.
    fn vector_len(&self) -> usize {
        self.dim * self.dtype.size()
    }

    fn ttl_ms(&self) -> Option<u64> {
        self.ttl.map(ttl_millis)
    }

    pub(crate) fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(&ViewJson {
            dtype: self.dtype.name().to_owned(),
            dim: self.dim,
            ttl_ms: self.ttl_ms(),
            layout: self.layout,
        })?)
    }

    /// A view from its registry entry, which is not trusted: its `dim` must be at least
    /// 1 and one vector (`dim` times the dtype's size, checked) at most
    /// `limits.max_value_len` bytes.
    pub(crate) fn from_json(name: &str, json: &[u8], limits: &Limits) -> Result<View> {
        let j: ViewJson = serde_json::from_slice(json).map_err(|e| Error::NotAnArray {
            key: name.to_owned(),
            reason: format!("registry entry is not a view definition: {e}"),
        })?;
        let (dtype, _) = DType::parse_any(&j.dtype)?;
        let view = View {
            name: name.to_owned(),
            dtype,
            dim: j.dim,
            ttl: j.ttl_ms.map(Duration::from_millis),
            layout: j.layout,
        };
        if view.dim == 0 {
            return Err(Error::NotAnArray {
                key: name.to_owned(),
                reason: "registry entry declares a dimension of 0".into(),
            });
        }
        view.checked_vector_len(limits)?;
        Ok(view)
    }

    /// Bytes of one vector, checked: [`Error::TooLarge`] if `dim` times the dtype's size
    /// overflows or exceeds `limits.max_value_len`.
    fn checked_vector_len(&self, limits: &Limits) -> Result<usize> {
        let len = self.dim.checked_mul(self.dtype.size());
        match len {
            Some(n) if (n as u64) <= limits.max_value_len => Ok(n),
            _ => Err(Error::TooLarge {
                declared: len.map_or(u64::MAX, |n| n as u64),
                cap: limits.max_value_len,
            }),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidArgument("a view needs a name".into()));
        }
        if self.dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "view {:?}: the dimension must be at least 1",
                self.name
            )));
        }
        Ok(())
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.dtype, self.dim)?;
        if let Some(t) = self.ttl {
            write!(f, " ttl {} ms", ttl_millis(t))?;
        }
        if self.layout == Layout::Recipe {
            f.write_str(" (recipe layout)")?;
        }
        Ok(())
    }
}

/// One entity's vector and when it was written ([`FeatureStore::read`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Feature<T> {
    /// The vector.
    pub values: ndarray::Array1<T>,
    /// When it was written.
    pub written_at: SystemTime,
}

/// Vectors of many entities of one view ([`FeatureStore::read_many`]): row `i` belongs
/// to the `i`-th id asked for. Rows of missing, expired or stale entities are zero and
/// `present[i]` is `false`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<T> {
    /// `(ids, dim)` values.
    pub values: ndarray::Array2<T>,
    /// Whether row `i` holds an entity's vector.
    pub present: Vec<bool>,
    /// When each present vector was written.
    pub written_at: Vec<Option<SystemTime>>,
}

impl<T> Rows<T> {
    /// `(values, presence mask)`.
    pub fn into_parts(self) -> (ndarray::Array2<T>, Vec<bool>) {
        (self.values, self.present)
    }

    /// Number of present rows.
    pub fn count_present(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }
}

/// [`Rows`] of a view of any dtype ([`FeatureStore::read_views`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRows {
    /// The view's name.
    pub view: String,
    /// `(ids, dim)` values of the view's dtype, C order.
    pub values: RawArray,
    /// Whether row `i` holds an entity's vector.
    pub present: Vec<bool>,
    /// When each present vector was written.
    pub written_at: Vec<Option<SystemTime>>,
}

impl RawRows {
    /// The rows as `T` (a [`Error::DTypeMismatch`] if the view holds another dtype).
    pub fn into_typed<T: Element>(self) -> Result<Rows<T>> {
        Ok(Rows {
            values: self.values.into_ndarray::<T, ndarray::Ix2>()?,
            present: self.present,
            written_at: self.written_at,
        })
    }
}

/// An online feature store: registered views, vectors per (view, entity). See the
/// [module docs](self) for the layout and why it was chosen.
///
/// * Views are registered once ([`register_view`](Self::register_view)) in a registry
///   key; any store under the same prefix finds them (fetched on first use and cached).
///   Registering a name again with another definition is [`Error::ViewConflict`]
///   unless [`replace_view`](Self::replace_view) is used.
/// * A vector of the wrong dtype or length is rejected before anything is sent.
/// * [`write_many`](Self::write_many) sends [`chunk_size`](Self::chunk_size) entities
///   per request (optionally each chunk in `MULTI`/`EXEC`), the TTL in the same
///   command, each chunk built just before it is sent (the direct connections pipeline
///   all chunks back to back); if a chunk fails, [`Error::PartialWrite`] says which
///   entities were written and which were not.
/// * [`read_many`](Self::read_many) returns an `Array2` plus a presence mask in one
///   round trip; [`with_max_age`](Self::with_max_age) makes older vectors count as
///   missing.
///
/// ```no_run
/// use ndarray::Array2;
/// use redstash::{FeatureStore, View};
/// use std::time::Duration;
/// # fn main() -> redstash::Result<()> {
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// let store = FeatureStore::new("fs");
/// store.register_view(&mut con, &View::of::<f32>("user_emb", 128).with_ttl(Duration::from_secs(3600)))?;
/// let ids: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
/// let emb = Array2::<f32>::zeros((1000, 128));
/// store.write_many(&mut con, "user_emb", &ids, &emb)?;
/// let rows = store.read_many::<f32, _, _>(&mut con, "user_emb", &ids[..10])?;
/// assert_eq!(rows.values.shape(), &[10, 128]);
/// assert!(rows.present.iter().all(|&p| p));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FeatureStore {
    prefix: String,
    views: Arc<RwLock<HashMap<String, View>>>,
    chunk_size: usize,
    atomic_chunks: bool,
    max_age: Option<Duration>,
    limits: Limits,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Little-endian vector bytes as native ones (a copy only on big-endian machines).
fn le_to_native(dst: &mut [u8], src: &[u8], unit: usize) {
    dst.copy_from_slice(src);
    if ByteOrder::NATIVE == ByteOrder::Big {
        swap_bytes_in_place(dst, unit);
    }
}

fn cmds_per_entity(view: &View) -> usize {
    match (view.layout, view.ttl) {
        (Layout::Recipe, Some(_)) => 2,
        _ => 1,
    }
}

/// A native-order vector as the little-endian bytes stored (a copy into `scratch` only
/// on big-endian machines).
fn as_le<'b>(row: &'b [u8], unit: usize, scratch: &'b mut Vec<u8>) -> &'b [u8] {
    if ByteOrder::NATIVE == ByteOrder::Big && unit > 1 {
        scratch.clear();
        scratch.extend_from_slice(row);
        swap_bytes_in_place(scratch, unit);
        scratch
    } else {
        row
    }
}

/// The entity ids of a write, in one buffer (no allocation per id).
struct Ids {
    text: String,
    ends: Vec<usize>,
}

impl Ids {
    fn new<N: AsRef<str>>(ids: &[N]) -> Self {
        let mut text = String::with_capacity(ids.iter().map(|i| i.as_ref().len()).sum());
        let mut ends = Vec::with_capacity(ids.len());
        for id in ids {
            text.push_str(id.as_ref());
            ends.push(text.len());
        }
        Ids { text, ends }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// A bulk write, shared by its chunks (built one at a time, as the connection sends
/// them) and the parse of their replies.
struct Write<'a> {
    view: View,
    /// `{prefix}:{view}:`, the keys' common start.
    key_prefix: String,
    ids: Ids,
    /// The vectors, C order, native byte order.
    data: Cow<'a, [u8]>,
    ts_ms: u64,
    chunk_size: usize,
    atomic: bool,
    /// A single write ([`FeatureStore::write`]): its request names its key.
    single: bool,
}

impl Write<'_> {
    fn key(&self, i: usize) -> String {
        let mut k = String::with_capacity(self.key_prefix.len() + 16);
        k.push_str(&self.key_prefix);
        k.push_str(self.ids.get(i));
        k
    }

    /// The vector of entity `i`.
    fn row(&self, i: usize) -> &[u8] {
        let vlen = self.view.vector_len();
        &self.data[i * vlen..(i + 1) * vlen]
    }

    fn chunks(&self) -> usize {
        self.ids.len().div_ceil(self.chunk_size)
    }

    fn chunk_items(&self, chunk: usize) -> Range<usize> {
        let start = chunk * self.chunk_size;
        start..(start + self.chunk_size).min(self.ids.len())
    }

    /// The request writing chunk `chunk`: its commands encoded straight into one
    /// buffer (see [`Packed`]), in `MULTI`/`EXEC` if the chunks are atomic.
    fn chunk(&self, chunk: usize) -> Request<'static> {
        let items = self.chunk_items(chunk);
        let key = self.single.then(|| self.key(items.start));
        let mut req = Request::new(key.as_deref());
        let vlen = self.view.vector_len();
        let unit = self.view.dtype.swap_unit();
        let ids_len = self.ids.ends[items.end - 1]
            - items.start.checked_sub(1).map_or(0, |i| self.ids.ends[i]);
        // Each entity: its key and vector plus at most 160 bytes of framing and fields.
        let size = items.len() * (self.key_prefix.len() + vlen + 160) + ids_len + 64;
        let mut p = Packed::with_capacity(size);
        if self.atomic {
            p.command(1);
            p.arg(b"MULTI");
        }
        let ttl = self.view.ttl_ms().map(|ms| ms.to_string());
        let mut swapped = Vec::new();
        match self.view.layout {
            Layout::Native => {
                // SET key <ts + vector> [PX ttl]: the constant parts encoded once.
                let head: &[u8] = if ttl.is_some() {
                    b"*5\r\n$3\r\nSET\r\n"
                } else {
                    b"*3\r\n$3\r\nSET\r\n"
                };
                let mut value_head = Vec::with_capacity(16);
                push_header(&mut value_head, b'$', TIMESTAMP_LEN + vlen);
                value_head.extend_from_slice(&self.ts_ms.to_le_bytes());
                let mut tail = b"\r\n".to_vec();
                if let Some(ms) = &ttl {
                    tail.extend_from_slice(b"$2\r\nPX\r\n");
                    push_header(&mut tail, b'$', ms.len());
                    tail.extend_from_slice(ms.as_bytes());
                    tail.extend_from_slice(b"\r\n");
                }
                for i in items {
                    p.raw(head, 1);
                    p.arg_pieces(&[self.key_prefix.as_bytes(), self.ids.get(i).as_bytes()]);
                    p.raw(&value_head, 0);
                    p.raw(as_le(self.row(i), unit, &mut swapped), 0);
                    p.raw(&tail, 0);
                }
            }
            Layout::Recipe => {
                // The recipe stores str(arr.dtype) (little-endian data, numpy's name),
                // the shape as JSON and str(time.time()).
                let shape = format!("[{}]", self.view.dim);
                let updated = format!("{:.6}", self.ts_ms as f64 / 1000.0);
                for i in items {
                    let key = self.key(i);
                    let data = as_le(self.row(i), unit, &mut swapped);
                    p.command(10);
                    for arg in [
                        &b"HSET"[..],
                        key.as_bytes(),
                        b"data",
                        data,
                        b"dtype",
                        self.view.dtype.name().as_bytes(),
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
        }
        if self.atomic {
            p.command(1);
            p.arg(b"EXEC");
        }
        req.push(p);
        req
    }

    /// The result of the write from what became of every chunk: the number written,
    /// or exactly which entities were written, refused, in flight (unknown) or never
    /// sent.
    fn outcome(&self, delivered: Delivered) -> Result<usize> {
        let per_item = cmds_per_entity(&self.view);
        let (deliveries, failure) = match delivered {
            // Fast path: every chunk fully written (no per-entity bookkeeping).
            Ok(all) => {
                if all.len() == self.chunks()
                    && all.iter().enumerate().all(|(c, replies)| {
                        chunk_all_ok(replies, self.chunk_items(c).len() * per_item, self.atomic)
                    })
                {
                    return Ok(self.ids.len());
                }
                (all.into_iter().map(Delivery::Answered).collect(), None)
            }
            Err(i) => (i.requests, i.failure),
        };
        let mut tally = Tally::default();
        let mut deliveries = deliveries.into_iter();
        for chunk in 0..self.chunks() {
            let items = self.chunk_items(chunk);
            let start = items.start;
            let answered = match deliveries.next().unwrap_or(Delivery::NotSent) {
                Delivery::Answered(replies) => Some(replies),
                Delivery::Refused(e) => {
                    let msg = e.to_string();
                    tally.refused(start, e);
                    for i in items.skip(1) {
                        tally.refused(i, Error::unexpected(msg.clone(), None));
                    }
                    continue;
                }
                Delivery::NotSent => {
                    items.for_each(|i| tally.not_sent(i));
                    continue;
                }
                Delivery::InFlight(partial) => {
                    if self.atomic {
                        // Only EXEC's reply says anything; without it all is unknown.
                        if partial.last().is_some_and(Option::is_some) {
                            Some(
                                partial
                                    .into_iter()
                                    .map(|v| v.unwrap_or(Value::Nil))
                                    .collect(),
                            )
                        } else {
                            items.for_each(|i| tally.unknown(i));
                            continue;
                        }
                    } else {
                        self.tally_in_flight(&mut tally, items, partial, per_item);
                        continue;
                    }
                }
            };
            let Some(replies) = answered else { continue };
            let outcome = chunk_outcome(replies, items.len(), per_item, self.atomic, &|i| {
                self.key(start + i)
            });
            for (i, r) in outcome.into_iter().enumerate() {
                match r {
                    Ok(()) => tally.written(start + i),
                    Err(e) => tally.refused(start + i, e),
                }
            }
        }
        tally.finish(failure).map(|_| self.ids.len())
    }

    /// The entities of a chunk (not a transaction) cut short: an entity is written or
    /// refused when all its replies were read, else unknown.
    fn tally_in_flight(
        &self,
        tally: &mut Tally,
        items: Range<usize>,
        partial: Vec<Option<Value>>,
        per_item: usize,
    ) {
        let mut it = partial.into_iter();
        for i in items {
            let replies: Vec<Option<Value>> = it.by_ref().take(per_item).collect();
            if replies.len() < per_item || replies.iter().any(Option::is_none) {
                tally.unknown(i);
                continue;
            }
            let err = replies.into_iter().flatten().find_map(|v| match v {
                Value::ServerError(e) => Some(Error::redis(e.into(), Some(&self.key(i)))),
                _ => None,
            });
            match err {
                Some(e) => tally.refused(i, e),
                None => tally.written(i),
            }
        }
    }
}

/// Whether a chunk of `n` commands was fully written: one non-error reply per command
/// (for a transaction: `MULTI`, `QUEUED`s, then `EXEC`'s array of them).
fn chunk_all_ok(replies: &[Value], n: usize, atomic: bool) -> bool {
    let ok = |v: &Value| !matches!(v, Value::ServerError(_));
    if !atomic {
        return replies.len() == n && replies.iter().all(ok);
    }
    match replies {
        [multi, queued @ .., Value::Array(exec)] => {
            queued.len() == n
                && exec.len() == n
                && ok(multi)
                && queued.iter().all(ok)
                && exec.iter().all(ok)
        }
        _ => false,
    }
}

/// Per-item outcome of a chunk's replies: `Ok(())` or the first error of the item.
fn chunk_outcome(
    replies: Vec<Value>,
    n_items: usize,
    per_item: usize,
    atomic: bool,
    keys: &dyn Fn(usize) -> String,
) -> Vec<Result<()>> {
    let item_err = |v: Value, i: usize| -> Option<Error> {
        match v {
            Value::ServerError(e) => Some(Error::redis(e.into(), Some(&keys(i)))),
            _ => None,
        }
    };
    let replies = if atomic {
        // MULTI, one QUEUED (or a queueing error) per command, then EXEC.
        let mut it = replies.into_iter();
        let multi = it.next().unwrap_or(Value::Nil);
        let mut queued: Vec<Value> = it.by_ref().take(n_items * per_item).collect();
        let exec = it.next().unwrap_or(Value::Nil);
        let first_queue_error = queued
            .iter()
            .position(|v| matches!(v, Value::ServerError(_)))
            .map(|p| p / per_item);
        match exec {
            Value::Array(inner) if inner.len() == n_items * per_item => inner,
            other => {
                // The whole transaction failed: report the most telling error.
                let err = if let Value::ServerError(e) = multi {
                    Error::redis(e.into(), None)
                } else if let Some(i) = first_queue_error {
                    let v = std::mem::replace(&mut queued[i * per_item], Value::Nil);
                    item_err(v, i).unwrap_or_else(|| Error::unexpected("transaction failed", None))
                } else if let Value::ServerError(e) = other {
                    Error::redis(e.into(), None)
                } else {
                    Error::unexpected(format!("EXEC replied {other:?}"), None)
                };
                let msg = err.to_string();
                let mut out = Vec::with_capacity(n_items);
                out.push(Err(err));
                for _ in 1..n_items {
                    out.push(Err(Error::unexpected(
                        format!("transaction failed: {msg}"),
                        None,
                    )));
                }
                return out;
            }
        }
    } else {
        replies
    };
    let mut out = Vec::with_capacity(n_items);
    let mut it = replies.into_iter();
    for i in 0..n_items {
        let mut res = Ok(());
        for _ in 0..per_item {
            let v = it.next().unwrap_or(Value::Nil);
            if res.is_ok()
                && let Some(e) = item_err(v, i)
            {
                res = Err(e);
            }
        }
        out.push(res);
    }
    out
}

/// What a read of one (view, entity) found.
enum Found<'a> {
    Missing,
    Vector {
        ts_ms: Option<u64>,
        data: &'a [u8],
        big_endian: bool,
    },
}

fn corrupt(key: &str, reason: impl Into<String>) -> Error {
    Error::NotAnArray {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn bytes_of<'a>(v: &'a Value, key: &str, what: &str) -> Result<Option<&'a [u8]>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.as_bytes())),
        Value::ServerError(e) => Err(Error::redis(e.clone().into(), Some(key))),
        other => Err(Error::unexpected(
            format!("expected {what}, got {other:?}"),
            Some(key.to_owned()),
        )),
    }
}

/// Parse the reply to one entity's read command (`GET` or `HMGET`).
fn parse_found<'a>(view: &View, key: &str, v: &'a Value) -> Result<Found<'a>> {
    match view.layout {
        Layout::Native => {
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
        Layout::Recipe => {
            let fields = match v {
                Value::Array(f) if f.len() == 4 => f,
                Value::ServerError(e) => return Err(Error::redis(e.clone().into(), Some(key))),
                other => {
                    return Err(Error::unexpected(
                        format!("HMGET of 4 fields replied {other:?}"),
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
            let dtype = std::str::from_utf8(dtype)
                .map_err(|_| corrupt(key, "the dtype field is not UTF-8"))?;
            let (found, order) = DType::parse_any(dtype)
                .map_err(|_| corrupt(key, format!("the dtype field {dtype:?} is not a dtype")))?;
            if found != view.dtype {
                return Err(Error::DTypeMismatch {
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
}

fn read_cmd(view: &View, key: &str) -> Cmd {
    match view.layout {
        Layout::Native => {
            let mut c = redis::cmd("GET");
            c.arg(key);
            c
        }
        Layout::Recipe => {
            let mut c = redis::cmd("HMGET");
            c.arg(key)
                .arg("data")
                .arg("dtype")
                .arg("shape")
                .arg("updated_at");
            c
        }
    }
}

/// Fill [`RawRows`] from the replies of one view's read commands.
fn parse_rows(
    view: &View,
    keys: &[String],
    replies: &[Value],
    max_age: Option<Duration>,
) -> Result<RawRows> {
    let n = keys.len();
    let vlen = view.vector_len();
    let unit = view.dtype.swap_unit();
    let mut buf = vec![0u8; n * vlen];
    let mut present = vec![false; n];
    let mut written_at = vec![None; n];
    let now = now_ms();
    let max_age_ms = max_age.map(|d| d.as_millis() as u64);
    for (i, (key, v)) in keys.iter().zip(replies).enumerate() {
        let Found::Vector {
            ts_ms,
            data,
            big_endian,
        } = parse_found(view, key, v)?
        else {
            continue;
        };
        if let Some(max) = max_age_ms {
            // Without a timestamp a vector's age is unknown: stale.
            match ts_ms {
                Some(ts) if now.saturating_sub(ts) <= max => {}
                _ => continue,
            }
        }
        let row = &mut buf[i * vlen..(i + 1) * vlen];
        if big_endian {
            row.copy_from_slice(data);
            if ByteOrder::NATIVE == ByteOrder::Little {
                swap_bytes_in_place(row, unit);
            }
        } else {
            le_to_native(row, data, unit);
        }
        if view.dtype == DType::Bool && row.iter().any(|&b| b > 1) {
            return Err(corrupt(key, "a bool vector holds bytes other than 0 and 1"));
        }
        present[i] = true;
        written_at[i] = ts_ms.map(|t| UNIX_EPOCH + Duration::from_millis(t));
    }
    Ok(RawRows {
        view: view.name.clone(),
        values: RawArray::new(view.dtype, vec![n, view.dim], Order::C, Bytes::from(buf))?,
        present,
        written_at,
    })
}

impl FeatureStore {
    /// A feature store under `prefix` (`""` for none: keys `{view}:{entity}`, the
    /// recipe's). Views already registered under the prefix are found on first use.
    pub fn new(prefix: impl Into<String>) -> Self {
        FeatureStore {
            prefix: prefix.into(),
            views: Arc::new(RwLock::new(HashMap::new())),
            chunk_size: DEFAULT_CHUNK_SIZE,
            atomic_chunks: false,
            max_age: None,
            limits: Limits::default(),
        }
    }

    /// Entities per request of [`write_many`](Self::write_many) (default
    /// [`DEFAULT_CHUNK_SIZE`]; a round trip each on redis-rs connections).
    pub fn chunk_size(mut self, entities: usize) -> Self {
        self.chunk_size = entities.max(1);
        self
    }

    /// Send each chunk of [`write_many`](Self::write_many) (and each
    /// [`write`](Self::write)) as a `MULTI`/`EXEC` transaction. On a Redis Cluster a
    /// transaction needs keys of one slot: the entity ids of a chunk must share a hash
    /// tag (e.g. `{batch7}:42`), otherwise the write fails with [`Error::CrossSlot`]
    /// before anything is sent.
    pub fn atomic_chunks(mut self, atomic: bool) -> Self {
        self.atomic_chunks = atomic;
        self
    }

    /// Bounds on what a read trusts: one view's vector (`dim` times the dtype's size,
    /// whether registered or read from the registry) and the rows one
    /// [`read_many`](Self::read_many) returns for a view (ids times vector bytes, present
    /// or not) are at most `limits.max_value_len` bytes, and the rows of all the views
    /// of one read ([`read_views`](Self::read_views)) at most `limits.max_call_bytes`,
    /// else [`Error::TooLarge`] before anything is sent or allocated. Default
    /// [`Limits::default`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Treat vectors written longer than `max_age` ago as missing when reading.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The registry key.
    pub fn registry_key(&self) -> String {
        join_key(&self.prefix, REGISTRY)
    }

    /// The key of an entity's vector in a view.
    pub fn key(&self, view: &str, entity_id: &str) -> String {
        let mut k = join_key(&self.prefix, view);
        k.push(':');
        k.push_str(entity_id);
        k
    }

    /// The views known to this store (and its clones) so far, sorted by name; see
    /// [`load_views`](Self::load_views) to read them all from the registry.
    pub fn views(&self) -> Vec<View> {
        let map = self.views.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<View> = map.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The cached definition of `view`, if known.
    pub fn view(&self, view: &str) -> Option<View> {
        let map = self.views.read().unwrap_or_else(|e| e.into_inner());
        map.get(view).cloned()
    }

    fn remember(views: &RwLock<HashMap<String, View>>, v: View) {
        let mut map = views.write().unwrap_or_else(|e| e.into_inner());
        map.insert(v.name.clone(), v);
    }

    /// The definitions of `names`, from the cache or (for those not cached) the registry.
    fn resolve(&self, names: Vec<String>) -> Step<'static, Vec<View>> {
        let missing: Vec<String> = {
            let map = self.views.read().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .filter(|n| !map.contains_key(n.as_str()))
                .cloned()
                .collect()
        };
        let views = Arc::clone(&self.views);
        let lookup = move |views: &RwLock<HashMap<String, View>>, names: &[String]| {
            let map = views.read().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .map(|n| {
                    map.get(n)
                        .cloned()
                        .ok_or_else(|| Error::UnknownView(n.clone()))
                })
                .collect::<Result<Vec<View>>>()
        };
        if missing.is_empty() {
            return match lookup(&views, &names) {
                Ok(v) => Step::Done(v),
                // Removed from the cache meanwhile: fetch it.
                Err(_) => self.fetch_then(names.clone(), names, views, lookup),
            };
        }
        self.fetch_then(missing, names, views, lookup)
    }

    fn fetch_then(
        &self,
        missing: Vec<String>,
        names: Vec<String>,
        views: Arc<RwLock<HashMap<String, View>>>,
        lookup: impl FnOnce(&RwLock<HashMap<String, View>>, &[String]) -> Result<Vec<View>>
        + Send
        + 'static,
    ) -> Step<'static, Vec<View>> {
        let reg = self.registry_key();
        let limits = self.limits;
        let mut c = redis::cmd("HMGET");
        c.arg(&reg);
        for n in &missing {
            c.arg(n);
        }
        Step::then(Request::single(c, Some(&reg)), move |mut r| {
            let values = r.next_array_of(missing.len())?;
            r.finish()?;
            for (name, v) in missing.iter().zip(values) {
                match bytes_of(&v, &reg, "a view definition")? {
                    Some(json) => Self::remember(&views, View::from_json(name, json, &limits)?),
                    None => return Err(Error::UnknownView(name.clone())),
                }
            }
            lookup(&views, &names)
        })
    }

    /// Plan of [`register_view`](Self::register_view).
    pub fn plan_register_view(&self, view: &View) -> Result<Step<'static, ()>> {
        view.validate()?;
        view.checked_vector_len(&self.limits)?;
        let limits = self.limits;
        let reg = self.registry_key();
        let json = view.to_json()?;
        let mut req = Request::new(Some(&reg));
        let mut c = redis::cmd("HSETNX");
        c.arg(&reg).arg(&view.name).arg(&json);
        req.push(c);
        let mut c = redis::cmd("HGET");
        c.arg(&reg).arg(&view.name);
        req.push(c);
        let views = Arc::clone(&self.views);
        let view = view.clone();
        Ok(Step::then(req, move |mut r| {
            r.next_ok()?;
            let current = r.next_raw()?;
            r.finish()?;
            let registered = match bytes_of(&current, &reg, "a view definition")? {
                Some(json) => View::from_json(&view.name, json, &limits)?,
                None => {
                    return Err(Error::unexpected(
                        "the view vanished from the registry while registering it",
                        Some(reg),
                    ));
                }
            };
            if registered != view {
                return Err(Error::ViewConflict {
                    view: view.name.clone(),
                    registered: registered.to_string(),
                    requested: view.to_string(),
                });
            }
            Self::remember(&views, view);
            Ok(())
        }))
    }

    /// Plan of [`replace_view`](Self::replace_view).
    pub fn plan_replace_view(&self, view: &View) -> Result<Step<'static, ()>> {
        view.validate()?;
        let reg = self.registry_key();
        let mut c = redis::cmd("HSET");
        c.arg(&reg).arg(&view.name).arg(view.to_json()?);
        let views = Arc::clone(&self.views);
        let view = view.clone();
        Ok(Step::then(Request::single(c, Some(&reg)), move |mut r| {
            r.next_ok()?;
            r.finish()?;
            Self::remember(&views, view);
            Ok(())
        }))
    }

    /// Plan of [`load_views`](Self::load_views).
    pub fn plan_load_views(&self) -> Result<Step<'static, Vec<View>>> {
        let reg = self.registry_key();
        let limits = self.limits;
        let mut c = redis::cmd("HGETALL");
        c.arg(&reg);
        let views = Arc::clone(&self.views);
        Ok(Step::then(Request::single(c, Some(&reg)), move |mut r| {
            let pairs = r.next_pairs()?;
            r.finish()?;
            let mut out = Vec::with_capacity(pairs.len());
            for (k, v) in &pairs {
                let name = bytes_of(k, &reg, "a view name")?.unwrap_or_default();
                let name = String::from_utf8_lossy(name).into_owned();
                let json = bytes_of(v, &reg, "a view definition")?.unwrap_or_default();
                out.push(View::from_json(&name, json, &limits)?);
            }
            let mut map = views.write().unwrap_or_else(|e| e.into_inner());
            map.clear();
            for v in &out {
                map.insert(v.name.clone(), v.clone());
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }))
    }

    /// Check a vector's dtype and length against its view.
    fn check(view: &View, dtype: DType, shape: &[usize], rows: Option<usize>) -> Result<()> {
        if dtype != view.dtype {
            return Err(Error::DTypeMismatch {
                expected: view.dtype,
                found: dtype,
            });
        }
        let ok = match rows {
            None => shape == [view.dim],
            Some(n) => shape == [n, view.dim],
        };
        if !ok {
            return Err(Error::ShapeMismatch {
                expected: match rows {
                    None => format!("[{}] (view {:?})", view.dim, view.name),
                    Some(n) => format!("[{n}, {}] (view {:?}, {n} ids)", view.dim, view.name),
                },
                found: shape.to_vec(),
            });
        }
        Ok(())
    }

    /// The plan of a bulk write: its chunks are built one at a time as the connection
    /// sends them (so that building one overlaps with the server's work on the previous
    /// ones); nothing is sent if the input does not fit the view.
    #[allow(clippy::too_many_arguments)]
    fn build_write<'a>(
        &self,
        view: &View,
        key_prefix: String,
        ids: Ids,
        dtype: DType,
        shape: &[usize],
        data: Cow<'a, [u8]>,
        single: bool,
    ) -> Result<Step<'a, usize>> {
        let n = ids.len();
        Self::check(view, dtype, shape, (!single).then_some(n))?;
        if n == 0 {
            return Ok(Step::Done(0));
        }
        let write = Arc::new(Write {
            view: view.clone(),
            key_prefix,
            ids,
            data,
            ts_ms: now_ms(),
            chunk_size: self.chunk_size,
            atomic: self.atomic_chunks,
            single,
        });
        let builder = Arc::clone(&write);
        let chunks = (0..write.chunks()).map(move |c| builder.chunk(c));
        Ok(Step::SendAll(
            Requests::new(chunks),
            Box::new(move |delivered| Ok(Step::Done(write.outcome(delivered)?))),
        ))
    }

    /// A write plan, resolving the view first. It borrows the input when it is
    /// contiguous (else copies it once, in C order).
    fn plan_write_any<'a, A: AsArray + ?Sized>(
        &self,
        view: &str,
        ids: Ids,
        values: &'a A,
        single: bool,
    ) -> Result<Step<'a, usize>> {
        let (dtype, shape, data) = match values.try_array_ref() {
            Some(a) => (a.dtype(), a.shape().to_vec(), c_order_bytes(&a)),
            None => values.with_array_ref(|a| {
                (
                    a.dtype(),
                    a.shape().to_vec(),
                    Cow::Owned(c_order_bytes(&a).into_owned()),
                )
            }),
        };
        let key_prefix = self.key(view, "");
        if let Some(v) = self.view(view) {
            return self.build_write(&v, key_prefix, ids, dtype, &shape, data, single);
        }
        let this = self.clone();
        Ok(self
            .resolve(vec![view.to_owned()])
            .narrow()
            .and_then(move |views| {
                let v = views
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::unexpected("no view resolved", None))?;
                this.build_write(&v, key_prefix, ids, dtype, &shape, data, single)
            }))
    }

    /// Plan of [`write`](Self::write).
    pub fn plan_write<'a, A: AsArray + ?Sized>(
        &self,
        view: &str,
        entity_id: &str,
        vector: &'a A,
    ) -> Result<Step<'a, ()>> {
        let step = self.plan_write_any(view, Ids::new(&[entity_id]), vector, true)?;
        // A single write reports its own error, not a partial write of one.
        Ok(unwrap_single(step.map(|_| ())))
    }

    /// Plan of [`write_many`](Self::write_many).
    pub fn plan_write_many<'a, N: AsRef<str>, A: AsArray + ?Sized>(
        &self,
        view: &str,
        entity_ids: &[N],
        values: &'a A,
    ) -> Result<Step<'a, usize>> {
        self.plan_write_any(view, Ids::new(entity_ids), values, false)
    }

    /// Plan of [`read_views`](Self::read_views).
    pub fn plan_read_views<N: AsRef<str>, V: AsRef<str>>(
        &self,
        entity_ids: &[N],
        views: &[V],
    ) -> Result<Step<'static, Vec<RawRows>>> {
        let ids: Vec<String> = entity_ids.iter().map(|i| i.as_ref().to_owned()).collect();
        let names: Vec<String> = views.iter().map(|v| v.as_ref().to_owned()).collect();
        let this = self.clone();
        Ok(self
            .resolve(names)
            .and_then(move |views| this.read_step(&ids, views)))
    }

    fn read_step(&self, ids: &[String], views: Vec<View>) -> Result<Step<'static, Vec<RawRows>>> {
        // The rows are allocated for every id, present or not: bound them first, each
        // view's against the value limit, all views' together against the call's.
        let mut budget = crate::codec::CallBudget::new(&self.limits);
        for v in &views {
            let vlen = v.checked_vector_len(&self.limits)?;
            let total = vlen.checked_mul(ids.len());
            if total.is_none_or(|t| (t as u64) > self.limits.max_value_len) {
                return Err(Error::TooLarge {
                    declared: total.map_or(u64::MAX, |t| t as u64),
                    cap: self.limits.max_value_len,
                });
            }
            budget.charge(total.map_or(u64::MAX, |t| t as u64))?;
        }
        if ids.is_empty() || views.is_empty() {
            let out = views
                .iter()
                .map(|v| parse_rows(v, &[], &[], None))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Step::Done(out));
        }
        let mut req = Request::new(None);
        let mut keys: Vec<Vec<String>> = Vec::with_capacity(views.len());
        for v in &views {
            let ks: Vec<String> = ids.iter().map(|id| self.key(&v.name, id)).collect();
            match v.layout {
                // One MGET per native view: the cheapest read of many strings.
                Layout::Native => {
                    let mut c = redis::cmd("MGET");
                    for k in &ks {
                        c.arg(k);
                    }
                    req.push(c);
                }
                Layout::Recipe => {
                    for k in &ks {
                        req.push(read_cmd(v, k));
                    }
                }
            }
            keys.push(ks);
        }
        let max_age = self.max_age;
        Ok(Step::send(req, move |mut r| {
            let mut out = Vec::with_capacity(views.len());
            // MGET answers nil for a key of another type: those keys are checked below.
            let mut nil_keys: Vec<String> = Vec::new();
            for (v, ks) in views.iter().zip(&keys) {
                let values: Vec<Value> = match v.layout {
                    Layout::Native => r.next_array_of(ks.len())?,
                    Layout::Recipe => (0..ks.len()).map(|_| r.next_raw()).collect::<Result<_>>()?,
                };
                if v.layout == Layout::Native {
                    nil_keys.extend(
                        ks.iter()
                            .zip(&values)
                            .filter(|(_, v)| matches!(v, Value::Nil))
                            .map(|(k, _)| k.clone()),
                    );
                }
                out.push(parse_rows(v, ks, &values, max_age)?);
            }
            r.finish()?;
            Ok(check_not_wrong_type(nil_keys, out))
        }))
    }

    /// Plan of [`read_many`](Self::read_many).
    pub fn plan_read_many<T: Element, N: AsRef<str>>(
        &self,
        view: &str,
        entity_ids: &[N],
    ) -> Result<Step<'static, Rows<T>>> {
        if let Some(v) = self.view(view) {
            // Reject a wrong element type before sending anything.
            Self::check(&v, T::DTYPE, &[v.dim], None)?;
        }
        Ok(self
            .plan_read_views(entity_ids, &[view])?
            .try_map(|mut rows| {
                rows.pop()
                    .ok_or_else(|| Error::unexpected("no rows read", None))?
                    .into_typed::<T>()
            }))
    }

    /// Plan of [`read`](Self::read).
    pub fn plan_read<T: Element>(
        &self,
        view: &str,
        entity_id: &str,
    ) -> Result<Step<'static, Option<Feature<T>>>> {
        Ok(self
            .plan_read_many::<T, _>(view, &[entity_id])?
            .map(|rows| {
                let Rows {
                    values,
                    present,
                    written_at,
                } = rows;
                if !present.first().copied().unwrap_or(false) {
                    return None;
                }
                Some(Feature {
                    values: values.row(0).to_owned(),
                    written_at: written_at.first().copied().flatten().unwrap_or(UNIX_EPOCH),
                })
            }))
    }

    /// Plan of [`delete`](Self::delete).
    pub fn plan_delete(&self, view: &str, entity_id: &str) -> Result<Step<'static, bool>> {
        let key = self.key(view, entity_id);
        let mut c = redis::cmd("DEL");
        c.arg(&key);
        Ok(Step::then(Request::single(c, Some(&key)), |mut r| {
            let n = r.next_int()?;
            r.finish()?;
            Ok(n > 0)
        }))
    }

    sync_and_async! {
        /// Register a view in the registry (once: a second registration with the same
        /// definition is fine, one with another definition is [`Error::ViewConflict`]).
        fn register_view / register_view_async(view: &View) -> () = plan_register_view;
        /// Register a view, replacing any definition of the same name. Vectors already
        /// stored under the old definition are not converted.
        fn replace_view / replace_view_async(view: &View) -> () = plan_replace_view;
        /// Read every view of the registry (and cache them), sorted by name.
        fn load_views / load_views_async() -> Vec<View> = plan_load_views;
        /// Write one entity's vector (shape `[dim]`, the view's dtype), with the view's
        /// TTL in the same command.
        fn write / write_async<A: AsArray>(view: &str, entity_id: &str, vector: &A) -> () = plan_write;
        /// Write the rows of `values` (shape `[ids, dim]`, the view's dtype) for
        /// `entity_ids`, [`chunk_size`](Self::chunk_size) entities per request, the TTL
        /// in the same command. Returns the number written; if any entity failed,
        /// [`Error::PartialWrite`] says which entities were written and which were not
        /// (every chunk is sent).
        fn write_many / write_many_async<N: AsRef<str>, A: AsArray>(view: &str, entity_ids: &[N], values: &A) -> usize = plan_write_many;
        /// Read one entity's vector; `None` if missing, expired or older than the max age.
        fn read / read_async<T: Element>(view: &str, entity_id: &str) -> Option<Feature<T>> = plan_read;
        /// Read many entities' vectors in one round trip: an `(ids, dim)` array, a
        /// presence mask (missing, expired and stale rows are zero and `false`) and the
        /// write timestamps.
        fn read_many / read_many_async<T: Element, N: AsRef<str>>(view: &str, entity_ids: &[N]) -> Rows<T> = plan_read_many;
        /// Read several views of many entities in one round trip, one [`RawRows`] per
        /// view, in the order of `views`.
        fn read_views / read_views_async<N: AsRef<str>, V: AsRef<str>>(entity_ids: &[N], views: &[V]) -> Vec<RawRows> = plan_read_views;
        /// Delete one entity's vector in a view; `true` if it existed.
        fn delete / delete_async(view: &str, entity_id: &str) -> bool = plan_delete;
    }
}

/// MGET reports keys of another type as missing: if any key it found missing exists
/// (one `EXISTS`, only when some rows are missing), find it and fail with `WRONGTYPE`.
fn check_not_wrong_type(nil_keys: Vec<String>, out: Vec<RawRows>) -> Step<'static, Vec<RawRows>> {
    if nil_keys.is_empty() {
        return Step::Done(out);
    }
    let mut c = redis::cmd("EXISTS");
    for k in &nil_keys {
        c.arg(k);
    }
    let key = nil_keys.first().filter(|_| nil_keys.len() == 1).cloned();
    Step::send(Request::single(c, key.as_deref()), move |mut r| {
        let existing = r.next_int()?;
        r.finish()?;
        if existing == 0 {
            return Ok(Step::Done(out));
        }
        let mut req = Request::new(None);
        for k in &nil_keys {
            let mut c = redis::cmd("TYPE");
            c.arg(k);
            req.push(c);
        }
        Ok(Step::then(req, move |mut types| {
            for k in &nil_keys {
                let t = match reply_ok(types.next_raw()?, k)? {
                    Value::SimpleString(s) => s,
                    Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    Value::Okay => "string".into(),
                    _ => continue,
                };
                // "string": written since the MGET, so it was missing then.
                if t != "none" && t != "string" {
                    let e = redis::make_extension_error(
                        "WRONGTYPE".into(),
                        Some(format!(
                            "Operation against a key holding the wrong kind of value ({t})"
                        )),
                    );
                    return Err(Error::redis(e, Some(k)));
                }
            }
            types.finish()?;
            Ok(out)
        }))
    })
}

/// A single write's [`Error::PartialWrite`] becomes its underlying error.
fn unwrap_single(step: Step<'_, ()>) -> Step<'_, ()> {
    step.map_err(|e| match e {
        Error::PartialWrite { source, .. } => *source,
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Command;

    fn write(view: View, atomic: bool, data: &[u8]) -> Write<'_> {
        Write {
            view,
            key_prefix: "fs:v:".into(),
            ids: Ids::new(&["a", "", "entity-2"]),
            data: Cow::Borrowed(data),
            ts_ms: 1_700_000_000_123,
            chunk_size: 2,
            atomic,
            single: false,
        }
    }

    /// The commands of chunk `c` as redis-rs would pack them.
    fn expected(w: &Write<'_>, c: usize) -> Vec<u8> {
        let mut out = Vec::new();
        if w.atomic {
            redis::cmd("MULTI").write_packed_command(&mut out);
        }
        for i in w.chunk_items(c) {
            let key = w.key(i);
            let mut le = w.row(i).to_vec();
            if ByteOrder::NATIVE == ByteOrder::Big {
                swap_bytes_in_place(&mut le, w.view.dtype.swap_unit());
            }
            match w.view.layout {
                Layout::Native => {
                    let mut value = w.ts_ms.to_le_bytes().to_vec();
                    value.extend_from_slice(&le);
                    let mut set = redis::cmd("SET");
                    set.arg(&key).arg(value);
                    if let Some(ms) = w.view.ttl_ms() {
                        set.arg("PX").arg(ms);
                    }
                    set.write_packed_command(&mut out);
                }
                Layout::Recipe => {
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg("data")
                        .arg(le)
                        .arg("dtype")
                        .arg(w.view.dtype.name())
                        .arg("shape")
                        .arg(format!("[{}]", w.view.dim))
                        .arg("updated_at")
                        .arg("1700000000.123000")
                        .write_packed_command(&mut out);
                    if let Some(ms) = w.view.ttl_ms() {
                        redis::cmd("PEXPIRE")
                            .arg(&key)
                            .arg(ms)
                            .write_packed_command(&mut out);
                    }
                }
            }
        }
        if w.atomic {
            redis::cmd("EXEC").write_packed_command(&mut out);
        }
        out
    }

    #[test]
    fn chunks_are_the_commands_redis_rs_would_send() {
        let data: Vec<u8> = (0..3 * 4 * 4).map(|i| i as u8).collect();
        for layout in [Layout::Native, Layout::Recipe] {
            for ttl in [None, Some(Duration::from_millis(3_600_000))] {
                for atomic in [false, true] {
                    let mut view = View::of::<f32>("v", 4).with_layout(layout);
                    if let Some(t) = ttl {
                        view = view.with_ttl(t);
                    }
                    let w = write(view, atomic, &data);
                    assert_eq!(w.chunks(), 2);
                    for c in 0..2 {
                        let req = w.chunk(c);
                        let want = expected(&w, c);
                        let Some(Command::Packed(p)) = req.commands().first() else {
                            panic!("not packed");
                        };
                        assert_eq!(p.as_bytes(), &want[..], "{layout:?} {ttl:?} {atomic}");
                        let n = w.chunk_items(c).len() * cmds_per_entity(&w.view);
                        assert_eq!(req.len(), n + if atomic { 2 } else { 0 });
                        assert_eq!(p.to_cmds().unwrap().len(), req.len());
                    }
                }
            }
        }
    }

    #[test]
    fn ids_and_keys() {
        let ids = Ids::new(&["a", "", "bc"]);
        assert_eq!(ids.len(), 3);
        assert_eq!((ids.get(0), ids.get(1), ids.get(2)), ("a", "", "bc"));
        let data = [0u8; 3 * 4 * 4];
        let w = write(View::of::<f32>("v", 4), false, &data);
        assert_eq!(w.key(2), "fs:v:entity-2");
        assert_eq!(w.key(1), "fs:v:");
    }
}
