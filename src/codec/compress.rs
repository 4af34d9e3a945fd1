//! Compression layers around any codec: lz4 frames, zlib streams, zstd frames (feature
//! `zstd`). All are standard formats that Python's `lz4.frame`, `zlib` and `zstandard`
//! read and write.

use std::io::{Read, Write};

use crate::codec::Limits;
use crate::codec::npy;
use crate::codec::sniff::{Format, NPY_MAGIC};
use crate::error::{Error, Result};

/// A compression layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// lz4 frame format (with content size and checksum), fast.
    Lz4,
    /// zlib stream, `level` 0-9 (1 fast, 6 default, 9 best).
    Zlib {
        /// 0-9.
        level: u32,
    },
    /// zstd frame, `level` 1-22 (negative levels are faster); needs feature `zstd`.
    Zstd {
        /// 1-22, or negative for the fast modes.
        level: i32,
    },
}

impl Compression {
    /// A short name: `none`, `lz4`, `zlib(6)`, `zstd(3)`.
    pub fn name(&self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Lz4 => "lz4".into(),
            Compression::Zlib { level } => format!("zlib({level})"),
            Compression::Zstd { level } => format!("zstd({level})"),
        }
    }

    /// Parse `none`, `lz4`, `zlib`, `zlib:6`, `zstd`, `zstd:3` (also `zlib(6)`).
    pub fn parse(s: &str) -> Result<Compression> {
        let s = s.trim().to_ascii_lowercase();
        let (name, level) = match s.split_once([':', '(']) {
            Some((n, l)) => (n.to_owned(), Some(l.trim_end_matches(')').to_owned())),
            None => (s.clone(), None),
        };
        let bad = || Error::InvalidArgument(format!("unknown compression {s:?}"));
        let c = match (name.as_str(), level) {
            ("none" | "raw" | "npy", None) => Compression::None,
            ("lz4", None) => Compression::Lz4,
            ("zlib", l) => Compression::Zlib {
                level: l
                    .map(|l| l.parse().map_err(|_| bad()))
                    .transpose()?
                    .unwrap_or(6),
            },
            ("zstd", l) => Compression::Zstd {
                level: l
                    .map(|l| l.parse().map_err(|_| bad()))
                    .transpose()?
                    .unwrap_or(3),
            },
            _ => return Err(bad()),
        };
        c.validate()?;
        Ok(c)
    }

    /// Check the level and that the codec is compiled in.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Compression::Zlib { level } if level > 9 => Err(Error::InvalidArgument(format!(
                "zlib level {level} is out of 0..=9"
            ))),
            Compression::Zstd { level } => {
                if cfg!(feature = "zstd") {
                    if !(-131072..=22).contains(&level) {
                        return Err(Error::InvalidArgument(format!(
                            "zstd level {level} is out of -131072..=22"
                        )));
                    }
                    Ok(())
                } else {
                    Err(Error::FeatureDisabled("zstd"))
                }
            }
            _ => Ok(()),
        }
    }

    /// Compress what `body` writes into `out`; `content_len` is the exact number of bytes
    /// `body` will write (stored in the frame header where the format has a field for it).
    pub fn compress_with(
        &self,
        content_len: usize,
        out: &mut dyn Write,
        body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        match *self {
            Compression::None => body(out)?,
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .content_size(Some(content_len as u64))
                    .content_checksum(true)
                    .block_size(lz4_flex::frame::BlockSize::Max4MB);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                body(&mut enc)?;
                enc.finish()
                    .map_err(|e| Error::corrupt("lz4", e.to_string()))?;
            }
            Compression::Zlib { level } => {
                let mut enc = flate2::write::ZlibEncoder::new(out, flate2::Compression::new(level));
                body(&mut enc)?;
                enc.finish()?;
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                enc.include_contentsize(true)?;
                enc.set_pledged_src_size(Some(content_len as u64))?;
                body(&mut enc)?;
                enc.finish()?;
            }
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd { .. } => return Err(Error::FeatureDisabled("zstd")),
        }
        Ok(())
    }

    /// Compress a byte slice into a new vector.
    pub fn compress(&self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        self.compress_with(input.len(), &mut out, &mut |w| w.write_all(input))?;
        Ok(out)
    }
}

/// Worst-case expansion ratio used to bound the initial allocation for a declared size:
/// a lying header can make us reserve at most this multiple of the input.
const MAX_PREALLOC_RATIO: u64 = 64;

