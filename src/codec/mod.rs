//! Codecs: how arrays become bytes in Redis and back.
//!
//! An array is stored as a NumPy `.npy` blob ([`Npy`]), optionally wrapped in a
//! compression layer ([`Compressed`]: lz4 frame, zlib, zstd). Every value is
//! self-describing: [`decode_array`] sniffs the magic bytes ([`Format`]) and peels the
//! layers, so a store configured with one codec reads values written with any other, and
//! `numpy.load(io.BytesIO(lz4.frame.decompress(v)))` reads what redstash wrote.
//!
//! ```
//! use redstash::codec::{ArrayCodec, Compression, Npy, decode_array, Limits};
//! use redstash::RawArray;
//!
//! let a = RawArray::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
//! let codec = Npy.compressed(Compression::Lz4);
//! let bytes = codec.encode(&a.as_array_ref()).unwrap();
//! let back = decode_array(bytes.into(), &Limits::default()).unwrap();
//! assert_eq!(back, a);
//! ```

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;

use crate::array::{ArrayRef, DynArray, Order, RawArray};
use crate::dtype::{ByteOrder, DType};
use crate::error::{Error, Result, ValueProblem};

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "arrow")]
pub mod arrow_concat;
#[cfg(feature = "arrow")]
pub mod arrow_file;
#[cfg(feature = "arrow")]
mod arrow_unpack;
pub mod compress;
pub mod npy;
pub mod sniff;

pub use compress::Compression;
pub use sniff::Format;

/// Safety limits applied when decoding values (which may come from anyone who can write
/// to Redis).
///
/// Two kinds of bound: per value ([`max_value_len`](Self::max_value_len), the header,
/// chunk and batch counts) and per call ([`max_call_bytes`](Self::max_call_bytes), what
/// one read may produce over all its values). Both are checked against the sizes values
/// declare, with checked arithmetic, before anything is allocated for them, and exceeding
/// either is [`Error::InvalidValue`] (too large).
///
/// The defaults read everything redstash writes with its defaults: a chunked array may be
/// far larger than Redis's 512 MiB bulk strings, and a store refuses to write what its
/// own limits would refuse to read, so lowering a default would make values written
/// earlier unreadable. A service that reads values written by others and serves many
/// calls at once will want lower bounds, e.g. `max_value_len` and `max_call_bytes` of
/// 256 MiB: each call then holds at most that (plus the replies of the plain values it
/// asked for, which arrive before they can be counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decoded value, in bytes (array data, a decompressed layer, a chunked
    /// array's total, a table batch). Default 4 GiB: eight times Redis's largest bulk
    /// string, so chunked arrays of several GiB (the reason chunking exists) read with
    /// the defaults; memory is bounded per call by [`max_call_bytes`](Self::max_call_bytes).
    pub max_value_len: u64,
    /// Largest `.npy` header, in bytes. Default 64 KiB.
    pub max_header_len: usize,
    /// Most chunks a chunked array may declare in its manifest. Checked before any chunk
    /// key is built or fetched, so a planted manifest cannot make a reader iterate
    /// billions of keys. Default 65,536 (with the default 256 MiB chunk size, far more
    /// than [`max_value_len`](Self::max_value_len) allows).
    pub max_chunks: u32,
    /// Most batches a table may have (all partitions together), as its manifest declares
    /// or as the batch keys found without a manifest number them. Checked before any key
    /// list is built. Default 1,048,576 (2^20).
    pub max_table_batches: u64,
    /// Most bytes one call may decode over all its values: the arrays of an
    /// `ArrayStore::get_many` (a chunked array counts its declared total, checked before
    /// its chunks are fetched), the fields of a `BatchStore` batch, the rows of a
    /// `FeatureStore::read_many` / `read_views` (ids × vector bytes, per view, checked
    /// before anything is sent), the batches of a `TableStore` read into memory (their
    /// stored bytes, counted as they are fetched; `read_each` and `read_ipc`, which hold
    /// a few batches at a time, are not bounded by it). A call stops with
    /// [`Error::InvalidValue`] (too large) at the first value that would go over, before
    /// decoding it.
    ///
    /// Default 4 GiB, the default [`max_value_len`](Self::max_value_len): whatever one
    /// value may be, one call may read, and a call of many values is bounded like one
    /// large value instead of by their count. Keep it at least `max_value_len`, or a
    /// single value that passes its own limit is refused by the call reading it.
    ///
    /// Not counted, because they arrive before they can be: the replies of values that
    /// are not chunked (a `get_many` of many large plain values receives them all, then
    /// stops decoding at the budget). Bound the key lists of untrusted callers.
    pub max_call_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_len: 4 << 30,
            max_header_len: 64 << 10,
            max_chunks: 1 << 16,
            max_table_batches: 1 << 20,
            max_call_bytes: 4 << 30,
        }
    }
}

