//! The accounting of a load as batches are read and their outcomes come back: the
//! counts, the record errors (and the rejects file), when to stop, and the checkpoint:
//! the source position before which every batch is done, written as it advances.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::OnError;
use super::batch::Produced;
use super::checkpoint::Checkpoint;
use super::report::{LoadReport, MAX_REPORTED_ERRORS, Progress, RecordError};
use super::round::Outcome;
use super::source::ResumePoint;
use crate::error::{Error, Result};

/// How often the checkpoint file is rewritten while its position advances.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A batch whose produced part or outcome is still awaited for the checkpoint.
#[derive(Default)]
struct Pending {
    produced: bool,
    /// Sent records still to come back.
    awaiting: bool,
    complete: bool,
    end: ResumePoint,
    loaded: u64,
    failed: u64,
    skipped: u64,
}

/// The checkpoint being kept.
struct Keeper {
    path: PathBuf,
    file: Checkpoint,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// The frontier cannot advance any more (a batch did not complete).
    stuck: bool,
    written: Instant,
    dirty: bool,
}

pub(crate) struct Tally {
    pub(crate) report: LoadReport,
    on_error: OnError,
    max_errors: Option<u64>,
    rejects: Option<std::io::BufWriter<std::fs::File>>,
    keeper: Option<Keeper>,
    /// Stop reading (too many errors, an error with `OnError::Stop`, OOM, a failure).
    pub(crate) stop: bool,
    /// The stop was for a connection failure or out-of-memory: queued batches are not
    /// sent.
    fatal: bool,
    start: Instant,
}

impl Tally {
    pub(crate) fn new(
        on_error: OnError,
        max_errors: Option<u64>,
        rejects: Option<std::fs::File>,
        checkpoint: Option<(PathBuf, Checkpoint, u64)>,
    ) -> Self {
        let mut report = LoadReport::default();
        let keeper = checkpoint.map(|(path, file, next_seq)| {
            report.resumed_from = file.point.records;
            report.checkpoint = Some(file.point.records);
            Keeper {
                path,
                file,
                next_seq,
                pending: BTreeMap::new(),
                stuck: false,
                written: Instant::now(),
                dirty: false,
            }
        });
        Tally {
            report,
            on_error,
            max_errors,
            rejects: rejects.map(|f| std::io::BufWriter::with_capacity(1 << 16, f)),
            keeper,
            stop: false,
            fatal: false,
            start: Instant::now(),
        }
    }

    fn reject(&mut self, e: &RecordError, data: Option<&str>) {
        if self.report.errors.len() < MAX_REPORTED_ERRORS {
            self.report.errors.push(e.clone());
        }
        if let Some(w) = &mut self.rejects {
            let mut line = serde_json::to_value(e).unwrap_or_default();
            if let (Some(obj), Some(data)) = (line.as_object_mut(), data) {
                let v = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
                obj.insert("data".into(), v);
            }
            let _ = writeln!(w, "{line}");
        }
    }

    fn stop_with(&mut self, why: String, error: Option<Error>) {
        self.stop = true;
        if self.report.stopped.is_none() {
            self.report.stopped = Some(why);
            self.report.stop_error = error;
        }
    }

    fn check_max_errors(&mut self) {
        let errors = self.report.failed + self.report.skipped;
        match (self.on_error, self.max_errors) {
            (OnError::Stop, _) if errors > 0 => {
                self.stop_with("a record failed (on-error stop)".into(), None)
            }
            (OnError::Skip, Some(max)) if errors > max => {
                self.stop_with(format!("more than {max} records failed (max-errors)"), None)
            }
            _ => {}
        }
    }

    /// Whether the load stopped for a connection failure or out-of-memory.
    pub(crate) fn fatal(&self) -> bool {
        self.fatal
    }

    /// The caller cancelled the load.
    pub(crate) fn stop_cancelled(&mut self) {
        self.stop_with("cancelled".into(), None);
    }

    /// The source failed (I/O).
    pub(crate) fn stop_source(&mut self, e: Error) {
        self.stop_with(
            format!("the source failed: {}", super::round::error_text(&e)),
            Some(e),
        );
    }

    /// A batch's worth of records was read; `sent`: it has records to send (their
    /// outcome comes later).
    pub(crate) fn produced(&mut self, p: &Produced, sent: bool) {
        self.report.read += p.read;
        self.report.other_shards += p.other_shards;
        self.report.skipped += p.skipped.len() as u64;
        for (e, data) in &p.skipped {
            self.reject(e, data.as_deref());
        }
        // With on-error stop, a batch cut short at a bad record ends before it: the
        // checkpoint leaves it to be read again.
        let ck_skipped = if self.on_error == OnError::Stop {
            0
        } else {
            p.skipped.len() as u64
        };
        if let Some(k) = &mut self.keeper {
            let e = k.pending.entry(p.seq).or_default();
            e.produced = true;
            e.end = p.end;
            e.skipped = ck_skipped;
            e.awaiting = sent;
            e.complete = !e.awaiting;
        }
        self.check_max_errors();
        self.advance();
    }

