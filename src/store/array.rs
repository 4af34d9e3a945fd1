//! [`ArrayStore`]: one array per key, as a `.npy` value (optionally compressed).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use redis::{Cmd, Value};

use crate::array::{AsArray, RawArray};
use crate::codec::{ArrayCodec, CallBudget, Limits, Npy, decode_cost, encode_pieces_split};
use crate::error::{Error, RedisErrorKind, Result, ValueProblem};
use crate::exec::{Command, Request, Step, reply_bytes, reply_ok};
use crate::store::chunked::{ChunkCutter, MANIFEST_LEN, Manifest};
use crate::store::{join_key, sync_and_async, ttl_millis};

mod put_many;

/// Default chunk size of an [`ArrayStore`], in bytes: values above it are split (Redis refuses bulk strings over
/// `proto-max-bulk-len`, 512 MB by default).
pub const DEFAULT_CHUNK_BYTES: usize = 256 << 20;

/// Arrays in Redis, one key each: `{prefix}:{name}` holds the encoded array.
///
/// * `put`/`get`/`delete`/`exists`, `put_many`/`get_many` (one round trip each);
///   `get` of a missing key is `Ok(None)`.
/// * Values are `.npy` (or `.npy` inside lz4/zlib/zstd, per the codec); any store reads
///   any redstash value whatever its own codec.
/// * Values larger than [`with_chunk_bytes`](Self::with_chunk_bytes) are stored as chunks plus a
///   manifest written last, so readers never see half an array.
/// * Methods come in pairs: `op(&mut con, ..)` for any sync connection and
///   `op_async(&mut con, ..)` for any async one (feature `tokio`), both running the same
///   plan ([`plan_get`](Self::plan_get) etc.).
///
/// ```no_run
/// use redstash::{ArrayStore, Compressed};
/// use std::time::Duration;
/// # fn main() -> redstash::Result<()> {
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// let store = ArrayStore::new("cache")
///     .with_codec(Compressed::lz4())
///     .with_ttl(Duration::from_secs(3600));
/// let x = ndarray::Array1::<f64>::linspace(0.0, 1.0, 1000);
/// store.put(&mut con, "x", &x)?;
/// let raw = store.get(&mut con, "x")?.expect("just written");
/// assert_eq!(raw.shape(), &[1000]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ArrayStore<C: ArrayCodec = Npy> {
    prefix: String,
    codec: C,
    ttl: Option<Duration>,
    chunk_size: usize,
    limits: Limits,
}

impl ArrayStore<Npy> {
    /// A store of plain `.npy` values under `prefix` (`""` for no prefix).
    pub fn new(prefix: impl Into<String>) -> Self {
        ArrayStore {
            prefix: prefix.into(),
            codec: Npy,
            ttl: None,
            chunk_size: DEFAULT_CHUNK_BYTES,
            limits: Limits::default(),
        }
    }
}

/// Whether an old value's prefix (from `GETRANGE`) is a manifest whose chunks must go.
/// A manifest beyond `limits` was not written by redstash (it could not have been): its
/// declared chunks are not listed, so a planted one cannot make a write iterate them.
/// A `GETRANGE` refused for another reason than `WRONGTYPE` (e.g. `NOPERM` for an ACL user
/// without it) is an error: the old value's chunks, if any, could not be found and would
/// be left behind silently.
fn stale_chunks(
    key: &str,
    old_prefix: Value,
    keep_generation: Option<u64>,
    limits: &Limits,
) -> Result<Vec<String>> {
    let b = match old_prefix {
        Value::BulkString(b) => b,
        Value::ServerError(e) => {
            let e = Error::redis(e.into(), Some(key));
            // WRONGTYPE: the old value was not ours, nothing to clean.
            return match e.redis_kind() {
                Some(RedisErrorKind::WrongType) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        _ => return Ok(Vec::new()),
    };
    Ok(match Manifest::parse(&b) {
        Ok(Some(m)) if Some(m.generation) != keep_generation && m.check(key, limits).is_ok() => {
            m.chunk_keys(key)
        }
        _ => Vec::new(),
    })
}

fn del_cmd(keys: &[String]) -> Cmd {
    let mut c = redis::cmd("DEL");
    for k in keys {
        c.arg(k);
    }
    c
}

/// `SET key <value> [PX ttl]`, the value given as pieces (borrowed where they can be).
fn set_command<'a>(key: &str, value: Vec<Cow<'a, [u8]>>, ttl: Option<Duration>) -> Command<'a> {
    let mut args: Vec<Vec<Cow<'a, [u8]>>> = vec![
        vec![Cow::Borrowed(b"SET")],
        vec![Cow::Owned(key.as_bytes().to_vec())],
        value,
    ];
    if let Some(ttl) = ttl {
        args.push(vec![Cow::Borrowed(b"PX")]);
        args.push(vec![Cow::Owned(ttl_millis(ttl).to_string().into_bytes())]);
    }
    Command::Pieces(args)
}

