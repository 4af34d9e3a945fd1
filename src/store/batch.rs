//! [`BatchStore`]: named arrays that belong together (features + labels of a training
//! batch), one Redis hash per batch.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::Value;

pub use crate::array::DynArray;
use crate::array::{AsArray, RawArray};
use crate::codec::{ArrayCodec, CallBudget, Limits, Npy, decode_cost, encode_pieces};
use crate::error::{Error, Origin, Result};
use crate::exec::{Command, Replies, Request, Scan, Step, reply_bytes};
use crate::store::{join_key, sync_and_async, ttl_millis};

/// Named arrays in one Redis hash per batch: `{prefix}:{batch_id}` holds one field per
/// array, each field an encoded array value (`.npy`, or `.npy` in lz4/zlib/zstd per the
/// codec), so `numpy.load(io.BytesIO(r.hget(key, "features")))` reads it.
///
/// * [`put`](Self::put) replaces the whole batch in one `MULTI`/`DEL`/`HSET`
///   (+ `PEXPIRE`)/`EXEC` transaction: a reader sees the old batch or the new one, never
///   a mix; the TTL (if any) is set in the same transaction.
/// * [`get`](Self::get) reads every array (`HGETALL`), [`get_some`](Self::get_some)
///   only the named ones (`HMGET`); [`delete`](Self::delete) is one `DEL`;
///   [`list`](Self::list) walks the batch ids with `SCAN` (never `KEYS`).
/// * Each array keeps its own dtype and shape (`f64` `(1000, 784)` features next to
///   `i64` `(1000,)` labels).
/// * A missing batch is `Ok(None)`; a missing name is [`Error::MissingField`]; a field
///   that is not a redstash array is [`Error::InvalidValue`] naming the field.
///
/// ```no_run
/// use ndarray::{Array1, Array2};
/// use redstash::BatchStore;
/// # fn main() -> redstash::Result<()> {
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// let store = BatchStore::new("train");
/// let x = Array2::<f64>::zeros((1000, 784));
/// let y = Array1::<i64>::zeros(1000);
/// // Arrays of different types: a tuple of (name, array) pairs.
/// store.put(&mut con, "batch_001", &(("features", &x), ("labels", &y)))?;
/// let batch = store.get(&mut con, "batch_001")?.expect("just written");
/// let labels: Array1<i64> = batch.get_as("labels")?;
/// let only_x = store.get_some(&mut con, "batch_001", &["features"])?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BatchStore<C: ArrayCodec = Npy> {
    prefix: String,
    codec: C,
    ttl: Option<Duration>,
    limits: Limits,
}

/// A list of `(name, array)` pairs for [`BatchStore::put`]: a slice, array or `Vec` of
/// pairs of one array type, or a tuple of up to 8 pairs of different array types
/// (`(("features", &x), ("labels", &y))`).
pub trait NamedArrays {
    /// Call `f` with each name and array, in order; stop at the first error.
    fn try_for_each_array<'a>(
        &'a self,
        f: &mut dyn FnMut(&'a str, &'a dyn DynArray) -> Result<()>,
    ) -> Result<()>;
}

impl<N: AsRef<str>, A: AsArray> NamedArrays for [(N, A)] {
    fn try_for_each_array<'a>(
        &'a self,
        f: &mut dyn FnMut(&'a str, &'a dyn DynArray) -> Result<()>,
    ) -> Result<()> {
        for (n, a) in self {
            f(n.as_ref(), a)?;
        }
        Ok(())
    }
}

impl<N: AsRef<str>, A: AsArray, const K: usize> NamedArrays for [(N, A); K] {
    fn try_for_each_array<'a>(
        &'a self,
        f: &mut dyn FnMut(&'a str, &'a dyn DynArray) -> Result<()>,
    ) -> Result<()> {
        self[..].try_for_each_array(f)
    }
}

impl<N: AsRef<str>, A: AsArray> NamedArrays for Vec<(N, A)> {
    fn try_for_each_array<'a>(
        &'a self,
        f: &mut dyn FnMut(&'a str, &'a dyn DynArray) -> Result<()>,
    ) -> Result<()> {
        self[..].try_for_each_array(f)
    }
}

impl<T: NamedArrays + ?Sized> NamedArrays for &T {
    fn try_for_each_array<'a>(
        &'a self,
        f: &mut dyn FnMut(&'a str, &'a dyn DynArray) -> Result<()>,
    ) -> Result<()> {
        (**self).try_for_each_array(f)
    }
}