/// What one call has decoded so far, against [`Limits::max_call_bytes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallBudget {
    used: u64,
    limits: Limits,
}

impl CallBudget {
    /// A budget of `limits.max_call_bytes`, nothing used.
    pub(crate) fn new(limits: &Limits) -> Self {
        CallBudget {
            used: 0,
            limits: *limits,
        }
    }

    /// Bytes still allowed.
    fn left(&self) -> u64 {
        self.limits.max_call_bytes.saturating_sub(self.used)
    }

    /// The error of going `n` bytes over what is used so far.
    fn over(&self, n: u64) -> Error {
        Error::too_large(self.used.saturating_add(n), self.limits.max_call_bytes)
    }

    /// Count `n` more bytes; [`Error::InvalidValue`] (too large, nothing counted) if that
    /// goes over.
    pub(crate) fn charge(&mut self, n: u64) -> Result<()> {
        match self.used.checked_add(n) {
            Some(t) if t <= self.limits.max_call_bytes => {
                self.used = t;
                Ok(())
            }
            _ => Err(self.over(n)),
        }
    }

    /// Give back `n` bytes counted before (a value that was not read after all).
    pub(crate) fn refund(&mut self, n: u64) {
        self.used = self.used.saturating_sub(n);
    }

    /// Run `decode` with limits whose `max_value_len` is at most what is left, so the
    /// decoder refuses a value over the budget from its declared size, before
    /// allocating; a refusal for the budget is reported against `max_call_bytes`.
    pub(crate) fn decode<T>(
        &mut self,
        decode: impl FnOnce(&Limits) -> Result<T>,
        len: impl FnOnce(&T) -> usize,
    ) -> Result<T> {
        let left = self.left();
        let narrowed = Limits {
            max_value_len: self.limits.max_value_len.min(left),
            ..self.limits
        };
        match decode(&narrowed) {
            Ok(v) => {
                self.charge(len(&v) as u64)?;
                Ok(v)
            }
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { declared, cap },
                ..
            }) if cap == left && left < self.limits.max_value_len => Err(self.over(declared)),
            Err(e) => Err(e),
        }
    }
}

/// How arrays are turned into bytes. [`Npy`] and [`Compressed`] implement it; stores are
/// generic over it. Decoding is shared ([`decode_array`]) because values are
/// self-describing.
pub trait ArrayCodec: Send + Sync + fmt::Debug {
    /// A short description, e.g. `npy` or `npy+lz4`.
    fn name(&self) -> String;

    /// Write the encoded array to `out`.
    fn write_to(&self, array: &ArrayRef<'_>, out: &mut dyn Write) -> Result<()>;

    /// Exact encoded length when known without encoding (uncompressed codecs).
    fn exact_len(&self, array: &ArrayRef<'_>) -> Option<usize>;

    /// The encoded value as pieces that may borrow the array's memory (header, then the
    /// data itself), for codecs that do not transform the data; `None` otherwise. Lets
    /// a vectored connection send an array without copying it.
    fn encode_parts<'a>(&self, array: &ArrayRef<'a>) -> Option<Vec<Cow<'a, [u8]>>> {
        let _ = array;
        None
    }

    /// Encode into a new buffer, sized once.
    fn encode(&self, array: &ArrayRef<'_>) -> Result<Vec<u8>> {
        let cap = self
            .exact_len(array)
            .unwrap_or_else(|| array.nbytes() / 2 + 256);
        let mut out = Vec::with_capacity(cap);
        self.write_to(array, &mut out)?;
        Ok(out)
    }

    /// Decode a value (any redstash array format; see [`decode_array`]).
    fn decode(&self, value: Bytes, limits: &Limits) -> Result<RawArray> {
        decode_array(value, limits)
    }

