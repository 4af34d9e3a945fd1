//! Running a load: the set-up (checkpoint, resume, rejects file), the reading of
//! batches on the calling thread, and their sending on one thread per connection (or on
//! the calling task, async).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::batch::{Batch, Batcher};
use super::checkpoint::Checkpoint;
use super::round::{Outcome, Round};
use super::source::Source;
use super::tally::Tally;
use super::{LoadReport, Loader, OnError};
use crate::error::{Error, Result};
use crate::exec::{Step, SyncConnection};

/// How often the progress callback is called.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

impl Loader {
    /// A digest of what decides the commands and the batches: a checkpoint made with
    /// another mapping, batch size or shard is refused.
    fn plan_digest(&self) -> String {
        let text = format!(
            "{:?}|batch={}|shard={:?}",
            self.mapping, self.batch_size, self.shard
        );
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }

    /// Check the options, read the checkpoint and move the source to its position.
    /// Returns the tally and the first batch's sequence number, or the report of a load
    /// the checkpoint says is finished.
    pub(crate) fn start(
        &self,
        source: &mut dyn Source,
        emitting: bool,
    ) -> Result<std::result::Result<(Tally, u64), LoadReport>> {
        self.mapping.validate(self.cluster)?;
        let mut checkpoint = None;
        let mut first_seq = 0;
        if let Some(path) = &self.checkpoint {
            if emitting {
                return Err(Error::InvalidArgument(
                    "a checkpoint is for loads into Redis, not for writing a RESP file".into(),
                ));
            }
            if !self.mapping.is_idempotent() {
                return Err(Error::InvalidArgument(
                    "a checkpoint needs an idempotent mapping (a resumed load sends the last \
                     batches again): RPUSH and HINCRBY are not"
                        .into(),
                ));
            }
            let identity = source.identity();
            let plan = self.plan_digest();
            let file = match Checkpoint::read(path)? {
                Some(c) => {
                    if c.source != identity || c.plan != plan {
                        return Err(Error::InvalidArgument(format!(
                            "checkpoint {} is of another load (source {:?}, plan {}; this one: {:?}, {}): \
                             delete it to start again",
                            path.display(),
                            c.source,
                            c.plan,
                            identity,
                            plan
                        )));
                    }
                    if c.finished {
                        return Ok(Err(LoadReport {
                            resumed_from: c.point.records,
                            checkpoint: Some(c.point.records),
                            ..LoadReport::default()
                        }));
                    }
                    if c.point.records > 0 {
                        source.resume_at(&c.point)?;
                    }
                    first_seq = c.point.records / self.batch_size as u64;
                    c
                }
                None => Checkpoint {
                    version: 1,
                    source: identity,
                    plan,
                    point: source.resume_point(),
                    loaded: 0,
                    failed: 0,
                    skipped: 0,
                    finished: false,
                },
            };
            checkpoint = Some((path.clone(), file, first_seq));
        }
        let rejects = match &self.rejects {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        let tally = Tally::new(self.on_error, self.max_errors, rejects, checkpoint);
        Ok(Ok((tally, first_seq)))
    }

    pub(crate) fn batcher<'a>(&'a self, source: &'a mut dyn Source, first_seq: u64) -> Batcher<'a> {
        Batcher::new(
            source,
            &self.mapping,
            self.batch_size,
            self.shard,
            self.cluster,
            self.rejects.is_some(),
            self.on_error == OnError::Stop,
            first_seq,
        )
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    pub(crate) fn report_progress(
        &self,
        tally: &Tally,
        batcher: &Batcher<'_>,
        last: &mut Instant,
        force: bool,
    ) {
        if let Some(f) = &self.progress
            && (force || last.elapsed() >= PROGRESS_EVERY)
        {
            *last = Instant::now();
            f(&tally.progress(batcher.bytes_read()));
        }
    }

    /// Load `source` over one connection (sending on another thread while this one
    /// reads and encodes).
    pub fn load<C: SyncConnection + Send>(
        &self,
        source: &mut dyn Source,
        con: &mut C,
    ) -> Result<LoadReport> {
        self.load_parallel(source, std::slice::from_mut(con))
    }

    /// Load `source` over several connections, one sending thread each; the source is
    /// read and encoded on the calling thread. On a single Redis server one connection
    /// is usually as fast (Redis runs commands on one thread); on a cluster, each
    /// cluster connection already sends to every node at once.
    pub fn load_parallel<C: SyncConnection + Send>(
        &self,
        source: &mut dyn Source,
        cons: &mut [C],
    ) -> Result<LoadReport> {
        if cons.is_empty() {
            return Err(Error::InvalidArgument(
                "a load needs at least one connection".into(),
            ));
        }
        let (mut tally, first_seq) = match self.start(source, false)? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        let per_round = (self.window / cons.len()).max(1);
        let abort = AtomicBool::new(false);
        let (tx, rx) = mpsc::sync_channel::<Batch>(self.window);
        let rx = Mutex::new(rx);
        let (done_tx, done_rx) = mpsc::channel::<Vec<Outcome>>();
        let mut batcher = self.batcher(source, first_seq);
        let mut ended = false;
        let mut source_error = None;
        std::thread::scope(|s| {
            for con in cons.iter_mut() {
                let done_tx = done_tx.clone();
                let (rx, abort) = (&rx, &abort);
                s.spawn(move || {
                    self.send_loop(con, rx, per_round, abort, &done_tx);
                });
            }
            drop(done_tx);
            let mut last = Instant::now();
            loop {
                while let Ok(outcomes) = done_rx.try_recv() {
                    for o in outcomes {
                        tally.outcome(o);
                    }
                }
                if tally.stop {
                    abort_if_fatal(&tally, &abort);
                    break;
                }
                if self.cancelled() {
                    tally.stop_cancelled();
                    break;
                }
                if let Err(e) = tally.save(false, false) {
                    source_error = Some(e);
                    break;
                }
                self.report_progress(&tally, &batcher, &mut last, false);
                match pull(&mut batcher, &mut tally) {
                    Pulled::Failed(e) => {
                        source_error = Some(e);
                        break;
                    }
                    Pulled::End => {
                        ended = true;
                        break;
                    }
                    Pulled::Batch(batch, last) => {
                        if let Some(b) = batch
                            && tx.send(b).is_err()
                        {
                            break;
                        }
                        if last {
                            ended = true;
                            break;
                        }
                    }
                }
            }
            drop(tx);
            for outcomes in done_rx.iter() {
                for o in outcomes {
                    tally.outcome(o);
                }
                abort_if_fatal(&tally, &abort);
                let _ = tally.save(false, false);
                self.report_progress(&tally, &batcher, &mut last, false);
            }
            self.report_progress(&tally, &batcher, &mut last, true);
        });
        if let Some(e) = source_error {
            tally.stop_source(e);
        }
        tally.finish(ended)
    }

    /// One connection's thread: take up to `per_round` queued batches, send them
    /// together, report their outcomes; after a failure that stopped the load, report
    /// the batches still queued as not sent.
    fn send_loop<C: SyncConnection>(
        &self,
        con: &mut C,
        rx: &Mutex<mpsc::Receiver<Batch>>,
        per_round: usize,
        abort: &AtomicBool,
        done: &mpsc::Sender<Vec<Outcome>>,
    ) {
        loop {
            let batches = {
                let Ok(rx) = rx.lock() else { return };
                let Ok(first) = rx.recv() else { return };
                let mut v = vec![first];
                while v.len() < per_round {
                    match rx.try_recv() {
                        Ok(b) => v.push(b),
                        Err(_) => break,
                    }
                }
                v
            };
            let outcomes = if abort.load(Ordering::Relaxed) {
                not_sent(batches)
            } else {
                self.send_round(con, batches)
            };
            if outcomes.iter().any(|o| o.failure.is_some()) {
                abort.store(true, Ordering::Relaxed);
            }
            if done.send(outcomes).is_err() {
                return;
            }
        }
    }

    fn send_round<C: SyncConnection>(&self, con: &mut C, batches: Vec<Batch>) -> Vec<Outcome> {
        let mut round = Round::new(
            batches,
            self.mapping.atomicity(),
            self.mapping.is_idempotent(),
            self.retry,
        );
        while let Some((reqs, pause)) = round.next() {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            let step = Step::SendAll(reqs.into(), Box::new(|d| Ok(Step::Done(d))));
            round.take(crate::exec::run(con, step));
        }
        round.finish()
    }

    /// Load `source` over an async connection. The source is read on the calling task
    /// between rounds of up to `window` batches (read it from a file or an iterator: a
    /// slow blocking source blocks the task).
    #[cfg(feature = "tokio")]
    pub async fn load_async<C: crate::exec::AsyncConnection>(
        &self,
        source: &mut (dyn Source + Send),
        con: &mut C,
    ) -> Result<LoadReport> {
        let (mut tally, first_seq) = match self.start(source, false)? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        let mut batcher = self.batcher(source, first_seq);
        let mut ended = false;
        let mut last = Instant::now();
        while !ended && !tally.stop {
            if self.cancelled() {
                tally.stop_cancelled();
                break;
            }
            let mut batches = Vec::new();
            while batches.len() < self.window && !tally.stop {
                match pull(&mut batcher, &mut tally) {
                    Pulled::Failed(e) => {
                        tally.stop_source(e);
                        break;
                    }
                    Pulled::End => {
                        ended = true;
                        break;
                    }
                    Pulled::Batch(batch, last) => {
                        batches.extend(batch);
                        if last {
                            ended = true;
                            break;
                        }
                    }
                }
            }
            if batches.is_empty() {
                continue;
            }
            let mut round = Round::new(
                batches,
                self.mapping.atomicity(),
                self.mapping.is_idempotent(),
                self.retry,
            );
            while let Some((reqs, pause)) = round.next() {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                let step = Step::SendAll(reqs.into(), Box::new(|d| Ok(Step::Done(d))));
                round.take(crate::exec::run_async(con, step).await);
            }
            for o in round.finish() {
                tally.outcome(o);
            }
            tally.save(false, false)?;
            self.report_progress(&tally, &batcher, &mut last, false);
        }
        self.report_progress(&tally, &batcher, &mut last, true);
        tally.finish(ended)
    }
}

/// What reading the next batch gave.
enum Pulled {
    /// A batch's worth of records was read (and tallied): its records to send, if any,
    /// and whether it ends the source.
    Batch(Option<Batch>, bool),
    /// The source was at its end.
    End,
    /// The source failed.
    Failed(Error),
}

/// Read the next batch and tally what was read.
fn pull(batcher: &mut Batcher<'_>, tally: &mut Tally) -> Pulled {
    match batcher.next() {
        Err(e) => Pulled::Failed(e),
        Ok(None) => Pulled::End,
        Ok(Some(mut p)) => {
            let batch = p.batch.take();
            tally.produced(&p, batch.is_some());
            Pulled::Batch(batch, p.ended)
        }
    }
}

/// Outcomes of batches never sent.
fn not_sent(batches: Vec<Batch>) -> Vec<Outcome> {
    batches
        .into_iter()
        .map(|b| Outcome {
            seq: b.seq,
            loaded: 0,
            commands: 0,
            bytes: 0,
            failed: Vec::new(),
            unknown: 0,
            not_sent: b.slots.len() as u64,
            failure: Some(Err("not sent: the load stopped".into())),
        })
        .collect()
}

/// After a stop for a failure (not for a record error), the batches still queued are
/// not sent.
fn abort_if_fatal(tally: &Tally, abort: &AtomicBool) {
    if tally.fatal() {
        abort.store(true, Ordering::Relaxed);
    }
}