macro_rules! tuple_named_arrays {
    ($(($($n:ident $a:ident $i:tt),+))*) => {$(
        impl<$($n: AsRef<str>, $a: AsArray),+> NamedArrays for ($(($n, $a),)+) {
            fn try_for_each_array<'a>(
                &'a self,
                f: &mut dyn FnMut(&'a str, &'a dyn DynArray) -> Result<()>,
            ) -> Result<()> {
                $( f(self.$i.0.as_ref(), &self.$i.1)?; )+
                Ok(())
            }
        }
    )*};
}

tuple_named_arrays! {
    (N0 A0 0)
    (N0 A0 0, N1 A1 1)
    (N0 A0 0, N1 A1 1, N2 A2 2)
    (N0 A0 0, N1 A1 1, N2 A2 2, N3 A3 3)
    (N0 A0 0, N1 A1 1, N2 A2 2, N3 A3 3, N4 A4 4)
    (N0 A0 0, N1 A1 1, N2 A2 2, N3 A3 3, N4 A4 4, N5 A5 5)
    (N0 A0 0, N1 A1 1, N2 A2 2, N3 A3 3, N4 A4 4, N5 A5 5, N6 A6 6)
    (N0 A0 0, N1 A1 1, N2 A2 2, N3 A3 3, N4 A4 4, N5 A5 5, N6 A6 6, N7 A7 7)
}

/// The arrays of one batch, by name (sorted by name).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    key: String,
    arrays: BTreeMap<String, RawArray>,
}

impl Batch {
    /// The Redis key the batch was read from.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The array named `name`, if the batch has it.
    pub fn get(&self, name: &str) -> Option<&RawArray> {
        self.arrays.get(name)
    }

    /// The array named `name`; [`Error::MissingField`] if the batch has none.
    pub fn require(&self, name: &str) -> Result<&RawArray> {
        self.arrays.get(name).ok_or_else(|| Error::MissingField {
            key: self.key.clone(),
            field: name.to_owned(),
        })
    }

    /// The array named `name` as an `ndarray::Array<T, D>` (one copy); a missing name
    /// is [`Error::MissingField`], a dtype or ndim mismatch the matching error.
    #[cfg(feature = "ndarray")]
    pub fn get_as<T: crate::Element, D: ndarray::Dimension>(
        &self,
        name: &str,
    ) -> Result<ndarray::Array<T, D>> {
        self.require(name)?.to_ndarray().map_err(|e| {
            e.at(Origin::Field {
                key: self.key.clone(),
                field: name.to_owned(),
            })
        })
    }

    /// Take the array named `name` out of the batch.
    pub fn remove(&mut self, name: &str) -> Option<RawArray> {
        self.arrays.remove(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.arrays.keys().map(String::as_str)
    }

    /// Number of arrays.
    pub fn len(&self) -> usize {
        self.arrays.len()
    }

    /// Whether the batch holds no array.
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// `(name, array)` pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawArray)> {
        self.arrays.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The arrays by name.
    pub fn into_map(self) -> BTreeMap<String, RawArray> {
        self.arrays
    }
}

impl IntoIterator for Batch {
    type Item = (String, RawArray);
    type IntoIter = std::collections::btree_map::IntoIter<String, RawArray>;
    fn into_iter(self) -> Self::IntoIter {
        self.arrays.into_iter()
    }
}

/// Escape glob characters for `SCAN MATCH`.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn field_name(v: Value, key: &str) -> Result<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b)
            .map_err(|_| Error::corrupt("batch hash", "a field name is not UTF-8").at_key(key)),
        Value::SimpleString(s) => Ok(s),
        other => Err(Error::unexpected(
            format!("expected a field name, got {other:?}"),
            Some(key.to_owned()),
        )),
    }
}

/// The decode cost (see [`Step::compute`]) of the field values of a reply.
fn fields_cost<'v>(values: impl Iterator<Item = &'v Value>, limits: &Limits) -> usize {
    values.fold(0usize, |n, v| match v {
        Value::BulkString(b) => n.saturating_add(decode_cost(b, limits)),
        _ => n,
    })
}

/// Decode one field of a batch against the call's budget (the fields of one batch
/// together are at most [`Limits::max_call_bytes`]).
fn decode_field(
    key: &str,
    field: &str,
    v: Value,
    budget: &mut CallBudget,
) -> Result<Option<RawArray>> {
    let Some(bytes) = reply_bytes(v, key)? else {
        return Ok(None);
    };
    budget
        .decode(
            |limits| crate::codec::decode_array(bytes, limits),
            RawArray::nbytes,
        )
        .map(Some)
        .map_err(|e| {
            e.at(Origin::Field {
                key: key.to_owned(),
                field: field.to_owned(),
            })
        })
}