    /// Wrap this codec in a compression layer.
    fn compressed(self, compression: Compression) -> Compressed<Self>
    where
        Self: Sized,
    {
        Compressed {
            inner: self,
            compression,
        }
    }
}

/// The NumPy `.npy` format, uncompressed: `numpy.load` reads the value as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Npy;

impl ArrayCodec for Npy {
    fn name(&self) -> String {
        "npy".into()
    }
    fn write_to(&self, array: &ArrayRef<'_>, out: &mut dyn Write) -> Result<()> {
        npy::write_npy(array, out)?;
        Ok(())
    }
    fn exact_len(&self, array: &ArrayRef<'_>) -> Option<usize> {
        Some(npy::header_len(array) + array.nbytes())
    }
    fn encode_parts<'a>(&self, array: &ArrayRef<'a>) -> Option<Vec<Cow<'a, [u8]>>> {
        let mut header = Vec::with_capacity(128);
        npy::write_header(array, &mut header);
        Some(vec![Cow::Owned(header), Cow::Borrowed(array.data())])
    }
}

/// A codec wrapped in a compression layer (lz4 frame, zlib, zstd).
///
/// ```
/// use redstash::codec::{ArrayCodec, Compressed, Compression, Npy};
/// let c = Compressed::new(Npy, Compression::Zlib { level: 1 });
/// assert_eq!(c.name(), "npy+zlib(1)");
/// assert_eq!(Compressed::lz4().name(), "npy+lz4");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compressed<C = Npy> {
    inner: C,
    compression: Compression,
}

impl<C: ArrayCodec> Compressed<C> {
    /// Wrap `inner` in `compression`.
    pub fn new(inner: C, compression: Compression) -> Self {
        Compressed { inner, compression }
    }
    /// The compression layer.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

impl Compressed<Npy> {
    /// `.npy` in an lz4 frame.
    pub fn lz4() -> Self {
        Self::new(Npy, Compression::Lz4)
    }
    /// `.npy` in a zlib stream of the given level (0-9).
    pub fn zlib(level: u32) -> Self {
        Self::new(Npy, Compression::Zlib { level })
    }
    /// `.npy` in a zstd frame of the given level (feature `zstd`).
    pub fn zstd(level: i32) -> Self {
        Self::new(Npy, Compression::Zstd { level })
    }
}

impl<C: ArrayCodec> ArrayCodec for Compressed<C> {
    fn name(&self) -> String {
        match self.compression {
            Compression::None => self.inner.name(),
            c => format!("{}+{}", self.inner.name(), c.name()),
        }
    }
    fn write_to(&self, array: &ArrayRef<'_>, out: &mut dyn Write) -> Result<()> {
        self.compression.validate()?;
        let len = self.inner.exact_len(array).unwrap_or(array.nbytes());
        let mut err = None;
        self.compression
            .compress_with(len, out, &mut |w| {
                self.inner.write_to(array, w).map_err(|e| {
                    let msg = e.to_string();
                    err = Some(e);
                    std::io::Error::other(msg)
                })
            })
            .map_err(|e| err.take().unwrap_or(e))
    }
    fn exact_len(&self, array: &ArrayRef<'_>) -> Option<usize> {
        match self.compression {
            Compression::None => self.inner.exact_len(array),
            _ => None,
        }
    }
    fn encode_parts<'a>(&self, array: &ArrayRef<'a>) -> Option<Vec<Cow<'a, [u8]>>> {
        match self.compression {
            Compression::None => self.inner.encode_parts(array),
            _ => None,
        }
    }
}

/// Codecs behind a pointer (`Box<dyn ArrayCodec>`, `Arc<dyn ArrayCodec>`, `&C`) are
/// codecs, so a store's codec can be chosen at run time.
macro_rules! forward_codec {
    ($($ty:ty),*) => {$(
        impl<C: ArrayCodec + ?Sized> ArrayCodec for $ty {
            fn name(&self) -> String {
                (**self).name()
            }
            fn encode_parts<'a>(&self, array: &ArrayRef<'a>) -> Option<Vec<Cow<'a, [u8]>>> {
                (**self).encode_parts(array)
            }
            fn write_to(&self, array: &ArrayRef<'_>, out: &mut dyn Write) -> Result<()> {
                (**self).write_to(array, out)
            }
            fn exact_len(&self, array: &ArrayRef<'_>) -> Option<usize> {
                (**self).exact_len(array)
            }
        }
    )*};
}
forward_codec!(Box<C>, Arc<C>);