fn initial_capacity(declared: Option<u64>, input_len: usize, cap: u64) -> usize {
    let bound = (input_len as u64)
        .saturating_mul(MAX_PREALLOC_RATIO)
        .min(cap);
    declared.unwrap_or(input_len as u64 * 3).min(bound) as usize
}

fn read_capped(
    format: &'static str,
    reader: impl Read,
    capacity: usize,
    cap: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt(format, e.to_string()))?;
    if out.len() as u64 > cap {
        return Err(Error::too_large(out.len() as u64, cap));
    }
    Ok(out)
}

/// Inflate a whole zlib stream: the stream must end (checksum verified) exactly at the
/// end of `input`; a truncated stream or trailing bytes are errors.
fn inflate_zlib(input: &[u8], cap: u64) -> Result<Vec<u8>> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut d = Decompress::new(true);
    let mut out = Vec::with_capacity(initial_capacity(None, input.len(), cap));
    loop {
        if out.len() == out.capacity() {
            if out.len() as u64 >= cap {
                return Err(Error::too_large(out.len() as u64 + 1, cap));
            }
            let grow = (out.len().max(64 << 10) as u64).min(cap - out.len() as u64);
            out.reserve(grow as usize);
        }
        let (in_before, out_before) = (d.total_in(), out.len());
        let rest = &input[d.total_in() as usize..];
        let status = d
            .decompress_vec(rest, &mut out, FlushDecompress::Finish)
            .map_err(|e| Error::corrupt("zlib", e.to_string()))?;
        match status {
            Status::StreamEnd => break,
            _ if d.total_in() == in_before
                && out.len() == out_before
                && out.len() < out.capacity() =>
            {
                return Err(Error::corrupt("zlib", "stream ends before its end marker"));
            }
            _ => {}
        }
    }
    if (d.total_in() as usize) < input.len() {
        return Err(Error::corrupt(
            "zlib",
            format!(
                "{} bytes after the end of the stream",
                input.len() - d.total_in() as usize
            ),
        ));
    }
    Ok(out)
}

/// Whether the frame ends with its end mark (and content checksum, when flagged): the
/// decoder treats end of input as end of frame, so a cut frame would otherwise pass.
fn lz4_frame_is_terminated(input: &[u8]) -> bool {
    let Some(&flg) = input.get(4) else {
        return false;
    };
    let tail = if flg & 0x04 != 0 { 8 } else { 4 };
    input.len() >= 7 + tail && input[input.len() - tail..input.len() - tail + 4] == [0; 4]
}

fn lz4_declared_size(input: &[u8]) -> Option<u64> {
    let flg = *input.get(4)?;
    if flg & 0x08 == 0 {
        return None;
    }
    let b: [u8; 8] = input.get(6..14)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// The decompressed size a frame of `format` declares in its header (lz4 and zstd frames
/// as redstash writes them; a zlib stream declares none). Not checked: an estimate.
pub(crate) fn declared_len(format: Format, input: &[u8]) -> Option<u64> {
    match format {
        Format::Lz4Frame => lz4_declared_size(input),
        #[cfg(feature = "zstd")]
        Format::Zstd => zstd::zstd_safe::get_frame_content_size(input)
            .ok()
            .flatten(),
        _ => None,
    }
}

/// Decompress one layer of `format` (`Lz4Frame`, `Zlib` or `Zstd`), refusing to produce
/// more than `cap` bytes. A frame header declaring more than `cap` is rejected before
/// anything is allocated.
pub fn decompress(format: Format, input: &[u8], cap: u64) -> Result<Vec<u8>> {
    match format {
        Format::Lz4Frame => {
            let declared = lz4_declared_size(input);
            if let Some(d) = declared.filter(|&d| d > cap) {
                return Err(Error::too_large(d, cap));
            }
            if !lz4_frame_is_terminated(input) {
                return Err(Error::corrupt("lz4", "frame ends before its end mark"));
            }
            let cap_now = initial_capacity(declared, input.len(), cap);
            let out = read_capped(
                "lz4",
                lz4_flex::frame::FrameDecoder::new(input),
                cap_now,
                cap,
            )?;
            if let Some(d) = declared.filter(|&d| d != out.len() as u64) {
                return Err(Error::corrupt(
                    "lz4",
                    format!("frame declares {d} bytes but holds {}", out.len()),
                ));
            }
            Ok(out)
        }
        Format::Zlib => inflate_zlib(input, cap),
        #[cfg(feature = "zstd")]
        Format::Zstd => {
            let declared = zstd::zstd_safe::get_frame_content_size(input)
                .ok()
                .flatten();
            if let Some(d) = declared.filter(|&d| d > cap) {
                return Err(Error::too_large(d, cap));
            }
            let dec = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::corrupt("zstd", e.to_string()))?
                .single_frame();
            read_capped(
                "zstd",
                dec,
                initial_capacity(declared, input.len(), cap),
                cap,
            )
        }
        #[cfg(not(feature = "zstd"))]
        Format::Zstd => Err(Error::FeatureDisabled("zstd")),
        other => Err(Error::unknown_format(format!(
            "{} is not a compression format",
            other.name()
        ))),
    }
}