/// Bytes of a value given as pieces.
fn value_len(value: &[Cow<'_, [u8]>]) -> usize {
    value.iter().map(|p| p.len()).sum()
}

/// The requests of a chunked write ([`ArrayStore::chunked_write`]).
struct ChunkedWrite<'a> {
    /// The chunk keys.
    keys: Vec<String>,
    /// One `SET` per chunk, each built when it is asked for.
    chunks: ChunkSets<'a>,
    /// `GETRANGE` of the old value, then the manifest's `SET`.
    fin: Request<'static>,
    generation: u64,
}

/// The `SET` requests of the chunks of a value, in order, each built only when it is
/// asked for from the pieces of the value it spans (see [`ChunkCutter`]): a chunked
/// write makes no copy of the value (the array's own memory where the codec borrows it,
/// else the codec's chunk-sized buffers, each freed once its chunk is sent).
struct ChunkSets<'a> {
    /// The main key (the requests are about it).
    key: String,
    keys: std::vec::IntoIter<String>,
    values: ChunkCutter<'a>,
    ttl: Option<Duration>,
}

impl<'a> Iterator for ChunkSets<'a> {
    type Item = Request<'a>;

    fn next(&mut self) -> Option<Request<'a>> {
        let (chunk_key, value) = (self.keys.next()?, self.values.next()?);
        Some(Request::single(
            set_command(&chunk_key, value, self.ttl),
            Some(&self.key),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.keys.len().min(self.values.len());
        (n, Some(n))
    }
}

impl ExactSizeIterator for ChunkSets<'_> {}

fn getrange_cmd(key: &str) -> Cmd {
    let mut c = redis::cmd("GETRANGE");
    c.arg(key).arg(0).arg(MANIFEST_LEN - 1);
    c
}

impl<C: ArrayCodec> ArrayStore<C> {
    /// Use another codec for writing (reading is format-agnostic).
    pub fn with_codec<C2: ArrayCodec>(self, codec: C2) -> ArrayStore<C2> {
        ArrayStore {
            prefix: self.prefix,
            codec,
            ttl: self.ttl,
            chunk_size: self.chunk_size,
            limits: self.limits,
        }
    }

    /// Expire written arrays after `ttl` (set in the same command as the value).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Values larger than this many bytes are stored in chunks (default
    /// [`DEFAULT_CHUNK_BYTES`], 256 MiB). Zero is refused: every write then fails with
    /// [`Error::InvalidArgument`] (rather than storing an array as one-byte keys).
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// The chunk size, checked (at least one byte).
    fn chunk_bytes(&self) -> Result<usize> {
        match self.chunk_size {
            0 => Err(Error::InvalidArgument(
                "ArrayStore chunk size is 0 bytes; it must be at least 1".into(),
            )),
            n => Ok(n),
        }
    }

    /// Decoding limits (size caps against hostile values; a `get_many` decodes at most
    /// [`Limits::max_call_bytes`] in all, a chunked array counting its declared size
    /// before its chunks are fetched).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The key of `name`.
    pub fn key(&self, name: &str) -> String {
        join_key(&self.prefix, name)
    }

    fn push_ttl(&self, cmd: &mut Cmd) {
        if let Some(ttl) = self.ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
    }