/// The value of `array` as byte pieces: with a codec that keeps the data as it is
/// (plain `.npy`) the header plus the array's own memory (no copy); otherwise the
/// encoded bytes (one copy, straight from the array, or from a contiguous copy of a
/// non-contiguous array).
pub fn encode_pieces<'a, C: ArrayCodec + ?Sized>(
    codec: &C,
    array: &'a (impl DynArray + ?Sized),
) -> Result<Vec<Cow<'a, [u8]>>> {
    if let Some(r) = array.dyn_array_ref() {
        if let Some(parts) = codec.encode_parts(&r) {
            return Ok(parts);
        }
        return Ok(vec![Cow::Owned(codec.encode(&r)?)]);
    }
    let mut out = Vec::new();
    array.dyn_with_array_ref(&mut |r| {
        out = codec.encode(&r)?;
        Ok(())
    })?;
    Ok(vec![Cow::Owned(out)])
}

/// [`encode_pieces`], except that an encoding the codec makes (compressed, or of a
/// non-contiguous array) is written in buffers of `piece_len` bytes (the last one
/// shorter): a value cut in chunks of `piece_len` bytes hands each buffer to its chunk
/// as it is, without copying it. A value of at most `piece_len` bytes is one buffer, as
/// with [`encode_pieces`].
pub(crate) fn encode_pieces_split<'a, C: ArrayCodec + ?Sized>(
    codec: &C,
    array: &'a (impl DynArray + ?Sized),
    piece_len: usize,
) -> Result<Vec<Cow<'a, [u8]>>> {
    let encode = |r: &ArrayRef<'_>| -> Result<Vec<Cow<'a, [u8]>>> {
        let hint = codec.exact_len(r).unwrap_or_else(|| r.nbytes() / 2 + 256);
        let mut out = SplitWriter::new(piece_len, hint);
        codec.write_to(r, &mut out)?;
        Ok(out.bufs.into_iter().map(Cow::Owned).collect())
    };
    if let Some(r) = array.dyn_array_ref() {
        if let Some(parts) = codec.encode_parts(&r) {
            return Ok(parts);
        }
        return encode(&r);
    }
    let mut out = Vec::new();
    array.dyn_with_array_ref(&mut |r| {
        out = encode(&r)?;
        Ok(())
    })?;
    Ok(out)
}

/// A writer into buffers of `piece_len` bytes each (the last one shorter), the first
/// sized from a hint of the total.
struct SplitWriter {
    bufs: Vec<Vec<u8>>,
    piece_len: usize,
    /// Bytes still expected (the hint less what was written), for the next buffer's size.
    expected: usize,
}

impl SplitWriter {
    fn new(piece_len: usize, hint: usize) -> Self {
        SplitWriter {
            bufs: Vec::new(),
            piece_len: piece_len.max(1),
            expected: hint,
        }
    }
}

