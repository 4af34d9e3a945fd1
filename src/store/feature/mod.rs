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
//! A view registered with [`Layout::Hash`] reads and writes the hash layout of the common Python recipe
//! instead: `{prefix}:{view}:{entity_id}` (with prefix `""`: `{view}:{entity_id}`, the
//! recipe's `{name}:{entity_id}`) is a hash with fields `data` (raw vector bytes),
//! `dtype` (`"float32"`), `shape` (JSON, `[128]`) and `updated_at` (`str(time.time())`),
//! so a Python service using the recipe and a Rust service share data.
//!
//! # Code
//!
//! `view` (a view's definition, its registry JSON and input checks), `registry` (the
//! registry hash and the cache of views), `layout` (each layout's commands and parse, the
//! only code that depends on the layout), `write` (a bulk write's chunks), `outcome`
//! (what became of each entity of a write), `read` (reads into rows with a presence
//! mask).

mod layout;
mod outcome;
mod read;
mod registry;
mod view;
mod write;

pub use layout::{Layout, TIMESTAMP_LEN};
pub use read::{Feature, RawRows, Rows};
pub use view::View;
pub use write::DEFAULT_CHUNK_ENTITIES;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::array::AsArray;
use crate::codec::Limits;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::exec::{Request, Step};
use crate::store::{join_key, sync_and_async};
use registry::REGISTRY;

/// An online feature store: registered views, vectors per (view, entity). See the
/// [module docs](self) for the layout and why it was chosen.
///
/// * Views are registered once ([`register_view`](Self::register_view)) in a registry
///   key; any store under the same prefix finds them (fetched on first use and cached).
///   Registering a name again with another definition is [`Error::ViewConflict`]
///   unless [`replace_view`](Self::replace_view) is used.
/// * A vector of the wrong dtype or length is rejected before anything is sent.
/// * [`write_many`](Self::write_many) sends [`with_chunk_entities`](Self::with_chunk_entities) entities
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

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A value that is not what the view says it is.
pub(super) fn corrupt(key: &str, reason: impl Into<String>) -> Error {
    Error::corrupt("feature", reason).at_key(key)
}

/// A reply (or a field of one) as bytes; `Nil` is `None`.
pub(super) fn bytes_of<'a>(v: &'a Value, key: &str, what: &str) -> Result<Option<&'a [u8]>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.as_bytes())),
        Value::ServerError(e) => Err(Error::redis(e.clone().into(), Some(key))),
        other => Err(Error::unexpected(
            format!("expected {what}, got {}", crate::exec::describe(other)),
            Some(key.to_owned()),
        )),
    }
}

impl FeatureStore {
    /// A feature store under `prefix` (`""` for none: keys `{view}:{entity}`, the
    /// recipe's). Views already registered under the prefix are found on first use.
    pub fn new(prefix: impl Into<String>) -> Self {
        FeatureStore {
            prefix: prefix.into(),
            views: Arc::new(RwLock::new(HashMap::new())),
            chunk_size: DEFAULT_CHUNK_ENTITIES,
            atomic_chunks: false,
            max_age: None,
            limits: Limits::default(),
        }
    }

    /// Entities per request of [`write_many`](Self::write_many) (default
    /// [`DEFAULT_CHUNK_ENTITIES`]; a round trip each on redis-rs connections).
    /// Zero is refused: writes then fail with [`Error::InvalidArgument`].
    pub fn with_chunk_entities(mut self, entities: usize) -> Self {
        self.chunk_size = entities;
        self
    }

    /// Send each chunk of [`write_many`](Self::write_many) (and each
    /// [`write`](Self::write)) as a `MULTI`/`EXEC` transaction. On a Redis Cluster a
    /// transaction needs keys of one slot: the entity ids of a chunk must share a hash
    /// tag (e.g. `{batch7}:42`), otherwise the write fails with [`Error::CrossSlot`]
    /// before anything is sent.
    pub fn with_atomic_chunks(mut self, atomic: bool) -> Self {
        self.atomic_chunks = atomic;
        self
    }

    /// Bounds on what a read trusts: one view's vector (`dim` times the dtype's size,
    /// whether registered or read from the registry) and the rows one
    /// [`read_many`](Self::read_many) returns for a view (ids times vector bytes, present
    /// or not) are at most `limits.max_value_len` bytes, and the rows of all the views
    /// of one read ([`read_views`](Self::read_views)) at most `limits.max_call_bytes`,
    /// else [`Error::InvalidValue`] (too large) before anything is sent or allocated. Default
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
        /// `entity_ids`, [`with_chunk_entities`](Self::with_chunk_entities) entities per request, the TTL
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
