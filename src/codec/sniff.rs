//! Format detection by magic bytes.

/// The format of a stored value, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// NumPy `.npy` (`\x93NUMPY`).
    Npy,
    /// An lz4 frame (`04 22 4D 18`).
    Lz4Frame,
    /// A zstd frame (`28 B5 2F FD`).
    Zstd,
    /// A zlib stream (deflate, valid CMF/FLG header checksum).
    Zlib,
    /// An Arrow IPC stream (`FF FF FF FF` continuation marker) or file (`ARROW1`).
    ArrowIpc,
    /// A redstash manifest of a chunked value.
    ChunkManifest,
    /// None of the above.
    Unknown,
}

/// Magic of `.npy` values.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Magic of lz4 frames.
pub const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];
/// Magic of zstd frames.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Magic of redstash chunk manifests.
pub const MANIFEST_MAGIC: &[u8; 8] = b"\x93RSTASH\x01";

impl Format {
    /// Detect the format of `bytes` from its magic.
    ///
    /// ```
    /// use redstash::codec::Format;
    /// assert_eq!(Format::sniff(b"\x93NUMPY\x01\x00"), Format::Npy);
    /// assert_eq!(Format::sniff(&[0x78, 0x9c, 0, 0]), Format::Zlib);
    /// assert_eq!(Format::sniff(b"hello"), Format::Unknown);
    /// ```
    pub fn sniff(bytes: &[u8]) -> Format {
        if bytes.starts_with(NPY_MAGIC) {
            Format::Npy
        } else if bytes.starts_with(MANIFEST_MAGIC) {
            Format::ChunkManifest
        } else if bytes.starts_with(&LZ4_MAGIC) {
            Format::Lz4Frame
        } else if bytes.starts_with(&ZSTD_MAGIC) {
            Format::Zstd
        } else if bytes.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) || bytes.starts_with(b"ARROW1") {
            Format::ArrowIpc
        } else if is_zlib_header(bytes) {
            Format::Zlib
        } else {
            Format::Unknown
        }
    }

    /// A short name (`npy`, `lz4`, `zstd`, `zlib`, `arrow`, `chunked`, `unknown`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Npy => "npy",
            Format::Lz4Frame => "lz4",
            Format::Zstd => "zstd",
            Format::Zlib => "zlib",
            Format::ArrowIpc => "arrow",
            Format::ChunkManifest => "chunked",
            Format::Unknown => "unknown",
        }
    }
}

/// What a redstash chunk manifest ([`Format::ChunkManifest`], the value at the key of an
/// array stored in chunks) declares: how many chunks hold how many bytes.
///
/// Layout (little-endian): [`MANIFEST_MAGIC`], generation `u64`, chunk count `u32`,
/// total length `u64`, chunk length `u64`, then (in the 44-byte form redstash writes)
/// the xxh3-64 checksum `u64` of the whole value; 36 bytes without it. What it declares is
/// read, not trusted: the stores check it before reading chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkedValue {
    /// Number of chunks.
    pub chunks: u32,
    /// Bytes of the whole value (the chunks concatenated).
    pub total_len: u64,
    /// Bytes of every chunk but the last.
    pub chunk_len: u64,
    /// Whether the manifest records a checksum of the whole value.
    pub checksummed: bool,
}

impl ChunkedValue {
    /// Read a chunk manifest; `None` when `bytes` is not one (no magic, or not 36 or 44
    /// bytes long).
    ///
    /// ```
    /// use redstash::codec::sniff::{ChunkedValue, MANIFEST_MAGIC};
    /// let mut m = MANIFEST_MAGIC.to_vec();
    /// m.extend_from_slice(&7u64.to_le_bytes()); // generation
    /// m.extend_from_slice(&3u32.to_le_bytes()); // chunks
    /// m.extend_from_slice(&250u64.to_le_bytes()); // total length
    /// m.extend_from_slice(&100u64.to_le_bytes()); // chunk length
    /// let v = ChunkedValue::read(&m).unwrap();
    /// assert_eq!((v.chunks, v.total_len, v.checksummed), (3, 250, false));
    /// assert_eq!(ChunkedValue::read(b"\x93NUMPY"), None);
    /// ```
    pub fn read(bytes: &[u8]) -> Option<Self> {
        if !bytes.starts_with(MANIFEST_MAGIC) || !matches!(bytes.len(), 36 | 44) {
            return None;
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(ChunkedValue {
            chunks: u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]),
            total_len: u64_at(20),
            chunk_len: u64_at(28),
            checksummed: bytes.len() == 44,
        })
    }
}

fn is_zlib_header(b: &[u8]) -> bool {
    if b.len() < 2 {
        return false;
    }
    let (cmf, flg) = (b[0], b[1]);
    cmf & 0x0F == 8
        && cmf >> 4 <= 7
        && (u16::from(cmf) * 256 + u16::from(flg)) % 31 == 0
        && flg & 0x20 == 0 // no preset dictionary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_levels_all_sniff() {
        for lvl in 0..=9 {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(lvl));
            std::io::Write::write_all(&mut e, b"abc").unwrap();
            let v = e.finish().unwrap();
            assert_eq!(Format::sniff(&v), Format::Zlib, "level {lvl}");
        }
        assert_eq!(Format::sniff(&[]), Format::Unknown);
        assert_eq!(Format::sniff(&[0x78]), Format::Unknown);
    }
}