impl BatchStore<Npy> {
    /// A store of batches under `prefix` (`""` for none), arrays as plain `.npy`.
    pub fn new(prefix: impl Into<String>) -> Self {
        BatchStore {
            prefix: prefix.into(),
            codec: Npy,
            ttl: None,
            limits: Limits::default(),
        }
    }
}

impl<C: ArrayCodec> BatchStore<C> {
    /// Use another codec for writing (reading is format-agnostic, per field).
    pub fn with_codec<C2: ArrayCodec>(self, codec: C2) -> BatchStore<C2> {
        BatchStore {
            prefix: self.prefix,
            codec,
            ttl: self.ttl,
            limits: self.limits,
        }
    }

    /// Expire written batches after `ttl` (set in the same transaction as the arrays).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Decoding limits (size caps against hostile values; the fields of one batch
    /// read together are at most [`Limits::max_call_bytes`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The Redis key of a batch.
    pub fn key(&self, batch_id: &str) -> String {
        join_key(&self.prefix, batch_id)
    }

    /// The `HSET` command of a batch (borrowing the arrays' memory where it can).
    fn hset_command<'a>(
        &self,
        key: &str,
        items: &'a (impl NamedArrays + ?Sized),
    ) -> Result<Command<'a>> {
        let mut args: Vec<Vec<Cow<'a, [u8]>>> = vec![
            vec![Cow::Borrowed(b"HSET")],
            vec![Cow::Owned(key.as_bytes().to_vec())],
        ];
        let mut seen = BTreeSet::new();
        items.try_for_each_array(&mut |name, array| {
            if !seen.insert(name) {
                return Err(Error::InvalidArgument(format!(
                    "batch {key:?}: the name {name:?} is given twice"
                )));
            }
            args.push(vec![Cow::Borrowed(name.as_bytes())]);
            args.push(encode_pieces(&self.codec, array)?);
            Ok(())
        })?;
        if args.len() == 2 {
            return Err(Error::InvalidArgument(format!(
                "batch {key:?}: no arrays to store"
            )));
        }
        Ok(Command::Pieces(args))
    }

    /// Plan of [`put`](Self::put).
    pub fn plan_put<'a, I: NamedArrays + ?Sized>(
        &self,
        batch_id: &str,
        items: &'a I,
    ) -> Result<Step<'a, ()>> {
        let key = self.key(batch_id);
        let hset = self.hset_command(&key, items)?;
        let mut req = Request::new(Some(&key));
        let mut del = redis::cmd("DEL");
        del.arg(&key);
        req.push(del);
        req.push(hset);
        if let Some(ttl) = self.ttl {
            let mut c = redis::cmd("PEXPIRE");
            c.arg(&key).arg(ttl_millis(ttl));
            req.push(c);
        }
        Ok(Step::then(req.atomic(), Replies::finish_ok))
    }

    /// Plan of [`get`](Self::get).
    pub fn plan_get(&self, batch_id: &str) -> Result<Step<'static, Option<Batch>>> {
        let key = self.key(batch_id);
        let limits = self.limits;
        let mut c = redis::cmd("HGETALL");
        c.arg(&key);
        Ok(Step::send(
            Request::single(c, Some(&key)).idempotent(),
            move |mut r| {
                let pairs = r.next_pairs()?;
                r.finish()?;
                if pairs.is_empty() {
                    return Ok(Step::Done(None));
                }
                Ok(Step::compute(
                    format!("the decode of batch {key:?}"),
                    fields_cost(pairs.iter().map(|(_, v)| v), &limits),
                    move || {
                        let mut arrays = BTreeMap::new();
                        let mut budget = CallBudget::new(&limits);
                        for (f, v) in pairs {
                            let name = field_name(f, &key)?;
                            match decode_field(&key, &name, v, &mut budget)? {
                                Some(a) => {
                                    arrays.insert(name, a);
                                }
                                None => {
                                    return Err(Error::unexpected(
                                        format!("HGETALL gave no value for field {name:?}"),
                                        Some(key),
                                    ));
                                }
                            }
                        }
                        Ok(Some(Batch { key, arrays }))
                    },
                    |batch| Ok(Step::Done(batch)),
                ))
            },
        ))
    }

    /// Plan of [`get_some`](Self::get_some).
    pub fn plan_get_some<N: AsRef<str>>(
        &self,
        batch_id: &str,
        names: &[N],
    ) -> Result<Step<'static, Option<Batch>>> {
        let key = self.key(batch_id);
        if names.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "batch {key:?}: get_some needs at least one name"
            )));
        }
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let limits = self.limits;
        let mut c = redis::cmd("HMGET");
        c.arg(&key);
        for n in &names {
            c.arg(n);
        }
        Ok(Step::send(
            Request::single(c, Some(&key)).idempotent(),
            move |mut r| {
                let values = r.next_array_of(names.len())?;
                r.finish()?;
                Ok(Step::compute(
                    format!("the decode of batch {key:?}"),
                    fields_cost(values.iter(), &limits),
                    move || {
                        let mut arrays = BTreeMap::new();
                        let mut missing = None;
                        let mut budget = CallBudget::new(&limits);
                        for (name, v) in names.into_iter().zip(values) {
                            match decode_field(&key, &name, v, &mut budget)? {
                                Some(a) => {
                                    arrays.insert(name, a);
                                }
                                None => {
                                    if missing.is_none() {
                                        missing = Some(name);
                                    }
                                }
                            }
                        }
                        Ok((key, arrays, missing))
                    },
                    |(key, arrays, missing)| {
                        let Some(field) = missing else {
                            return Ok(Step::Done(Some(Batch { key, arrays })));
                        };
                        if !arrays.is_empty() {
                            return Err(Error::MissingField { key, field });
                        }
                        // Nothing found: a missing batch (None) or missing names (an error)?
                        let mut c = redis::cmd("EXISTS");
                        c.arg(&key);
                        Ok(Step::then(
                            Request::single(c, Some(&key)).idempotent(),
                            move |mut r| {
                                let exists = r.next_int()? > 0;
                                r.finish()?;
                                if exists {
                                    Err(Error::MissingField { key, field })
                                } else {
                                    Ok(None)
                                }
                            },
                        ))
                    },
                ))
            },
        ))
    }

    /// Plan of [`delete`](Self::delete).
    pub fn plan_delete(&self, batch_id: &str) -> Result<Step<'static, bool>> {
        let key = self.key(batch_id);
        let mut c = redis::cmd("DEL");
        c.arg(&key);
        Ok(Step::then(Request::single(c, Some(&key)), |mut r| {
            let n = r.next_int()?;
            r.finish()?;
            Ok(n > 0)
        }))
    }

    /// Plan of [`exists`](Self::exists).
    pub fn plan_exists(&self, batch_id: &str) -> Result<Step<'static, bool>> {
        let key = self.key(batch_id);
        Ok(crate::store::exists_step(&key))
    }

    /// Plan of [`list`](Self::list).
    pub fn plan_list(&self) -> Result<Step<'static, Vec<String>>> {
        let (pattern, strip) = if self.prefix.is_empty() {
            ("*".to_owned(), 0)
        } else {
            (
                format!("{}:*", glob_escape(&self.prefix)),
                self.prefix.len() + 1,
            )
        };
        // Sorted and deduplicated by the walk; stripping the common prefix keeps both.
        Ok(Scan::matching(pattern)
            .with_type("hash")
            .keys()
            .map(move |keys| {
                keys.into_iter()
                    .filter_map(|k| k.get(strip..).map(str::to_owned))
                    .collect()
            }))
    }

    sync_and_async! {
        /// Store the arrays of a batch under `batch_id`, replacing the whole batch
        /// atomically (one transaction: `DEL`, one `HSET` of every array, `PEXPIRE` when
        /// the store has a TTL). `items` is a slice/array/`Vec` of `(name, array)` pairs
        /// or a tuple of pairs of different array types. Names must be unique.
        fn put / put_async<I: NamedArrays>(batch_id: &str, items: &I) -> () = plan_put;
        /// Read every array of a batch (`HGETALL`); `None` if the batch does not exist.
        fn get / get_async(batch_id: &str) -> Option<Batch> = plan_get;
        /// Read only the named arrays of a batch (`HMGET`); `None` if the batch does not
        /// exist, [`Error::MissingField`] if it lacks one of the names.
        fn get_some / get_some_async<N: AsRef<str>>(batch_id: &str, names: &[N]) -> Option<Batch> = plan_get_some;
        /// Delete a batch (one `DEL`); `true` if it existed.
        fn delete / delete_async(batch_id: &str) -> bool = plan_delete;
        /// Whether a batch exists.
        fn exists / exists_async(batch_id: &str) -> bool = plan_exists;
        /// The ids of every batch of the store (hash keys under the prefix), found with
        /// `SCAN ... TYPE hash` (never `KEYS`), sorted. With an empty prefix this lists
        /// every hash of the database.
        fn list / list_async() -> Vec<String> = plan_list;
    }
}