/// Read into `buf` until it is full or the stream ends; returns the bytes read.
fn read_up_to(format: &'static str, r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::corrupt(format, e.to_string())),
        }
    }
    Ok(got)
}

/// Decompress a stream that must hold exactly one `.npy` value: the first bytes are
/// decompressed and checked (magic, header, declared size against `limits`), then the rest
/// goes straight into one buffer of the declared final size. Output that is not a `.npy`
/// fails at once; output beyond what the header declares is `Corrupt`, so a bomb costs at
/// most its declared size (bounded by `limits.max_value_len`), never its expanded size.
fn read_npy_bounded(format: &'static str, r: &mut dyn Read, limits: &Limits) -> Result<Vec<u8>> {
    read_npy_layers(format, r, limits, 0)
}

fn read_npy_layers(
    format: &'static str,
    r: &mut dyn Read,
    limits: &Limits,
    depth: usize,
) -> Result<Vec<u8>> {
    let mut head = [0u8; 12];
    let got = read_up_to(format, r, &mut head[..10])?;
    let inner = Format::sniff(&head[..got]);
    if matches!(inner, Format::Lz4Frame | Format::Zlib | Format::Zstd) {
        if depth >= 3 {
            return Err(Error::corrupt(
                "array",
                "too many nested compression layers",
            ));
        }
        let mut rest = std::io::Read::chain(&head[..got], r);
        return match inner {
            Format::Lz4Frame => {
                let mut dec = lz4_flex::frame::FrameDecoder::new(&mut rest);
                read_npy_layers("lz4", &mut dec, limits, depth + 1)
            }
            Format::Zlib => {
                let mut dec = flate2::read::ZlibDecoder::new(&mut rest);
                read_npy_layers("zlib", &mut dec, limits, depth + 1)
            }
            #[cfg(feature = "zstd")]
            _ => {
                let mut dec = zstd::stream::read::Decoder::new(&mut rest)
                    .map_err(|e| Error::corrupt("zstd", e.to_string()))?
                    .single_frame();
                read_npy_layers("zstd", &mut dec, limits, depth + 1)
            }
            #[cfg(not(feature = "zstd"))]
            _ => Err(Error::FeatureDisabled("zstd")),
        };
    }
    if got < NPY_MAGIC.len() || !head.starts_with(NPY_MAGIC) {
        return Err(Error::unknown_format(format!(
            "the {format} layer does not hold a .npy value (first bytes {:02x?})",
            &head[..got.min(8)]
        )));
    }
    if got < 10 {
        return Err(Error::corrupt(
            format,
            "the .npy value ends inside its header",
        ));
    }
    let (prefix, hlen) = match head[6] {
        1 => (10, u16::from_le_bytes([head[8], head[9]]) as usize),
        2 | 3 => {
            if read_up_to(format, r, &mut head[10..12])? < 2 {
                return Err(Error::corrupt(
                    format,
                    "the .npy value ends inside its header",
                ));
            }
            let n = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            (12, usize::try_from(n).unwrap_or(usize::MAX))
        }
        v => {
            return Err(Error::corrupt(
                "npy",
                format!("unsupported format version {v}.{}", head[7]),
            ));
        }
    };
    if hlen > limits.max_header_len {
        return Err(Error::too_large(hlen as u64, limits.max_header_len as u64));
    }
    let header_len = prefix + hlen;
    let mut out = vec![0u8; header_len];
    out[..prefix].copy_from_slice(&head[..prefix]);
    if read_up_to(format, r, &mut out[prefix..])? < hlen {
        return Err(Error::corrupt(
            format,
            "the .npy value ends inside its header",
        ));
    }
    // Checks the dict and that the declared data size fits `limits.max_value_len`.
    let header = npy::parse_header(&out, limits)?;
    let data_len = header.data_len()?;
    let total = header_len
        .checked_add(data_len)
        .ok_or_else(|| Error::corrupt("npy", "declared size overflows"))?;
    out.try_reserve_exact(data_len)
        .map_err(|_| Error::too_large(total as u64, limits.max_value_len))?;
    (&mut *r)
        .take(data_len as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt(format, e.to_string()))?;
    if out.len() < total {
        return Err(Error::truncated(
            "npy",
            data_len as u64,
            (out.len() - header_len) as u64,
        ));
    }
    let mut probe = [0u8; 1];
    if read_up_to(format, r, &mut probe)? != 0 {
        return Err(Error::corrupt(
            format,
            format!("decompresses to more than the {total} bytes its .npy header declares"),
        ));
    }
    Ok(out)
}

