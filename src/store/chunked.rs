//! Chunked values: a value larger than the store's chunk limit is written as chunks under
//! keys that share the main key's hash slot, then a small manifest is written at the main
//! key, last. Readers either see the old value or the whole new one.
//!
//! Manifest (little-endian): magic `\x93RSTASH\x01`, generation `u64`, chunk count `u32`,
//! total length `u64`, chunk length `u64` (36 bytes: the first form, without checksum),
//! then, in the current form (44 bytes, what redstash writes), the xxh3-64 checksum `u64`
//! of the whole value (the chunks concatenated), which readers verify after assembling
//! it. The two forms differ only by their length: the checksum is appended, so a reader
//! that reads the first 36 bytes (an older writer looking for the chunks of the value it
//! replaces) still finds the chunks of a 44-byte manifest. Chunk `i` of generation `g` of
//! key `k` lives at `{k}:chunk:<g hex>:<i>` (or `k:chunk:..` when `k` already has a hash
//! tag, which the chunk keys then share).

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::Limits;
use crate::codec::sniff::MANIFEST_MAGIC;
use crate::error::{Error, Result};
use crate::store::hash_tag;

/// Bytes of the longest manifest (with checksum); `GETRANGE key 0 MANIFEST_LEN-1` reads
/// all of a manifest of either form.
pub(crate) const MANIFEST_LEN: usize = 44;

/// Bytes of a manifest of the first form, without checksum (written by earlier
/// versions; still read).
pub(crate) const MANIFEST_V1_LEN: usize = 36;

/// Largest chunk a manifest may declare: Redis's largest bulk string (its default
/// `proto-max-bulk-len`, 512 MiB). No chunk redstash writes is larger.
pub(crate) const MAX_CHUNK_LEN: u64 = 512 << 20;

/// Description of a chunked value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub generation: u64,
    pub chunks: u32,
    pub total_len: u64,
    pub chunk_len: u64,
    /// xxh3-64 of the whole value; `None` in a manifest of the first form.
    pub checksum: Option<u64>,
}

impl Manifest {
    /// The manifest of `value` cut in chunks of `chunk_len` bytes, with its checksum
    /// (of the whole buffer at once: what [`for_pieces`](Self::for_pieces) must match).
    #[cfg(test)]
    pub fn for_value(value: &[u8], chunk_len: usize) -> Result<Self> {
        let mut m = Self::new(value.len(), chunk_len)?;
        m.checksum = Some(xxhash_rust::xxh3::xxh3_64(value));
        Ok(m)
    }

    /// The manifest of the value made of `pieces` (concatenated) cut in chunks of
    /// `chunk_len` bytes, with its checksum, read piece by piece (the value is never
    /// assembled).
    pub fn for_pieces<P: AsRef<[u8]>>(pieces: &[P], chunk_len: usize) -> Result<Self> {
        let total = pieces.iter().map(|p| p.as_ref().len()).sum();
        let mut m = Self::new(total, chunk_len)?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for p in pieces {
            hasher.update(p.as_ref());
        }
        m.checksum = Some(hasher.digest());
        Ok(m)
    }

    /// A manifest of `total_len` bytes in chunks of `chunk_len`, without checksum.
    pub fn new(total_len: usize, chunk_len: usize) -> Result<Self> {
        if chunk_len == 0 {
            return Err(Error::InvalidArgument("chunk size must be positive".into()));
        }
        let chunks = total_len.div_ceil(chunk_len);
        Ok(Manifest {
            generation: new_generation(),
            chunks: u32::try_from(chunks)
                .map_err(|_| Error::InvalidArgument("too many chunks".into()))?,
            total_len: total_len as u64,
            chunk_len: chunk_len as u64,
            checksum: None,
        })
    }

