//! Running an export: one reading thread per scan target (a server, or each primary of a
//! cluster) walking its keyspace with `SCAN` and reading each page's keys, and writer
//! threads that encode the keys and hand them to their sinks (part files), so that
//! reading, encoding and compression use every core while memory stays bounded by the
//! pages in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::read::{PageRead, ReadOptions, read_keys};
use super::value::KeyRecord;
use crate::error::{Error, Result};
use crate::exec::{Scan, SyncConnection, run};

/// Where encoded keys go (a part writer): one per writer thread.
pub trait ItemSink: Send {
    /// One key, encoded; `redis_type` is its Redis type.
    fn item(&mut self, bytes: &[u8], redis_type: &'static str) -> Result<()>;
    /// A key that is not exported, and why.
    fn reject(&mut self, key: &[u8], redis_type: &str, reason: &str) -> Result<()>;
    /// No more keys: close what is open.
    fn finish(&mut self) -> Result<()>;
}

/// How one key is encoded: `Ok` with the bytes appended to the buffer, or `Err` with
/// the reason it cannot be (an item over DynamoDB's limits...).
pub type Encode<'a> =
    dyn Fn(&KeyRecord, &mut Vec<u8>) -> std::result::Result<(), String> + Sync + 'a;

/// A share of the keyspace for one of several exporters: the keys whose hash slot is in
/// the `index`-th of `count` equal slot ranges (on a cluster or a single server alike:
/// the slot is a function of the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotShard {
    /// This exporter's index, from 0.
    pub index: u32,
    /// The number of exporters.
    pub count: u32,
}

impl SlotShard {
    /// The slots `[start, end)` of this shard.
    pub fn slots(&self) -> (u16, u16) {
        let n = self.count.max(1);
        let start = (16384 * self.index / n) as u16;
        let end = (16384 * (self.index + 1) / n).min(16384) as u16;
        // `end` is 16384 for the last shard: every slot (0..=16383) is below it.
        (start, end)
    }

    /// Whether `key` is in this shard.
    pub fn takes(&self, key: &[u8]) -> bool {
        let (s, e) = self.slots();
        let slot = crate::resp::slot::key_slot(key);
        slot >= s && slot < e
    }
}

/// Where an export is (given to the progress callback a few times a second).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportProgress {
    /// Keys returned by `SCAN` so far.
    pub scanned: u64,
    /// Keys written so far.
    pub items: u64,
    /// Encoded bytes written so far.
    pub bytes: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// What an export did.
#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    /// Keys `SCAN` returned (in this shard).
    pub scanned: u64,
    /// Keys written.
    pub items: u64,
    /// Keys not exported (listed by the sinks' rejects).
    pub rejected: u64,
    /// Keys gone between `SCAN` and their read.
    pub vanished: u64,
    /// Keys whose type changed between `SCAN` and their read.
    pub changed: u64,
    /// Keys of other shards.
    pub other_shards: u64,
    /// Items per Redis type.
    pub by_type: BTreeMap<String, u64>,
    /// Encoded bytes (before compression).
    pub bytes: u64,
    /// Wall time.
    pub elapsed_s: f64,
    /// Items per second.
    pub rate: f64,
    /// Why it stopped early, if it did.
    pub stopped: Option<String>,
}

/// Walks a keyspace and writes every key through a sink.
#[derive(Debug, Clone)]
pub struct Exporter {
    scan: Scan,
    read: ReadOptions,
    shard: Option<SlotShard>,
    queue: usize,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::new(Scan::all())
    }
}

impl Exporter {
    /// An export of the keys `scan` walks (its `MATCH`, `COUNT` and `TYPE`).
    pub fn new(scan: Scan) -> Self {
        Exporter {
            scan,
            read: ReadOptions::default(),
            shard: None,
            queue: 8,
        }
    }

    /// How values are read (page size, largest value).
    pub fn with_read(mut self, read: ReadOptions) -> Self {
        self.read = read;
        self
    }

    /// Only this shard's keys.
    pub fn with_shard(mut self, shard: Option<SlotShard>) -> Self {
        self.shard = shard;
        self
    }