    /// The encoded value of `array` as pieces, borrowing the array's memory where the
    /// codec allows (see [`encode_pieces`](crate::codec::encode_pieces)); an encoding
    /// the codec makes is written in chunk-sized buffers, each handed as it is to its
    /// chunk if the value is chunked.
    fn encode<'a, A: AsArray + ?Sized>(&self, array: &'a A) -> Result<Vec<Cow<'a, [u8]>>> {
        encode_pieces_split(&self.codec, array, self.chunk_size)
    }

    /// `SET key <value> [PX ttl]`, the value borrowing the array's memory where the
    /// codec allows (see [`encode`](Self::encode)).
    fn set_for<'a, A: AsArray + ?Sized>(&self, key: &str, array: &'a A) -> Result<Command<'a>> {
        Ok(set_command(key, self.encode(array)?, self.ttl))
    }

    /// Plan of [`put`](Self::put).
    pub fn plan_put<'a, A: AsArray + ?Sized>(
        &self,
        name: &str,
        array: &'a A,
    ) -> Result<Step<'a, ()>> {
        let chunk_bytes = self.chunk_bytes()?;
        let key = self.key(name);
        let value = self.encode(array)?;
        if value_len(&value) > chunk_bytes {
            return self.plan_put_chunked(key, value);
        }
        let set = set_command(&key, value, self.ttl);
        let mut req = Request::new(Some(&key));
        req.push(getrange_cmd(&key));
        req.push(set);
        let limits = self.limits;
        // The same whole value again: writing it twice is writing it once.
        Ok(Step::send(req.idempotent(), move |mut r| {
            let old = r.next_raw()?;
            r.next_ok()?;
            r.finish()?;
            Ok(cleanup_step(&key, stale_chunks(&key, old, None, &limits)?).narrow())
        }))
    }

    /// Write `value` (encoded, as pieces) as chunks, then the manifest.
    fn plan_put_chunked<'a>(&self, key: String, value: Vec<Cow<'a, [u8]>>) -> Result<Step<'a, ()>> {
        let w = self.chunked_write(&key, value)?;
        Ok(write_chunks(
            key,
            w.keys,
            w.chunks,
            0,
            w.fin,
            w.generation,
            self.limits,
        ))
    }

    /// The requests writing `value` (encoded, as pieces) as chunks: one `SET` per chunk,
    /// each built as it is sent from the pieces it spans (no copy of the value, see
    /// [`ChunkSets`]), then the
    /// request of `GETRANGE` (the old value) + the manifest's `SET`. The manifest's
    /// length and checksum are read from the pieces. What a reader would refuse (too
    /// many or too big chunks) is refused here already.
    fn chunked_write<'a>(&self, key: &str, value: Vec<Cow<'a, [u8]>>) -> Result<ChunkedWrite<'a>> {
        let manifest = Manifest::for_pieces(&value, self.chunk_size)?;
        manifest.check(key, &self.limits)?;
        let keys = manifest.chunk_keys(key);
        let chunks = ChunkSets {
            key: key.to_owned(),
            keys: keys.clone().into_iter(),
            values: ChunkCutter::new(value, self.chunk_size),
            ttl: self.ttl,
        };
        let mut fin = Request::new(Some(key));
        fin.push(getrange_cmd(key));
        let mut mset = redis::cmd("SET");
        mset.arg(key).arg(&manifest.to_bytes()[..]);
        self.push_ttl(&mut mset);
        fin.push(mset);
        // Sent again, its GETRANGE reads this very manifest (same generation: nothing
        // to clean) and the SET writes it again.
        let fin = fin.idempotent();
        Ok(ChunkedWrite {
            keys,
            chunks,
            fin,
            generation: manifest.generation,
        })
    }

    /// Plan of [`get`](Self::get).
    pub fn plan_get(&self, name: &str) -> Result<Step<'static, Option<RawArray>>> {
        let key = self.key(name);
        let limits = self.limits;
        let mut get = redis::cmd("GET");
        get.arg(&key);
        Ok(Step::send(
            Request::single(get, Some(&key)).idempotent(),
            move |mut r| {
                let value = r.next_bytes()?;
                r.finish()?;
                Ok(match value {
                    None => Step::Done(None),
                    Some(v) => decode_or_follow(key, v, limits),
                })
            },
        ))
    }

    /// Plan of [`get_many`](Self::get_many).
    pub fn plan_get_many<N: AsRef<str>>(
        &self,
        names: &[N],
    ) -> Result<Step<'static, Vec<Option<RawArray>>>> {
        if names.is_empty() {
            return Ok(Step::Done(Vec::new()));
        }
        let keys: Vec<String> = names.iter().map(|n| self.key(n.as_ref())).collect();
        let mut mget = redis::cmd("MGET");
        for k in &keys {
            mget.arg(k);
        }
        let limits = self.limits;
        let req = Request::single(
            mget,
            keys.first().map(String::as_str).filter(|_| keys.len() == 1),
        )
        .idempotent();
        Ok(Step::send(req, move |mut r| {
            let values = r.next_array_of(keys.len())?;
            r.finish()?;
            // The values as bytes, each one's error kept for its turn in the decode (the
            // first bad value in order is the error).
            let values: Vec<(String, Result<Option<Bytes>>)> = keys
                .into_iter()
                .zip(values)
                .map(|(key, v)| {
                    let bytes = reply_bytes(v, &key);
                    (key, bytes)
                })
                .collect();
            let cost = values
                .iter()
                .filter_map(|(_, v)| v.as_ref().ok()?.as_ref())
                .fold(0usize, |n, b| n.saturating_add(decode_cost(b, &limits)));
            let task = format!("the decode of {} values of an MGET", values.len());
            Ok(Step::compute(
                task,
                cost,
                move || {
                    let mut budget = CallBudget::new(&limits);
                    let mut out: Vec<Option<RawArray>> = Vec::with_capacity(values.len());
                    let mut chunked: Vec<Pending> = Vec::new();
                    for (index, (key, bytes)) in values.into_iter().enumerate() {
                        out.push(None);
                        let Some(bytes) = bytes? else {
                            continue;
                        };
                        match classify(&key, bytes, &limits, &mut budget)? {
                            Item::Value(a) => out[index] = Some(a),
                            Item::Chunked(manifest) => chunked.push(Pending {
                                index,
                                key,
                                manifest,
                            }),
                        }
                    }
                    Ok((out, chunked, budget))
                },
                // One more round trip fetches the chunks of every chunked array (and
                // more only if some were replaced meanwhile).
                move |(out, chunked, budget)| {
                    Ok(fetch_chunks(
                        out,
                        chunked,
                        budget,
                        limits,
                        REPLACED_CHUNKS_RETRIES,
                        None,
                    ))
                },
            ))
        }))
    }

    /// Plan of [`delete`](Self::delete).
    pub fn plan_delete(&self, name: &str) -> Result<Step<'static, bool>> {
        let key = self.key(name);
        let mut req = Request::new(Some(&key));
        req.push(getrange_cmd(&key));
        let mut del = redis::cmd("DEL");
        del.arg(&key);
        req.push(del);
        let limits = self.limits;
        Ok(Step::send(req, move |mut r| {
            let old = r.next_raw()?;
            let existed = r.next_int()? > 0;
            r.finish()?;
            Ok(cleanup_step(&key, stale_chunks(&key, old, None, &limits)?).map(move |()| existed))
        }))
    }

    /// Plan of [`exists`](Self::exists).
    pub fn plan_exists(&self, name: &str) -> Result<Step<'static, bool>> {
        let key = self.key(name);
        Ok(crate::store::exists_step(&key))
    }

    /// Plan of [`get_as`](Self::get_as).
    #[cfg(feature = "ndarray")]
    pub fn plan_get_as<T: crate::Element, D: ndarray::Dimension + 'static>(
        &self,
        name: &str,
    ) -> Result<Step<'static, Option<ndarray::Array<T, D>>>> {
        let key = self.key(name);
        Ok(self.plan_get(name)?.and_then(move |a| {
            let Some(a) = a else {
                return Ok(Step::Done(None));
            };
            // A copy of the whole array: on a blocking thread too when it is large.
            Ok(Step::compute(
                format!("the conversion of {key:?} to an ndarray"),
                a.nbytes(),
                move || a.to_ndarray::<T, D>().map_err(|e| e.at_key(&key)),
                |a| Ok(Step::Done(Some(a))),
            ))
        }))
    }

    sync_and_async! {
        /// Store `array` (an `ndarray` array, a [`RawArray`] or an [`ArrayRef`](crate::ArrayRef)) under
        /// `name`, replacing what was there (including the chunks of a chunked array).
        fn put / put_async<A: AsArray>(name: &str, array: &A) -> () = plan_put;
        /// Read the array stored under `name`, whatever codec wrote it; `None` if the key
        /// does not exist.
        fn get / get_async(name: &str) -> Option<RawArray> = plan_get;
        /// Read many arrays in one round trip (MGET), in the order of `names`.
        fn get_many / get_many_async<N: AsRef<str>>(names: &[N]) -> Vec<Option<RawArray>> = plan_get_many;
        /// Store many arrays: `SET`s with the TTL in requests of at most 1,000 items or
        /// 16 MiB, pipelined, each encoded just before it is sent (memory stays
        /// bounded); arrays over the chunk size afterwards, one at a time. If not every
        /// item is stored, [`Error::PartialWrite`] says exactly which items were
        /// written, refused, in flight (unknown) or never sent.
        fn put_many / put_many_async<N: AsRef<str> | Sync, A: AsArray | Sync>(items: &[(N, A)]) -> () = plan_put_many;
        /// Delete the array under `name` (and its chunks); `true` if it existed.
        fn delete / delete_async(name: &str) -> bool = plan_delete;
        /// Whether `name` exists.
        fn exists / exists_async(name: &str) -> bool = plan_exists;
    }

    #[cfg(feature = "ndarray")]
    sync_and_async! {
        /// Read the array under `name` as an `ndarray::Array<T, D>`; a dtype or ndim
        /// mismatch is an error, a missing key `None`.
        fn get_as / get_as_async<T: crate::Element, D: DimStatic>(name: &str) -> Option<ndarray::Array<T, D>> = plan_get_as;
    }
}