    /// The manifest as stored: 44 bytes with a checksum, 36 without.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MANIFEST_LEN);
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.extend_from_slice(&self.total_len.to_le_bytes());
        out.extend_from_slice(&self.chunk_len.to_le_bytes());
        if let Some(sum) = self.checksum {
            out.extend_from_slice(&sum.to_le_bytes());
        }
        out
    }

    /// Parse a manifest; `None` when the bytes are not one (no magic).
    pub fn parse(b: &[u8]) -> Result<Option<Self>> {
        if !b.starts_with(MANIFEST_MAGIC) {
            return Ok(None);
        }
        if b.len() != MANIFEST_LEN && b.len() != MANIFEST_V1_LEN {
            return Err(Error::corrupt(
                "chunk manifest",
                format!(
                    "{} bytes, expected {MANIFEST_LEN} (or {MANIFEST_V1_LEN} without checksum)",
                    b.len()
                ),
            ));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let m = Manifest {
            generation: u64_at(8),
            chunks: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
            total_len: u64_at(20),
            chunk_len: u64_at(28),
            checksum: (b.len() == MANIFEST_LEN).then(|| u64_at(36)),
        };
        let expect = m.total_len.div_ceil(m.chunk_len.max(1));
        if m.chunk_len == 0 || u64::from(m.chunks) != expect {
            return Err(Error::corrupt(
                "chunk manifest",
                format!(
                    "{} chunks of {} bytes cannot hold {} bytes",
                    m.chunks, m.chunk_len, m.total_len
                ),
            ));
        }
        Ok(Some(m))
    }

    /// Check what the manifest declares against `limits` before anything is built from
    /// it: the total against [`Limits::max_value_len`], the chunk count against
    /// [`Limits::max_chunks`], the chunk length against Redis's bulk limit.
    pub fn check(&self, key: &str, limits: &Limits) -> Result<()> {
        if self.total_len > limits.max_value_len {
            return Err(Error::too_large(self.total_len, limits.max_value_len).at_key(key));
        }
        if self.chunks > limits.max_chunks || self.chunk_len > MAX_CHUNK_LEN {
            return Err(Error::corrupt(
                "chunk manifest",
                format!(
                    "{} chunks of {} bytes exceed the limits ({} chunks of at most {MAX_CHUNK_LEN} bytes)",
                    self.chunks, self.chunk_len, limits.max_chunks
                ),
            )
            .at_key(key));
        }
        Ok(())
    }

    /// The chunk keys; call [`check`](Self::check) first for a manifest read back.
    pub fn chunk_keys(&self, key: &str) -> Vec<String> {
        (0..self.chunks)
            .map(|i| chunk_key(key, self.generation, i))
            .collect()
    }
}

/// A value given as pieces (its encoding: pieces borrowed from the caller's array, or
/// owned), cut into the values of its chunks one chunk at a time, in order. A chunk is
/// the sub-slices of the pieces it spans: borrowed pieces are not copied, an owned
/// piece the chunk holds whole is moved into it, and only the part of an owned piece
/// that a chunk shares with others is copied (at most one chunk at a time). An owned
/// piece is freed once its last byte is cut.
pub(crate) struct ChunkCutter<'a> {
    pieces: Vec<Cow<'a, [u8]>>,
    /// The piece the next chunk starts in, and the offset in it.
    piece: usize,
    offset: usize,
    chunk_len: usize,
    /// Bytes not cut yet.
    remaining: usize,
}

impl<'a> ChunkCutter<'a> {
    /// Cut `pieces` (concatenated) in chunks of `chunk_len` bytes (at least 1).
    pub fn new(pieces: Vec<Cow<'a, [u8]>>, chunk_len: usize) -> Self {
        ChunkCutter {
            remaining: pieces.iter().map(|p| p.len()).sum(),
            pieces,
            piece: 0,
            offset: 0,
            chunk_len: chunk_len.max(1),
        }
    }
}

impl<'a> Iterator for ChunkCutter<'a> {
    type Item = Vec<Cow<'a, [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let mut want = self.chunk_len.min(self.remaining);
        self.remaining -= want;
        let mut out = Vec::with_capacity(2);
        while want > 0 {
            let Some(p) = self.pieces.get_mut(self.piece) else {
                break;
            };
            let len = p.len();
            let (start, n) = (self.offset, (len - self.offset).min(want));
            if n > 0 {
                out.push(match p {
                    // A sub-slice of the caller's memory, for as long as it lives.
                    Cow::Borrowed(b) => Cow::Borrowed(&b[start..start + n]),
                    Cow::Owned(v) if n == len => Cow::Owned(std::mem::take(v)),
                    Cow::Owned(v) => Cow::Owned(v[start..start + n].to_vec()),
                });
            }
            want -= n;
            self.offset += n;
            if self.offset == len {
                // Done with this piece: an owned one is freed now.
                *p = Cow::Borrowed(&[]);
                self.piece += 1;
                self.offset = 0;
            }
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining.div_ceil(self.chunk_len);
        (n, Some(n))
    }
}

impl ExactSizeIterator for ChunkCutter<'_> {}

/// The key of chunk `i` of generation `generation`; same hash slot as `key`.
pub(crate) fn chunk_key(key: &str, generation: u64, i: u32) -> String {
    if hash_tag(key).is_some() {
        format!("{key}:chunk:{generation:016x}:{i}")
    } else {
        format!("{{{key}}}:chunk:{generation:016x}:{i}")
    }
}

