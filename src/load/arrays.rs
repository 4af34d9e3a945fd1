//! Loading `.npy` files into an [`ArrayStore`], one key per file (`arr:{stem}`).
//!
//! Files are read one at a time: the header first (its size and the data size it
//! declares checked against [`Limits`] and against the file's length before anything
//! is allocated), then exactly the declared data, decoded by the crate's `.npy` codec
//! and written with [`ArrayStore::put`] (chunked above the store's chunk size).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::record::{Position, Record, Value};
use super::template::KeyTemplate;
use super::{MAX_REPORTED_ERRORS, OnError};
use crate::codec::{ArrayCodec, Limits, npy};
use crate::error::{Error, Result};
use crate::exec::SyncConnection;
use crate::store::array::ArrayStore;

/// A load of `.npy` files into an [`ArrayStore`].
///
/// The key template's fields are `{stem}` (the file name without its extension),
/// `{name}` (the file name) and `{path}` (the path as given).
///
/// ```no_run
/// use redstash::ArrayStore;
/// use redstash::direct::DirectConnection;
/// use redstash::load::{ArrayLoad, KeyTemplate};
///
/// let load = ArrayLoad::new(KeyTemplate::parse("arr:{stem}")?);
/// let files = ArrayLoad::files("data/*.npy")?;
/// let mut con = DirectConnection::open("redis://127.0.0.1/")?;
/// let report = load.load(&files, &ArrayStore::new(""), &mut con)?;
/// println!("{} arrays stored", report.stored);
/// # Ok::<(), redstash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ArrayLoad {
    key: KeyTemplate,
    on_error: OnError,
    limits: Limits,
}

/// A file that could not be read or stored.
#[derive(Debug)]
pub struct ArrayFileError {
    /// The file.
    pub path: PathBuf,
    /// Its key, when it was rendered.
    pub key: Option<String>,
    /// Why.
    pub error: Error,
}

/// What an [`ArrayLoad`] did: every file is stored, failed or not tried.
#[derive(Debug, Default)]
pub struct ArrayLoadReport {
    /// Files found.
    pub files: u64,
    /// Arrays stored (the server acknowledged every command of the array).
    pub stored: u64,
    /// Files that could not be read or stored.
    pub failed: u64,
    /// Files not tried (after a stop).
    pub not_tried: u64,
    /// Bytes of array data stored.
    pub bytes: u64,
    /// Seconds the load took.
    pub elapsed_s: f64,
    /// The first failures (at most [`MAX_REPORTED_ERRORS`]).
    pub errors: Vec<ArrayFileError>,
}

impl ArrayLoadReport {
    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} files, {} arrays stored ({} bytes), {} failed, {} not tried in {:.2} s",
            self.files, self.stored, self.bytes, self.failed, self.not_tried, self.elapsed_s
        )
    }
}

impl ArrayLoad {
    /// A load keyed by `key` (stop at the first failure, default [`Limits`]).
    pub fn new(key: KeyTemplate) -> Self {
        ArrayLoad {
            key,
            on_error: OnError::Stop,
            limits: Limits::default(),
        }
    }