impl Write for SplitWriter {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let full = self.bufs.last().is_none_or(|b| b.len() == self.piece_len);
            if full {
                let cap = self
                    .expected
                    .clamp(data.len().min(self.piece_len), self.piece_len);
                self.bufs.push(Vec::with_capacity(cap));
            }
            let Some(buf) = self.bufs.last_mut() else {
                break;
            };
            let take = (self.piece_len - buf.len()).min(data.len());
            if buf.capacity() - buf.len() < take {
                // Grow as a `Vec` would, but never past one piece.
                let want = (buf.capacity() * 2)
                    .max(buf.len() + take)
                    .min(self.piece_len);
                buf.reserve_exact(want - buf.len());
            }
            buf.extend_from_slice(&data[..take]);
            self.expected = self.expected.saturating_sub(take);
            data = &data[take..];
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A codec chosen at run time from a compression setting: plain `.npy` for
/// [`Compression::None`], else `.npy` in that compression.
pub fn codec_for(compression: Compression) -> Compressed<Npy> {
    Compressed::new(Npy, compression)
}

/// How many compression layers [`inspect`] peels before giving up.
const MAX_LAYERS: usize = 4;

/// Decode any redstash array value: `.npy`, or `.npy` inside one lz4/zlib/zstd layer.
/// A compressed value is decompressed only as far as the `.npy` header it holds declares
/// (see [`compress::decompress_npy`]): a compression bomb fails after a few KiB.
pub fn decode_array(value: Bytes, limits: &Limits) -> Result<RawArray> {
    match Format::sniff(&value) {
        Format::Npy => npy::decode(value, limits),
        f @ (Format::Lz4Frame | Format::Zlib | Format::Zstd) => {
            let npy_value = compress::decompress_npy(f, &value, limits)?;
            npy::decode(Bytes::from(npy_value), limits)
        }
        Format::ChunkManifest => Err(Error::unknown_format(
            "a chunked-array manifest: read it through ArrayStore",
        )),
        Format::ArrowIpc => Err(Error::unknown_format("an Arrow IPC value, not an array")),
        Format::Unknown => {
            let head: Vec<u8> = value.iter().take(8).copied().collect();
            Err(Error::unknown_format(format!(
                "no known magic (first bytes {head:02x?})"
            )))
        }
    }
}

/// How many times its stored length a zlib value is assumed to decompress to, for
/// [`decode_cost`] (zlib declares no size).
const ZLIB_RATIO_GUESS: usize = 4;
/// `.npy` values shorter than this count as free to decode in [`decode_cost`] (any copy
/// they need is under 64 KiB), so their header is not parsed an extra time.
const SMALL_NPY: usize = 64 << 10;

/// An estimate of the work of decoding `value` ([`decode_array`]), in bytes produced or
/// scanned, for [`Step::compute`](crate::exec::Step::compute): the size a compressed
/// frame declares (lz4 and zstd as redstash writes them; zlib declares none, its stored
/// length times 4 is assumed); for `.npy`, its length when its data must be copied
/// (byte-swapped) or checked (bool), 0 when the data is used in place; the stored length
/// of anything else (e.g. a recipe array's raw data).
pub(crate) fn decode_cost(value: &[u8], limits: &Limits) -> usize {
    let format = Format::sniff(value);
    match format {
        // A small `.npy` costs little whatever it needs (a copy of under 64 KiB): its
        // header is not parsed an extra time (a `get_many` of many small arrays would
        // parse every header twice).
        Format::Npy if value.len() < SMALL_NPY => 0,
        Format::Npy => match npy::parse_header(value, limits) {
            Ok(h)
                if h.dtype == DType::Bool
                    || !matches!(h.byte_order, ByteOrder::NotApplicable)
                        && h.byte_order != ByteOrder::NATIVE =>
            {
                value.len()
            }
            _ => 0,
        },
        Format::Lz4Frame | Format::Zstd => compress::declared_len(format, value)
            .map_or(value.len(), |n| usize::try_from(n).unwrap_or(usize::MAX)),
        Format::Zlib => value.len().saturating_mul(ZLIB_RATIO_GUESS),
        _ => value.len(),
    }
}

/// What [`inspect`] finds in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    /// Layers from the outside in, e.g. `[Lz4Frame, Npy]`.
    pub layers: Vec<Format>,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Memory order.
    pub order: Order,
    /// `.npy` version.
    pub npy_version: (u8, u8),
    /// Bytes as stored.
    pub stored_len: usize,
    /// Bytes of the uncompressed `.npy` value.
    pub raw_len: usize,
}