fn new_generation() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_validation() {
        let value = vec![7u8; 1001];
        let m = Manifest::for_value(&value, 100).unwrap();
        assert_eq!(m.chunks, 11);
        assert_eq!(m.checksum, Some(xxhash_rust::xxh3::xxh3_64(&value)));
        let b = m.to_bytes();
        assert_eq!(b.len(), MANIFEST_LEN);
        assert_eq!(Manifest::parse(&b).unwrap(), Some(m));
        assert_eq!(
            crate::codec::Format::sniff(&b),
            crate::codec::Format::ChunkManifest
        );
        // The first form: the same fields, no checksum.
        let v1 = Manifest::parse(&b[..MANIFEST_V1_LEN]).unwrap().unwrap();
        assert_eq!(
            v1,
            Manifest {
                checksum: None,
                ..m
            }
        );
        assert_eq!(v1.to_bytes(), &b[..MANIFEST_V1_LEN]);
        assert!(Manifest::parse(&b[..40]).is_err());
        let mut longer = b.clone();
        longer.push(0);
        assert!(Manifest::parse(&longer).is_err());
        assert_eq!(Manifest::parse(b"\x93NUMPY").unwrap(), None);
        let mut bad = b.clone();
        bad[16] = 3;
        assert!(Manifest::parse(&bad).is_err());
        assert!(Manifest::parse(&b[..20]).is_err());
        assert_ne!(
            Manifest::new(1, 1).unwrap().generation,
            Manifest::new(1, 1).unwrap().generation
        );
    }

    /// `value` cut at `cuts` (offsets, any order, out-of-range ones clamped) into
    /// pieces, borrowed or owned (alternating from `owned_first`).
    fn split<'v>(value: &'v [u8], cuts: &[usize], owned_first: bool) -> Vec<Cow<'v, [u8]>> {
        let mut at: Vec<usize> = cuts.iter().map(|&c| c.min(value.len())).collect();
        at.push(0);
        at.push(value.len());
        at.sort_unstable();
        at.windows(2)
            .enumerate()
            .map(|(i, w)| {
                let part = &value[w[0]..w[1]];
                if (i % 2 == 0) == owned_first {
                    Cow::Owned(part.to_vec())
                } else {
                    Cow::Borrowed(part)
                }
            })
            .collect()
    }

    proptest::proptest! {
        /// The manifest computed piece by piece is the one of the whole buffer (same
        /// length, chunk count and checksum), and the chunks cut from the pieces are
        /// the whole buffer's chunks.
        #[test]
        fn pieces_give_the_manifest_and_chunks_of_the_whole_value(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..20_000),
            cuts in proptest::collection::vec(0usize..20_000, 0..8),
            chunk_len in 1usize..5000,
            owned_first: bool,
        ) {
            let pieces = split(&value, &cuts, owned_first);
            let streamed = Manifest::for_pieces(&pieces, chunk_len).unwrap();
            let whole = Manifest::for_value(&value, chunk_len).unwrap();
            proptest::prop_assert_eq!(streamed.checksum, whole.checksum);
            proptest::prop_assert_eq!(
                (streamed.chunks, streamed.total_len, streamed.chunk_len),
                (whole.chunks, whole.total_len, whole.chunk_len)
            );
            let cutter = ChunkCutter::new(pieces, chunk_len);
            proptest::prop_assert_eq!(cutter.len(), whole.chunks as usize);
            let chunks: Vec<Vec<u8>> = cutter.map(|c| c.concat()).collect();
            let expected: Vec<Vec<u8>> = value.chunks(chunk_len).map(<[u8]>::to_vec).collect();
            proptest::prop_assert_eq!(chunks, expected);
        }
    }

    #[test]
    fn borrowed_pieces_are_cut_without_copies() {
        let data: Vec<u8> = (0..=255).collect();
        let header = b"head".to_vec();
        let pieces = vec![Cow::Owned(header.clone()), Cow::Borrowed(&data[..])];
        let chunks: Vec<_> = ChunkCutter::new(pieces, 100).collect();
        assert_eq!(chunks.len(), 3);
        // The header moved whole into the first chunk, then the array's own bytes.
        assert!(matches!(&chunks[0][0], Cow::Owned(h) if *h == header));
        for c in chunks.iter().flatten().skip(1) {
            let Cow::Borrowed(b) = c else {
                panic!("a borrowed piece was copied")
            };
            assert!(data.as_ptr_range().contains(&b.as_ptr()));
        }
        let spans: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(spans, [2, 1, 1]);
        assert_eq!(chunks.concat().concat(), [&header[..], &data[..]].concat());
        // An owned piece shared by chunks is copied one chunk at a time.
        let mut one = ChunkCutter::new(vec![Cow::Owned(data.clone())], 200);
        assert!(matches!(one.next().as_deref(), Some([Cow::Owned(c)]) if c[..] == data[..200]));
        assert!(matches!(one.next().as_deref(), Some([Cow::Owned(c)]) if c[..] == data[200..]));
        assert!(one.next().is_none());
        assert_eq!(ChunkCutter::new(Vec::new(), 10).count(), 0);
    }

    #[test]
    fn chunk_keys_share_the_slot_tag() {
        assert_eq!(chunk_key("a:b", 1, 2), "{a:b}:chunk:0000000000000001:2");
        assert_eq!(chunk_key("x{t}y", 1, 0), "x{t}y:chunk:0000000000000001:0");
        assert_eq!(hash_tag(&chunk_key("a:b", 7, 0)), Some("a:b"));
    }
}