    /// Stop at the first file that fails, or skip it and go on.
    pub fn with_on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Bounds on what a file may declare (header and data size).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The `.npy` files `spec` names, sorted: a directory's `*.npy` files, the files a
    /// pattern with `*` and `?` in its last component matches (`data/x_*.npy`), or one
    /// file.
    pub fn files(spec: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let spec = spec.as_ref();
        let (dir, pattern) = if spec.is_dir() {
            (spec.to_owned(), "*.npy".to_owned())
        } else {
            let name = spec.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                Error::InvalidArgument(format!("{}: no file name", spec.display()))
            })?;
            if !name.contains(['*', '?']) {
                if !spec.is_file() {
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{}: no such file or directory", spec.display()),
                    )));
                }
                return Ok(vec![spec.to_owned()]);
            }
            let dir = match spec.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            (dir, name.to_owned())
        };
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.display()),
            ))
        })?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(n) = name.to_str()
                && wildcard(pattern.as_bytes(), n.as_bytes())
                && entry.file_type()?.is_file()
            {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The key of `path`.
    pub fn key_of(&self, path: &Path) -> Result<String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let record = Record::new(
            Position::default(),
            [
                ("stem", Value::Text(stem)),
                ("name", Value::Text(name)),
                ("path", Value::Text(path.display().to_string())),
            ],
        );
        let mut key = Vec::new();
        self.key
            .render(&record, &mut key)
            .map_err(|p| Error::InvalidArgument(format!("{}: {p}", path.display())))?;
        String::from_utf8(key).map_err(|_| {
            Error::InvalidArgument(format!("{}: the key is not UTF-8", path.display()))
        })
    }

    /// Read one `.npy` file (bounded by the limits, checked before allocating).
    pub fn read_file(&self, path: &Path) -> Result<crate::RawArray> {
        let in_file = |e: Error| match e {
            Error::Io(io) => Error::Io(std::io::Error::new(
                io.kind(),
                format!("{}: {io}", path.display()),
            )),
            e => e,
        };
        let mut f = std::fs::File::open(path).map_err(|e| in_file(e.into()))?;
        let size = f.metadata().map_err(|e| in_file(e.into()))?.len();
        // The header: magic, version, length, dict (at most max_header_len + 12 bytes).
        let head_cap = (self.limits.max_header_len as u64 + 12).min(size);
        let mut head = Vec::with_capacity(head_cap as usize);
        (&mut f)
            .take(head_cap)
            .read_to_end(&mut head)
            .map_err(|e| in_file(e.into()))?;
        let h = npy::parse_header(&head, &self.limits).map_err(in_file)?;
        let data = h.data_len()? as u64;
        let want = h.data_offset as u64 + data;
        if size != want {
            return Err(in_file(Error::corrupt(
                "npy",
                format!(
                    "{}: the header declares {data} data bytes (file of {want}), the file has {size}",
                    path.display()
                ),
            )));
        }
        let mut bytes = Vec::with_capacity(want as usize);
        bytes.extend_from_slice(&head);
        (&mut f)
            .take(want - head.len() as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| in_file(e.into()))?;
        npy::decode(bytes.into(), &self.limits).map_err(|e| match e {
            Error::InvalidValue { .. } => {
                Error::InvalidArgument(format!("{}: {e}", path.display()))
            }
            e => e,
        })
    }

    /// Store each of `files` at its key, one at a time.
    pub fn load<K: ArrayCodec, C: SyncConnection>(
        &self,
        files: &[PathBuf],
        store: &ArrayStore<K>,
        con: &mut C,
    ) -> Result<ArrayLoadReport> {
        let start = Instant::now();
        let mut report = ArrayLoadReport {
            files: files.len() as u64,
            ..ArrayLoadReport::default()
        };
        for (i, path) in files.iter().enumerate() {
            let key = self.key_of(path);
            let result = key.as_ref().map_err(clone_error).and_then(|k| {
                let array = self.read_file(path)?;
                store.put(con, k, &array)?;
                Ok(array.nbytes() as u64)
            });
            match result {
                Ok(n) => {
                    report.stored += 1;
                    report.bytes += n;
                }
                Err(error) => {
                    report.failed += 1;
                    if report.errors.len() < MAX_REPORTED_ERRORS {
                        report.errors.push(ArrayFileError {
                            path: path.clone(),
                            key: key.ok(),
                            error,
                        });
                    }
                    if self.on_error == OnError::Stop {
                        report.not_tried = (files.len() - i - 1) as u64;
                        break;
                    }
                }
            }
        }
        report.elapsed_s = start.elapsed().as_secs_f64();
        Ok(report)
    }
}

fn clone_error(e: &Error) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Whether `name` matches `pattern` (`*`: any run, `?`: any one byte).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.npy", b"a.npy"));
        assert!(wildcard(b"x_??.npy", b"x_12.npy"));
        assert!(!wildcard(b"*.npy", b"a.npz"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard(b"a*b*c", b"axxbyy"));
    }

    #[test]
    fn keys_and_hostile_files() {
        let load = ArrayLoad::new(KeyTemplate::parse("arr:{stem}").unwrap());
        assert_eq!(load.key_of(Path::new("d/x_1.npy")).unwrap(), "arr:x_1");
        let dir = tempfile::tempdir().unwrap();
        // A header declaring far more data than the file holds: refused before any
        // allocation of that size.
        let p = dir.path().join("big.npy");
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert!(load.read_file(&p).is_err());
        std::fs::write(&p, b"not npy").unwrap();
        assert!(load.read_file(&p).is_err());
    }
}