/// `ndarray::Dimension + 'static` (a single path for the store macros).
#[cfg(feature = "ndarray")]
pub trait DimStatic: ndarray::Dimension + 'static {}
#[cfg(feature = "ndarray")]
impl<D: ndarray::Dimension + 'static> DimStatic for D {}

fn mget_cmd(keys: &[String]) -> Cmd {
    let mut c = redis::cmd("MGET");
    for k in keys {
        c.arg(k);
    }
    c
}

fn decode_value(key: &str, bytes: Bytes, limits: &Limits) -> Result<RawArray> {
    crate::codec::decode_array(bytes, limits).map_err(|e| e.at_key(key))
}

/// How many times `get` and `get_many` follow a newer manifest when the chunks of the one
/// they read were replaced by a concurrent write before they fetched them.
const REPLACED_CHUNKS_RETRIES: u32 = 16;

/// A value read: decoded, or a chunked array whose chunks are still to be fetched.
enum Item {
    Value(RawArray),
    Chunked(Manifest),
}

/// A chunked array of a read, whose chunks are still to be fetched.
struct Pending {
    /// Its position in the result.
    index: usize,
    key: String,
    manifest: Manifest,
}

/// Decode a value against the call's budget, or check its manifest and count its
/// declared total (before any chunk is fetched).
fn classify(key: &str, value: Bytes, limits: &Limits, budget: &mut CallBudget) -> Result<Item> {
    match Manifest::parse(&value).map_err(|e| e.at_key(key))? {
        Some(m) => {
            m.check(key, limits).map_err(|e| e.at_key(key))?;
            budget.charge(m.total_len).map_err(|e| e.at_key(key))?;
            Ok(Item::Chunked(m))
        }
        None => Ok(Item::Value(
            budget
                .decode(|l| decode_value(key, value, l), RawArray::nbytes)
                .map_err(|e| e.at_key(key))?,
        )),
    }
}