/// Decompress one layer of `format` (`Lz4Frame`, `Zlib` or `Zstd`) that must hold exactly
/// one `.npy` value (what redstash's compressed array codecs write). Memory and work are
/// bounded by the size the `.npy` header declares (itself bounded by `limits`), whatever the
/// compressed bytes expand to; see [`decompress`] for layers that hold anything else.
pub fn decompress_npy(format: Format, input: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    match format {
        Format::Lz4Frame => {
            if !lz4_frame_is_terminated(input) {
                return Err(Error::corrupt("lz4", "frame ends before its end mark"));
            }
            let mut dec = lz4_flex::frame::FrameDecoder::new(input);
            let out = read_npy_bounded("lz4", &mut dec, limits)?;
            if let Some(d) = lz4_declared_size(input).filter(|&d| d != out.len() as u64) {
                return Err(Error::corrupt(
                    "lz4",
                    format!("frame declares {d} bytes but holds {}", out.len()),
                ));
            }
            Ok(out)
        }
        Format::Zlib => {
            let mut dec = flate2::bufread::ZlibDecoder::new(input);
            let out = read_npy_bounded("zlib", &mut dec, limits)?;
            let rest = dec.get_ref().len();
            if rest != 0 {
                return Err(Error::corrupt(
                    "zlib",
                    format!("{rest} bytes after the end of the stream"),
                ));
            }
            Ok(out)
        }
        #[cfg(feature = "zstd")]
        Format::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::corrupt("zstd", e.to_string()))?
                .single_frame();
            read_npy_bounded("zstd", &mut dec, limits)
        }
        #[cfg(not(feature = "zstd"))]
        Format::Zstd => Err(Error::FeatureDisabled("zstd")),
        other => Err(Error::unknown_format(format!(
            "{} is not a compression format",
            other.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_caps() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut kinds = vec![
            Compression::Lz4,
            Compression::Zlib { level: 1 },
            Compression::Zlib { level: 9 },
        ];
        if cfg!(feature = "zstd") {
            kinds.push(Compression::Zstd { level: 3 });
        }
        for c in kinds {
            let z = c.compress(&data).unwrap();
            let f = Format::sniff(&z);
            assert_eq!(decompress(f, &z, u64::MAX).unwrap(), data, "{c:?}");
            assert!(
                matches!(
                    decompress(f, &z, 1000),
                    Err(Error::InvalidValue {
                        problem: crate::ValueProblem::TooLarge { .. },
                        ..
                    })
                ),
                "{c:?}"
            );
            let cut = &z[..z.len() / 2];
            assert!(
                decompress(f, cut, u64::MAX).is_err(),
                "{c:?} truncated accepted"
            );
        }
    }

    #[test]
    fn lying_lz4_header_is_rejected_without_allocating() {
        let mut z = Compression::Lz4.compress(b"hello world").unwrap();
        // content size field sits at 6..14 when the flag is set.
        z[6..14].copy_from_slice(&(1u64 << 42).to_le_bytes());
        assert!(matches!(
            decompress(Format::Lz4Frame, &z, 1 << 32),
            Err(Error::InvalidValue {
                problem: crate::ValueProblem::TooLarge { .. },
                ..
            })
        ));
    }

    #[test]
    fn parses_names() {
        assert_eq!(
            Compression::parse("zlib:1").unwrap(),
            Compression::Zlib { level: 1 }
        );
        assert_eq!(Compression::parse("LZ4").unwrap(), Compression::Lz4);
        assert!(Compression::parse("zlib:12").is_err());
        assert!(Compression::parse("brotli").is_err());
    }
}
