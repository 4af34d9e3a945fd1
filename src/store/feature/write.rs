//! Bulk writes: the entities of a write cut into chunks, each chunk's commands encoded
//! straight into one buffer just before it is sent.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use super::{FeatureStore, View, now_ms};
use crate::array::{AsArray, c_order_bytes};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::exec::{Packed, Request, Requests, Step};

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
pub const DEFAULT_CHUNK_ENTITIES: usize = 2_000;

/// The entity ids of a write, in one buffer (no allocation per id).
pub(super) struct Ids {
    text: String,
    pub(super) ends: Vec<usize>,
}

impl Ids {
    pub(super) fn new<N: AsRef<str>>(ids: &[N]) -> Self {
        let mut text = String::with_capacity(ids.iter().map(|i| i.as_ref().len()).sum());
        let mut ends = Vec::with_capacity(ids.len());
        for id in ids {
            text.push_str(id.as_ref());
            ends.push(text.len());
        }
        Ids { text, ends }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// A bulk write, shared by its chunks (built one at a time, as the connection sends
/// them) and the parse of their replies.
pub(super) struct Write<'a> {
    pub(super) view: View,
    /// `{prefix}:{view}:`, the keys' common start.
    pub(super) key_prefix: String,
    pub(super) ids: Ids,
    /// The vectors, C order, native byte order.
    pub(super) data: Cow<'a, [u8]>,
    pub(super) ts_ms: u64,
    pub(super) chunk_size: usize,
    pub(super) atomic: bool,
    /// A single write ([`FeatureStore::write`]): its request names its key.
    pub(super) single: bool,
}

impl Write<'_> {
    pub(super) fn key(&self, i: usize) -> String {
        let mut k = String::with_capacity(self.key_prefix.len() + 16);
        k.push_str(&self.key_prefix);
        k.push_str(self.ids.get(i));
        k
    }

    /// The vector of entity `i`.
    pub(super) fn row(&self, i: usize) -> &[u8] {
        let vlen = self.view.vector_len();
        &self.data[i * vlen..(i + 1) * vlen]
    }

    pub(super) fn chunks(&self) -> usize {
        self.ids.len().div_ceil(self.chunk_size)
    }

    pub(super) fn chunk_items(&self, chunk: usize) -> Range<usize> {
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
        let ids_len = self.ids.ends[items.end - 1]
            - items.start.checked_sub(1).map_or(0, |i| self.ids.ends[i]);
        // Each entity: its key and vector plus at most 160 bytes of framing and fields.
        let size = items.len() * (self.key_prefix.len() + vlen + 160) + ids_len + 64;
        let mut p = Packed::with_capacity(size);
        if self.atomic {
            p.command(1);
            p.arg(b"MULTI");
        }
        self.view
            .layout
            .encoding()
            .encode_writes(self, items, &mut p);
        if self.atomic {
            p.command(1);
            p.arg(b"EXEC");
        }
        req.push(p);
        req
    }
}

impl FeatureStore {
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
        view.check(dtype, shape, (!single).then_some(n))?;
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
        if self.chunk_size == 0 {
            return Err(Error::InvalidArgument(
                "FeatureStore chunk size is 0 entities; it must be at least 1".into(),
            ));
        }
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

    /// A chunk size of zero is refused before anything is sent (a write would divide
    /// its entities into chunks of none).
    #[test]
    fn a_zero_chunk_size_is_refused() {
        let v = ndarray::Array2::<f32>::zeros((2, 4));
        let store = FeatureStore::new("f").with_chunk_entities(0);
        let e = store.plan_write_many("v", &["a", "b"], &v).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let row = ndarray::Array1::<f32>::zeros(4);
        let e = store.plan_write("v", "a", &row).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
    use crate::dtype::{ByteOrder, swap_bytes_in_place};
    use crate::exec::Command;
    use crate::store::feature::Layout;
    use std::time::Duration;

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
                Layout::Hash => {
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
        for layout in [Layout::Native, Layout::Hash] {
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
                        let n = w.chunk_items(c).len()
                            * w.view.layout.encoding().commands_per_entity(&w.view);
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