/// Decode the value of `get` (a [`Step::compute`] of its decode cost), or follow its
/// manifest to its chunks.
fn decode_or_follow(key: String, value: Bytes, limits: Limits) -> Step<'static, Option<RawArray>> {
    Step::compute(
        format!("the decode of {key:?}"),
        decode_cost(&value, &limits),
        move || {
            let mut budget = CallBudget::new(&limits);
            let item = classify(&key, value, &limits, &mut budget)?;
            Ok((key, item, budget))
        },
        move |(key, item, budget)| {
            let manifest = match item {
                Item::Value(a) => return Ok(Step::Done(Some(a))),
                Item::Chunked(m) => m,
            };
            let pending = vec![Pending {
                index: 0,
                key: key.clone(),
                manifest,
            }];
            Ok(fetch_chunks(
                vec![None],
                pending,
                budget,
                limits,
                REPLACED_CHUNKS_RETRIES,
                Some(key),
            )
            .map(|mut out| out.pop().flatten()))
        },
    )
}

/// Fetch the chunks of the `pending` arrays (one request: an MGET of each array's chunks,
/// then a GET of its key), assemble, verify and decode them into `out` (a
/// [`Step::compute`] of their total size). When an array's
/// chunks are missing and its key now holds another value, a writer replaced it between
/// the reads: the new value is read instead (its chunks in another round trip, up to
/// `retries` times). Chunks missing under an unchanged manifest are
/// [`Error::MissingChunks`].
fn fetch_chunks(
    mut out: Vec<Option<RawArray>>,
    pending: Vec<Pending>,
    mut budget: CallBudget,
    limits: Limits,
    retries: u32,
    req_key: Option<String>,
) -> Step<'static, Vec<Option<RawArray>>> {
    if pending.is_empty() {
        return Step::Done(out);
    }
    let mut req = Request::new(req_key.as_deref());
    for p in &pending {
        req.push(mget_cmd(&p.manifest.chunk_keys(&p.key)));
        let mut get = redis::cmd("GET");
        get.arg(&p.key);
        req.push(get);
    }
    Step::send(req.idempotent(), move |mut r| {
        let mut replies = Vec::with_capacity(pending.len());
        for _ in 0..pending.len() {
            replies.push((r.next_raw()?, r.next_raw()?));
        }
        r.finish()?;
        let cost = pending.iter().fold(0usize, |n, p| {
            n.saturating_add(usize::try_from(p.manifest.total_len).unwrap_or(usize::MAX))
        });
        let task = match pending.as_slice() {
            [p] => format!("the assembly and decode of chunked {:?}", p.key),
            many => format!("the assembly and decode of {} chunked arrays", many.len()),
        };
        Ok(Step::compute(
            task,
            cost,
            move || {
                let mut again: Vec<Pending> = Vec::new();
                for (p, (chunks, current)) in pending.into_iter().zip(replies) {
                    // The declared total was counted before the fetch; the decoded value
                    // counts instead.
                    budget.refund(p.manifest.total_len);
                    match assemble(&p.key, &p.manifest, chunks).map_err(|e| e.at_key(&p.key)) {
                        Ok(bytes) => {
                            out[p.index] = Some(
                                budget
                                    .decode(|l| decode_value(&p.key, bytes, l), RawArray::nbytes)
                                    .map_err(|e| e.at_key(&p.key))?,
                            );
                        }
                        Err(e @ Error::MissingChunks { .. }) if retries > 0 => {
                            // A writer replaced (or deleted) the array between our reads:
                            // read what is there now.
                            match reply_bytes(current, &p.key)? {
                                None => {}
                                Some(v) if v[..] != p.manifest.to_bytes()[..] => {
                                    match classify(&p.key, v, &limits, &mut budget)? {
                                        Item::Value(a) => out[p.index] = Some(a),
                                        Item::Chunked(manifest) => {
                                            again.push(Pending { manifest, ..p })
                                        }
                                    }
                                }
                                Some(_) => return Err(e),
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok((out, again, budget))
            },
            move |(out, again, budget)| {
                Ok(fetch_chunks(
                    out,
                    again,
                    budget,
                    limits,
                    retries.saturating_sub(1),
                    req_key,
                ))
            },
        ))
    })
}

/// Concatenate the chunks of an MGET reply, checking each is present and sized right,
/// and the whole against the manifest's checksum (when it has one).
fn assemble(key: &str, m: &Manifest, reply: Value) -> Result<Bytes> {
    let parts = match reply_ok(reply, key)? {
        Value::Array(v) => v,
        _ => Vec::new(),
    };
    let mut missing = Vec::new();
    let total = usize::try_from(m.total_len)
        .map_err(|_| Error::corrupt("chunk manifest", "total length overflows usize"))?;
    let mut out = crate::buffers::take(total.min(parts.len().saturating_mul(m.chunk_len as usize)));
    let mut hasher = m.checksum.map(|_| xxhash_rust::xxh3::Xxh3::new());
    for i in 0..m.chunks as usize {
        match parts.get(i) {
            Some(Value::BulkString(b)) if missing.is_empty() => {
                // Chunks larger than the manifest declares fail before they are copied.
                if b.len() > total - out.len() {
                    return Err(Error::corrupt(
                        "chunked array",
                        format!("chunks hold more than the {total} bytes the manifest says"),
                    ));
                }
                out.extend_from_slice(b);
                if let Some(h) = hasher.as_mut() {
                    h.update(b);
                }
            }
            Some(Value::BulkString(_)) => {}
            _ => missing.push(i),
        }
    }
    if !missing.is_empty() {
        return Err(Error::MissingChunks {
            key: key.to_owned(),
            missing,
        });
    }
    if out.len() != total {
        return Err(Error::corrupt(
            "chunked array",
            format!("chunks hold {} bytes, manifest says {total}", out.len()),
        ));
    }
    if let (Some(expected), Some(h)) = (m.checksum, hasher) {
        let found = h.digest();
        if found != expected {
            return Err(Error::invalid(ValueProblem::ChecksumMismatch {
                expected,
                found,
            }));
        }
    }
    Ok(crate::buffers::into_bytes(out))
}

/// Delete stale chunk keys (if any), then finish.
fn cleanup_step(key: &str, stale: Vec<String>) -> Step<'static, ()> {
    if stale.is_empty() {
        return Step::Done(());
    }
    let key = (!key.is_empty()).then_some(key);
    // The stale chunks are garbage: a failure to delete them does not fail the write.
    Step::then(Request::single(del_cmd(&stale), key), |mut r| r.skip(1))
}

/// Write the chunks one request at a time (each built just before it is sent), then the
/// final manifest request. On a server error the chunks written so far are deleted and
/// the old value stays intact.
fn write_chunks<'a>(
    key: String,
    keys: Vec<String>,
    mut chunks: ChunkSets<'a>,
    written: usize,
    fin: Request<'static>,
    generation: u64,
    limits: Limits,
) -> Step<'a, ()> {
    match chunks.next() {
        // A chunk is a whole value under a key of its own generation: idempotent.
        Some(req) => Step::send(req.idempotent(), move |mut r| {
            match r.next_ok().and_then(|()| r.finish()) {
                Ok(()) => Ok(write_chunks(
                    key,
                    keys,
                    chunks,
                    written + 1,
                    fin,
                    generation,
                    limits,
                )),
                Err(e) => {
                    let done = &keys[..written];
                    if done.is_empty() {
                        return Err(e);
                    }
                    Ok(Step::send(
                        Request::single(del_cmd(done), Some(&key)),
                        // The write's error, whatever the cleanup's reply.
                        move |_| Err(e),
                    ))
                }
            }
        }),
        None => Step::send(fin, move |mut r| {
            let old = r.next_raw()?;
            if let Err(e) = r.next_ok().and_then(|()| r.finish()) {
                return Ok(Step::send(
                    Request::single(del_cmd(&keys), Some(&key)),
                    move |_| Err(e),
                ));
            }
            Ok(cleanup_step(
                &key,
                stale_chunks(&key, old, Some(generation), &limits)?,
            ))
        })
        .narrow(),
    }
}
