//! The sink of one writer thread of an export whose threads share one [`PartWriter`]:
//! encoded items are gathered in one buffer and written under the lock a megabyte at a
//! time, so threads encode in parallel and take the lock rarely.

use std::sync::{Arc, Mutex};

use super::parts::PartWriter;
use super::run::ItemSink;
use crate::error::{Error, Result};

/// Encoded bytes a sink gathers before it takes the lock.
const BATCH_BYTES: usize = 1 << 20;

/// An [`ItemSink`] writing into a shared [`PartWriter`].
///
/// ```no_run
/// use std::sync::{Arc, Mutex};
/// use redstash::export::{OutputFormat, PartSink, PartWriter, PartWriterOptions};
/// let writer = Arc::new(Mutex::new(PartWriter::open(
///     std::path::Path::new("export"),
///     PartWriterOptions::new(OutputFormat::JsonLines),
/// )?));
/// let mut sinks: Vec<PartSink> = (0..2).map(|_| PartSink::new(writer.clone())).collect();
/// // ... Exporter::run(&mut targets, encode, &mut sinks, None, None)?, then:
/// drop(sinks);
/// let summary = PartSink::into_writer(writer)?.finish()?;
/// # Ok::<(), redstash::Error>(())
/// ```
pub struct PartSink {
    writer: Arc<Mutex<PartWriter>>,
    /// The gathered items, back to back.
    buf: Vec<u8>,
    /// Each gathered item's end in `buf` and its Redis type.
    items: Vec<(usize, &'static str)>,
}

fn poisoned() -> Error {
    Error::Io(std::io::Error::other(
        "an export writer thread panicked while it held the part writer",
    ))
}

impl PartSink {
    /// A sink writing into `writer` (shared with the other threads' sinks).
    pub fn new(writer: Arc<Mutex<PartWriter>>) -> Self {
        PartSink {
            writer,
            buf: Vec::with_capacity(BATCH_BYTES + (64 << 10)),
            items: Vec::new(),
        }
    }

    /// The part writer back, once every sink is dropped (to [`finish`](PartWriter::finish)
    /// it).
    pub fn into_writer(writer: Arc<Mutex<PartWriter>>) -> Result<PartWriter> {
        Arc::try_unwrap(writer)
            .map_err(|_| {
                Error::InvalidArgument("the part writer is still shared by a sink".into())
            })?
            .into_inner()
            .map_err(|_| poisoned())
    }

    fn flush(&mut self) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let mut w = self.writer.lock().map_err(|_| poisoned())?;
        let mut start = 0;
        for &(end, ty) in &self.items {
            w.write_item(&self.buf[start..end], ty)?;
            start = end;
        }
        drop(w);
        self.items.clear();
        self.buf.clear();
        Ok(())
    }
}

impl ItemSink for PartSink {
    fn item(&mut self, bytes: &[u8], redis_type: &'static str) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        self.items.push((self.buf.len(), redis_type));
        if self.buf.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn reject(&mut self, key: &[u8], redis_type: &str, reason: &str) -> Result<()> {
        self.flush()?;
        self.writer
            .lock()
            .map_err(|_| poisoned())?
            .reject(key, redis_type, reason)
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }
}