/// Describe a value without converting its data: layers, dtype, shape, sizes.
pub fn inspect(value: &[u8], limits: &Limits) -> Result<ValueInfo> {
    let mut layers = Vec::new();
    let mut owned;
    let mut cur = value;
    for _ in 0..=MAX_LAYERS {
        let f = Format::sniff(cur);
        layers.push(f);
        match f {
            Format::Npy => {
                let h = npy::parse_header(cur, limits)?;
                return Ok(ValueInfo {
                    layers,
                    dtype: h.dtype,
                    shape: h.shape,
                    order: h.order,
                    npy_version: h.version,
                    stored_len: value.len(),
                    raw_len: cur.len(),
                });
            }
            Format::Lz4Frame | Format::Zlib | Format::Zstd => {
                owned = compress::decompress_npy(f, cur, limits)?;
                cur = &owned;
            }
            other => {
                return Err(Error::unknown_format(format!(
                    "{} value is not an array",
                    other.name()
                )));
            }
        }
    }
    Err(Error::corrupt(
        "array",
        "too many nested compression layers",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunked::ChunkCutter;

    #[test]
    fn encodings_split_in_pieces_are_the_encoding_and_move_into_chunks() {
        // Bytes lz4 cannot shrink much, so that the value spans several pieces.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let a = RawArray::from_vec(vec![data.len()], data).unwrap();
        let codec = Compressed::lz4();
        let whole = codec.encode(&a.as_array_ref()).unwrap();
        let pieces = encode_pieces_split(&codec, &a, 1000).unwrap();
        assert!(pieces.len() > 10);
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.len() == 1000));
        assert!(
            pieces
                .iter()
                .all(|p| matches!(p, Cow::Owned(v) if v.capacity() <= 1000))
        );
        assert_eq!(pieces.concat(), whole);
        // Each piece is handed to its chunk as it is: no copy.
        let addresses: Vec<*const u8> = pieces.iter().map(|p| p.as_ptr()).collect();
        let chunks: Vec<_> = ChunkCutter::new(pieces, 1000).collect();
        assert_eq!(chunks.len(), addresses.len());
        for (c, p) in chunks.iter().zip(addresses) {
            assert!(matches!(&c[..], [Cow::Owned(v)] if v.as_ptr() == p));
        }
        // A value within one piece is one buffer; plain `.npy` borrows the data.
        let one = encode_pieces_split(&codec, &a, 1 << 20).unwrap();
        assert!(matches!(&one[..], [Cow::Owned(v)] if *v == whole));
        let npy = encode_pieces_split(&Npy, &a, 1000).unwrap();
        assert!(matches!(&npy[..], [Cow::Owned(_), Cow::Borrowed(_)]));
    }

    #[test]
    fn decode_costs_count_what_a_decode_produces_or_scans() {
        let limits = Limits::default();
        let n = 1 << 16;
        let floats = RawArray::from_vec(vec![n], vec![0.5f64; n]).unwrap();
        let npy = Npy.encode(&floats.as_array_ref()).unwrap();
        // Used in place.
        assert_eq!(decode_cost(&npy, &limits), 0);
        // Small: free, whatever its byte order (its header is not parsed).
        let small = RawArray::from_vec(vec![8], vec![0.5f64; 8]).unwrap();
        let mut small = Npy.encode(&small.as_array_ref()).unwrap();
        let at = small.windows(3).position(|w| w == b"<f8").unwrap();
        small[at] = b'>';
        assert_eq!(decode_cost(&small, &limits), 0);
        // Copied (byte-swapped) or scanned (bool).
        let (native, foreign): (&[u8], &[u8]) = if cfg!(target_endian = "little") {
            (b"'<f8'", b"'>f8'")
        } else {
            (b"'>f8'", b"'<f8'")
        };
        let mut swapped = npy.clone();
        let at = swapped.windows(5).position(|w| w == native).unwrap();
        swapped[at..at + 5].copy_from_slice(foreign);
        assert_eq!(decode_cost(&swapped, &limits), swapped.len());
        let bools = RawArray::from_vec(vec![n], vec![1u8; n])
            .and_then(|a| RawArray::new(DType::Bool, vec![n], Order::C, a.data().clone()))
            .unwrap();
        let bool_npy = Npy.encode(&bools.as_array_ref()).unwrap();
        assert_eq!(decode_cost(&bool_npy, &limits), bool_npy.len());
        // Compressed: the size the frame declares, whatever it is stored in.
        let lz4 = Compressed::lz4().encode(&floats.as_array_ref()).unwrap();
        assert!(lz4.len() < npy.len() / 10);
        assert_eq!(decode_cost(&lz4, &limits), npy.len());
        #[cfg(feature = "zstd")]
        {
            let zstd = Compressed::zstd(3).encode(&floats.as_array_ref()).unwrap();
            assert_eq!(decode_cost(&zstd, &limits), npy.len());
        }
        let zlib = Compressed::zlib(6).encode(&floats.as_array_ref()).unwrap();
        assert_eq!(decode_cost(&zlib, &limits), zlib.len() * ZLIB_RATIO_GUESS);
        assert_eq!(decode_cost(b"not a value", &limits), 11);
    }
}
