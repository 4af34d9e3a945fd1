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