    /// Run: `targets` are connections to each server to scan (one server, or every
    /// primary of a cluster: each is scanned on its own thread), `encode` turns a key into
    /// its bytes, each sink gets the items of one writer thread. `progress` is called a
    /// few times a second; `cancel` stops the scans (the pages read are written).
    pub fn run<C: SyncConnection + Send, S: ItemSink>(
        &self,
        targets: &mut [C],
        encode: &Encode<'_>,
        sinks: &mut [S],
        progress: Option<&(dyn Fn(&ExportProgress) + Sync)>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExportReport> {
        if targets.is_empty() || sinks.is_empty() {
            return Err(Error::InvalidArgument(
                "an export needs a connection and a sink".into(),
            ));
        }
        let start = Instant::now();
        let (tx, rx) = mpsc::sync_channel::<PageRead>(self.queue.max(sinks.len()));
        let rx = Mutex::new(rx);
        let scanned = AtomicU64::new(0);
        let items = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let other = AtomicU64::new(0);
        let failed = AtomicBool::new(false);
        let never = AtomicBool::new(false);
        let cancel = cancel.unwrap_or(&never);
        let mut report = ExportReport::default();
        let (scan_results, write_results) = std::thread::scope(|s| {
            let readers: Vec<_> = targets
                .iter_mut()
                .map(|con| {
                    let tx = tx.clone();
                    let (scanned, other, failed) = (&scanned, &other, &failed);
                    s.spawn(move || -> Result<()> {
                        let mut cursor = 0u64;
                        loop {
                            if cancel.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            let page = run(con, self.scan.page(cursor))?;
                            scanned.fetch_add(page.keys.len() as u64, Ordering::Relaxed);
                            let keys: Vec<Vec<u8>> = match &self.shard {
                                Some(sh) => {
                                    let n = page.keys.len();
                                    let k: Vec<_> =
                                        page.keys.into_iter().filter(|k| sh.takes(k)).collect();
                                    other.fetch_add((n - k.len()) as u64, Ordering::Relaxed);
                                    k
                                }
                                None => page.keys,
                            };
                            let read = run(con, read_keys(keys, self.read))?;
                            if tx.send(read).is_err() {
                                return Ok(());
                            }
                            cursor = page.cursor;
                            if cursor == 0 {
                                return Ok(());
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            let writers: Vec<_> = sinks
                .iter_mut()
                .map(|sink| {
                    let (rx, items, bytes, failed) = (&rx, &items, &bytes, &failed);
                    s.spawn(move || -> Result<Tallies> {
                        let mut t = Tallies::default();
                        let mut buf = Vec::with_capacity(4096);
                        loop {
                            let page = {
                                let Ok(rx) = rx.lock() else { break };
                                match rx.recv() {
                                    Ok(p) => p,
                                    Err(_) => break,
                                }
                            };
                            let r = write_page(page, encode, sink, &mut buf, &mut t, items, bytes);
                            if let Err(e) = r {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        sink.finish()?;
                        Ok(t)
                    })
                })
                .collect();
            // Progress while the threads run.
            if let Some(f) = progress {
                while !readers.iter().all(|h| h.is_finished())
                    || !writers.iter().all(|h| h.is_finished())
                {
                    f(&ExportProgress {
                        scanned: scanned.load(Ordering::Relaxed),
                        items: items.load(Ordering::Relaxed),
                        bytes: bytes.load(Ordering::Relaxed),
                        elapsed: start.elapsed(),
                    });
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let scan_results: Vec<Result<()>> = readers
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::panicked("an export reader")))
                })
                .collect();
            let write_results: Vec<Result<Tallies>> = writers
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::panicked("an export writer")))
                })
                .collect();
            (scan_results, write_results)
        });
        for r in write_results {
            let t = r?;
            report.items += t.items;
            report.rejected += t.rejected;
            report.vanished += t.vanished;
            report.changed += t.changed;
            report.bytes += t.bytes;
            for (k, v) in t.by_type {
                *report.by_type.entry(k).or_default() += v;
            }
        }
        for r in scan_results {
            r?;
        }
        if cancel.load(Ordering::Relaxed) {
            report.stopped = Some("cancelled".into());
        }
        report.scanned = scanned.load(Ordering::Relaxed);
        report.other_shards = other.load(Ordering::Relaxed);
        report.elapsed_s = start.elapsed().as_secs_f64();
        report.rate = if report.elapsed_s > 0.0 {
            report.items as f64 / report.elapsed_s
        } else {
            0.0
        };
        Ok(report)
    }
}

#[derive(Default)]
struct Tallies {
    items: u64,
    rejected: u64,
    vanished: u64,
    changed: u64,
    bytes: u64,
    by_type: BTreeMap<String, u64>,
}

fn write_page<S: ItemSink>(
    page: PageRead,
    encode: &Encode<'_>,
    sink: &mut S,
    buf: &mut Vec<u8>,
    t: &mut Tallies,
    items: &AtomicU64,
    bytes: &AtomicU64,
) -> Result<()> {
    t.vanished += page.vanished;
    t.changed += page.changed;
    for (key, ty, reason) in &page.rejected {
        sink.reject(key, ty, reason)?;
        t.rejected += 1;
    }
    for rec in &page.records {
        buf.clear();
        let ty = rec.value.type_name();
        match encode(rec, buf) {
            Ok(()) => {
                sink.item(buf, ty)?;
                t.items += 1;
                t.bytes += buf.len() as u64;
                *t.by_type.entry(ty.to_owned()).or_default() += 1;
                items.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Err(reason) => {
                sink.reject(&rec.key, ty, &reason)?;
                t.rejected += 1;
            }
        }
    }
    Ok(())
}

/// A sink that keeps everything in memory (for tests and small exports).
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    /// The items, in the order written.
    pub items: Vec<Vec<u8>>,
    /// The rejects: key, type, reason.
    pub rejects: Vec<(Vec<u8>, String, String)>,
}

impl ItemSink for MemorySink {
    fn item(&mut self, bytes: &[u8], _redis_type: &'static str) -> Result<()> {
        self.items.push(bytes.to_vec());
        Ok(())
    }

    fn reject(&mut self, key: &[u8], redis_type: &str, reason: &str) -> Result<()> {
        self.rejects
            .push((key.to_vec(), redis_type.to_owned(), reason.to_owned()));
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
