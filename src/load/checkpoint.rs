//! Checkpoints: where a load can resume, written atomically (a temporary file renamed
//! over the old one, after `fsync`), so that a crash leaves the old or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::source::ResumePoint;
use crate::error::{Error, Result};

/// Largest checkpoint file read (it is a few hundred bytes).
const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;

/// What a checkpoint file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// The source it belongs to ([`Source::identity`](super::Source::identity)).
    pub source: String,
    /// A digest of the mapping and the batching (a resume with another mapping is
    /// refused).
    pub plan: String,
    /// Where to resume: every record before it is done.
    pub point: ResumePoint,
    /// Records loaded before `point` (by all the runs so far).
    pub loaded: u64,
    /// Records failed before `point`.
    pub failed: u64,
    /// Records skipped before `point`.
    pub skipped: u64,
    /// Whether the source was read to its end (the load is finished).
    pub finished: bool,
}

impl Checkpoint {
    /// Read `path`; `None` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Checkpoint>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut text = Vec::new();
        use std::io::Read;
        file.take(MAX_CHECKPOINT_BYTES + 1).read_to_end(&mut text)?;
        if text.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {} is larger than {MAX_CHECKPOINT_BYTES} bytes: not a checkpoint",
                path.display()
            )));
        }
        let c: Checkpoint = serde_json::from_slice(&text)
            .map_err(|e| Error::InvalidArgument(format!("checkpoint {}: {e}", path.display())))?;
        if c.version != 1 {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {}: version {} (this redstash writes 1)",
                path.display(),
                c.version
            )));
        }
        Ok(Some(c))
    }

    /// Write it to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = temp_path(path);
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut f, self)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            // Best effort: the rename itself durable too.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.json");
        assert_eq!(Checkpoint::read(&p).unwrap(), None);
        let c = Checkpoint {
            version: 1,
            source: "csv a.csv".into(),
            plan: "x".into(),
            point: ResumePoint {
                records: 5,
                line: 7,
                offset: Some(99),
            },
            loaded: 4,
            failed: 1,
            skipped: 0,
            finished: false,
        };
        c.write(&p).unwrap();
        assert_eq!(Checkpoint::read(&p).unwrap(), Some(c));
        std::fs::write(&p, b"{\"version\": 2}").unwrap();
        assert!(Checkpoint::read(&p).is_err());
        std::fs::write(&p, vec![b' '; 2 << 20]).unwrap();
        assert!(Checkpoint::read(&p).is_err());
    }
}