    /// The outcome of a batch that was sent.
    pub(crate) fn outcome(&mut self, o: Outcome) {
        self.report.loaded += o.loaded;
        self.report.commands += o.commands;
        self.report.bytes += o.bytes;
        self.report.failed += o.failed.len() as u64;
        self.report.unknown += o.unknown;
        self.report.not_sent += o.not_sent;
        let mut oom = false;
        for (e, data, is_oom) in &o.failed {
            oom |= is_oom;
            self.reject(e, data.as_deref());
        }
        let complete = o.unknown == 0
            && o.not_sent == 0
            && !oom
            && (o.failed.is_empty() || self.on_error == OnError::Skip);
        if let Some(k) = &mut self.keeper {
            let e = k.pending.entry(o.seq).or_default();
            e.awaiting = false;
            e.complete = complete;
            e.loaded = o.loaded;
            e.failed = o.failed.len() as u64;
        }
        if o.failure.is_some() || oom {
            self.fatal = true;
        }
        if let Some(f) = o.failure {
            let (why, err) = match f {
                Ok(e) => (
                    format!("the connection failed: {}", super::round::error_text(&e)),
                    Some(e),
                ),
                Err(text) => (format!("the connection failed: {text}"), None),
            };
            self.stop_with(why, err);
        }
        if oom {
            let first = o
                .failed
                .iter()
                .find(|(_, _, m)| *m)
                .map(|(e, _, _)| e.error.clone());
            self.stop_with(
                format!(
                    "Redis is out of memory (maxmemory): {}",
                    first.unwrap_or_default()
                ),
                oom_error(),
            );
        }
        self.check_max_errors();
        self.advance();
    }

    /// Move the checkpoint's frontier over the batches that are done, in order.
    fn advance(&mut self) {
        let Some(k) = &mut self.keeper else { return };
        if k.stuck {
            return;
        }
        while let Some(p) = k.pending.get(&k.next_seq) {
            if !p.produced || p.awaiting {
                break;
            }
            if !p.complete {
                k.stuck = true;
                break;
            }
            let p = k.pending.remove(&k.next_seq).unwrap_or_default();
            k.next_seq += 1;
            k.file.point = p.end;
            k.file.loaded += p.loaded;
            k.file.failed += p.failed;
            k.file.skipped += p.skipped;
            k.dirty = true;
        }
        self.report.checkpoint = Some(k.file.point.records);
    }

    /// Write the checkpoint when it moved (at most every [`CHECKPOINT_EVERY`], or now
    /// with `force`).
    pub(crate) fn save(&mut self, force: bool, finished: bool) -> Result<()> {
        let Some(k) = &mut self.keeper else {
            return Ok(());
        };
        k.file.finished = finished;
        if (k.dirty || finished) && (force || k.written.elapsed() >= CHECKPOINT_EVERY) {
            k.file.write(&k.path)?;
            k.dirty = false;
            k.written = Instant::now();
        }
        Ok(())
    }

    pub(crate) fn progress(&self, bytes: (u64, Option<u64>)) -> Progress {
        Progress {
            read: self.report.read,
            loaded: self.report.loaded + self.report.emitted,
            errors: self.report.failed + self.report.skipped,
            bytes_read: bytes.0,
            bytes_total: bytes.1,
            elapsed: self.start.elapsed(),
        }
    }

    /// The report, once every batch is accounted for; `ended`: the source was read to
    /// its end.
    pub(crate) fn finish(mut self, ended: bool) -> Result<LoadReport> {
        let finished = ended
            && !self.stop
            && self
                .keeper
                .as_ref()
                .is_some_and(|k| !k.stuck && k.pending.is_empty());
        self.save(true, finished)?;
        if let Some(w) = &mut self.rejects {
            w.flush()?;
        }
        let mut r = self.report;
        r.elapsed_s = self.start.elapsed().as_secs_f64();
        let done = (r.loaded + r.emitted) as f64;
        r.rate = if r.elapsed_s > 0.0 {
            done / r.elapsed_s
        } else {
            0.0
        };
        Ok(r)
    }
}

/// The typed error of an out-of-memory stop ([`RedisErrorKind::OutOfMemory`](crate::RedisErrorKind)).
fn oom_error() -> Option<Error> {
    match crate::resp::server_error_value(
        b"OOM command not allowed when used memory > 'maxmemory'.",
    ) {
        redis::Value::ServerError(e) => Some(Error::redis(e.into(), None)),
        _ => None,
    }
}
