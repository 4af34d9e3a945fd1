//! An input file or standard input, decompressed when it is gzip (or zstd with the
//! `zstd` feature), counting the bytes consumed for progress, seekable when it is a
//! plain file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Inner {
    /// A plain file: seekable.
    File(File),
    /// Standard input or a compressed file.
    Stream(Box<dyn Read + Send>),
}

/// A source's input: a file (plain, gzip, or zstd with the `zstd` feature: detected by
/// their magic bytes, not the name) or standard input (`-`).
pub struct Input {
    inner: Inner,
    /// Bytes consumed from the file (compressed bytes for a compressed file).
    consumed: Arc<AtomicU64>,
    total: Option<u64>,
    identity: String,
    path: Option<PathBuf>,
}

impl Input {
    /// Open `path` (`-` is standard input).
    pub fn open(path: impl AsRef<Path>) -> Result<Input> {
        let path = path.as_ref();
        let consumed = Arc::new(AtomicU64::new(0));
        if path.as_os_str() == "-" {
            let stdin = Counting {
                inner: io::stdin(),
                count: consumed.clone(),
            };
            let (inner, kind) = decompress(BufReader::with_capacity(1 << 16, stdin))?;
            return Ok(Input {
                inner: Inner::Stream(inner),
                consumed,
                total: None,
                identity: format!("stdin ({kind})"),
                path: None,
            });
        }
        let file = File::open(path)
            .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?;
        let meta = file.metadata()?;
        let total = Some(meta.len());
        let identity = format!("{} ({} bytes)", path.display(), meta.len());
        let mut probe = [0u8; 4];
        let mut f = &file;
        let n = read_up_to(&mut f, &mut probe)?;
        (&file).seek(SeekFrom::Start(0))?;
        if n >= 2 && probe[..2] == [0x1f, 0x8b] || n == 4 && probe == ZSTD_MAGIC {
            let counting = Counting {
                inner: file,
                count: consumed.clone(),
            };
            let (inner, _) = decompress(BufReader::with_capacity(1 << 16, counting))?;
            return Ok(Input {
                inner: Inner::Stream(inner),
                consumed,
                total,
                identity,
                path: Some(path.to_owned()),
            });
        }
        Ok(Input {
            inner: Inner::File(file),
            consumed,
            total,
            identity,
            path: Some(path.to_owned()),
        })
    }

    /// A reader of any bytes (not seekable; no total).
    pub fn from_reader(reader: impl Read + Send + 'static, identity: impl Into<String>) -> Input {
        let consumed = Arc::new(AtomicU64::new(0));
        Input {
            inner: Inner::Stream(Box::new(Counting {
                inner: reader,
                count: consumed.clone(),
            })),
            consumed,
            total: None,
            identity: identity.into(),
            path: None,
        }
    }

    /// Whether the input is a plain file (so a byte offset can be sought).
    pub fn is_seekable(&self) -> bool {
        matches!(self.inner, Inner::File(_))
    }

    /// Bytes consumed and the total size, when known.
    pub fn bytes_read(&self) -> (u64, Option<u64>) {
        (self.consumed.load(Ordering::Relaxed), self.total)
    }

    /// What the input is (path and size).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The path, unless standard input or a reader.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The reader decompressed by its magic bytes.
fn decompress<R: BufRead + Send + 'static>(
    mut r: R,
) -> Result<(Box<dyn Read + Send>, &'static str)> {
    let head = r.fill_buf()?;
    if head.len() >= 2 && head[..2] == [0x1f, 0x8b] {
        return Ok((Box::new(flate2::bufread::MultiGzDecoder::new(r)), "gzip"));
    }
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        #[cfg(feature = "zstd")]
        return Ok((
            Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
            "zstd",
        ));
        #[cfg(not(feature = "zstd"))]
        return Err(Error::FeatureDisabled("zstd"));
    }
    Ok((Box::new(r), "plain"))
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::File(f) => {
                let n = f.read(buf)?;
                self.consumed.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Inner::Stream(s) => s.read(buf),
        }
    }
}

impl Seek for Input {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match &mut self.inner {
            Inner::File(f) => {
                let at = f.seek(pos)?;
                self.consumed.store(at, Ordering::Relaxed);
                Ok(at)
            }
            Inner::Stream(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a compressed input or standard input cannot seek",
            )),
        }
    }
}
