//! Sending batches (sans-IO): the requests of each attempt, what became of every record
//! from the replies, and the retries of the records that may be sent again (never sent,
//! in flight when the connection failed, refused with a transient error, or `NOSCRIPT`
//! for the Lua mode).

use std::time::Duration;

use redis::Value;

use super::batch::Batch;
use super::mapping::{Atomicity, LUA_SCRIPT};
use super::report::{RecordError, Stage};
use crate::error::{Error, RedisErrorKind, Retry};
use crate::exec::{Command, Delivered, Delivery, Request, RetryPolicy};
use crate::resp::Packed;

/// What became of one record.
#[derive(Debug, Clone)]
enum State {
    /// To send (again).
    Pending,
    /// Every command acknowledged.
    Loaded,
    /// A command refused: not retried.
    Failed { error: String, oom: bool },
    /// Sent, some reply never came.
    Unknown,
    /// Never sent.
    NotSent,
    /// To send again after a pause (in flight, not sent or refused transiently).
    Retry(Box<State>),
}

/// What became of one batch.
pub(crate) struct Outcome {
    pub(crate) seq: u64,
    pub(crate) loaded: u64,
    pub(crate) commands: u64,
    pub(crate) bytes: u64,
    /// Records refused: their error, their JSON for a rejects file, whether it was an
    /// out-of-memory refusal.
    pub(crate) failed: Vec<(RecordError, Option<Box<str>>, bool)>,
    pub(crate) unknown: u64,
    pub(crate) not_sent: u64,
    /// The connection failure that left records unknown or not sent (the error itself
    /// for the first such batch of a round, its text for the others).
    pub(crate) failure: Option<std::result::Result<Error, String>>,
}

/// The batches of one round on one connection, through their attempts.
pub(crate) struct Round {
    batches: Vec<Batch>,
    states: Vec<Vec<State>>,
    /// Records to send as `EVAL` (their `EVALSHA` got `NOSCRIPT`).
    eval: Vec<Vec<bool>>,
    /// The records of each request of the current attempt.
    units: Vec<Vec<(usize, usize)>>,
    atomicity: Atomicity,
    idempotent: bool,
    policy: RetryPolicy,
    retries: u32,
    paused: Duration,
    first: bool,
    failure: Option<Error>,
}

impl Round {
    pub(crate) fn new(
        batches: Vec<Batch>,
        atomicity: Atomicity,
        idempotent: bool,
        policy: RetryPolicy,
    ) -> Self {
        let states = batches
            .iter()
            .map(|b| vec![State::Pending; b.slots.len()])
            .collect();
        let eval = batches.iter().map(|b| vec![false; b.slots.len()]).collect();
        Round {
            batches,
            states,
            eval,
            units: Vec::new(),
            atomicity,
            idempotent,
            policy,
            retries: 0,
            paused: Duration::ZERO,
            first: true,
            failure: None,
        }
    }

    /// The requests of the next attempt and the pause before it; `None` when every
    /// record is accounted for.
    pub(crate) fn next(&mut self) -> Option<(Vec<Request<'static>>, Duration)> {
        let mut pause = Duration::ZERO;
        let retrying = self
            .states
            .iter()
            .flatten()
            .any(|s| matches!(s, State::Retry(_)));
        if retrying {
            let allowed = self.failure.as_ref().is_none_or(|e| match e.retry() {
                Retry::Always => true,
                Retry::IfIdempotent => self.idempotent,
                Retry::Never => false,
            });
            match self
                .policy
                .next_pause(self.retries, self.paused)
                .filter(|_| allowed)
            {
                Some(p) => {
                    pause = p;
                    self.paused += p;
                    self.retries += 1;
                    for s in self.states.iter_mut().flatten() {
                        if matches!(s, State::Retry(_)) {
                            *s = State::Pending;
                        }
                    }
                }
                None => {
                    for s in self.states.iter_mut().flatten() {
                        if let State::Retry(inner) = s {
                            *s = (**inner).clone();
                        }
                    }
                }
            }
        }
        let mut reqs = Vec::new();
        self.units.clear();
        for (b, batch) in self.batches.iter().enumerate() {
            let pending: Vec<usize> = (0..batch.slots.len())
                .filter(|&s| matches!(self.states[b][s], State::Pending))
                .collect();
            if pending.is_empty() {
                continue;
            }
            if self.atomicity == Atomicity::Multi {
                for &s in &pending {
                    let slot = &batch.slots[s];
                    let mut p = Packed::with_capacity(slot.range.len());
                    p.raw(&batch.packed.as_bytes()[slot.range.clone()], slot.commands);
                    reqs.push(Request::single(Command::Packed(p), None).atomic());
                    self.units.push(vec![(b, s)]);
                }
                continue;
            }
            let whole = self.first && pending.len() == batch.slots.len();
            let packed = if whole {
                batch.packed.clone()
            } else {
                let mut p = Packed::with_capacity(
                    pending
                        .iter()
                        .map(|&s| batch.slots[s].range.len() + 64)
                        .sum(),
                );
                for &s in &pending {
                    let slot = &batch.slots[s];
                    let bytes = &batch.packed.as_bytes()[slot.range.clone()];
                    if self.eval[b][s] {
                        push_as_eval(&mut p, bytes);
                    } else {
                        p.raw(bytes, slot.commands);
                    }
                }
                p
            };
            reqs.push(Request::single(Command::Packed(packed), None));
            self.units.push(pending.iter().map(|&s| (b, s)).collect());
        }
        self.first = false;
        if reqs.is_empty() {
            return None;
        }
        Some((reqs, pause))
    }

    /// Take what became of the requests of the attempt.
    pub(crate) fn take(&mut self, delivered: crate::Result<Delivered>) {
        let units = std::mem::take(&mut self.units);
        // The failure of this attempt (an earlier one's no longer decides).
        self.failure = None;
        let deliveries: Vec<Delivery> = match delivered {
            Ok(Ok(all)) => all.into_iter().map(Delivery::Answered).collect(),
            Ok(Err(interrupted)) => {
                if let Some(f) = interrupted.failure {
                    self.failure = Some(f);
                }
                interrupted.requests
            }
            Err(e) => {
                self.failure = Some(e);
                units.iter().map(|_| Delivery::NotSent).collect()
            }
        };
        for (unit, delivery) in units.iter().zip(deliveries) {
            match delivery {
                Delivery::Answered(replies) => {
                    let replies: Vec<Option<Value>> = replies.into_iter().map(Some).collect();
                    self.settle(unit, &replies);
                }
                Delivery::InFlight(replies) => self.settle(unit, &replies),
                Delivery::Refused(e) => {
                    for &(b, s) in unit {
                        self.states[b][s] = refused(&e, self.idempotent);
                    }
                }
                Delivery::NotSent => {
                    for &(b, s) in unit {
                        self.states[b][s] = State::Retry(Box::new(State::NotSent));
                    }
                }
            }
        }
    }

    /// Each record of `unit` from its replies (`None`: never came).
    fn settle(&mut self, unit: &[(usize, usize)], replies: &[Option<Value>]) {
        let lua = self.atomicity == Atomicity::Lua;
        let mut at = 0;
        for &(b, s) in unit {
            let n = if lua {
                1
            } else {
                self.batches[b].slots[s].commands
            };
            let mine = replies.get(at..at + n).unwrap_or(&[]);
            at += n;
            let mut state = State::Loaded;
            if mine.len() < n || mine.iter().any(Option::is_none) {
                state = State::Retry(Box::new(State::Unknown));
            }
            for v in mine.iter().flatten() {
                if let Value::ServerError(e) = v {
                    if lua && e.code() == "NOSCRIPT" && !self.eval[b][s] {
                        self.eval[b][s] = true;
                        state = State::Pending;
                        break;
                    }
                    state = refused(&Error::redis(e.clone().into(), None), self.idempotent);
                    break;
                }
            }
            self.states[b][s] = state;
        }
    }

    /// The outcome of every batch.
    pub(crate) fn finish(self) -> Vec<Outcome> {
        let Round {
            batches,
            states,
            failure,
            ..
        } = self;
        let text = failure.as_ref().map(|e| e.to_string());
        let mut failure = failure.map(Ok);
        batches
            .into_iter()
            .zip(states)
            .map(|(batch, states)| {
                let mut o = Outcome {
                    seq: batch.seq,
                    loaded: 0,
                    commands: 0,
                    bytes: 0,
                    failed: Vec::new(),
                    unknown: 0,
                    not_sent: 0,
                    failure: None,
                };
                for (slot, state) in batch.slots.into_iter().zip(states) {
                    match state {
                        State::Loaded => {
                            o.loaded += 1;
                            o.commands += slot.commands as u64;
                            o.bytes += slot.range.len() as u64;
                        }
                        State::Failed { error, oom } => {
                            let key = first_key(&batch.packed.as_bytes()[slot.range.clone()]);
                            o.failed.push((
                                RecordError::new(slot.position, key, Stage::Server, error),
                                slot.reject,
                                oom,
                            ));
                        }
                        State::NotSent | State::Pending => o.not_sent += 1,
                        State::Unknown => o.unknown += 1,
                        State::Retry(inner) => match *inner {
                            State::NotSent => o.not_sent += 1,
                            _ => o.unknown += 1,
                        },
                    }
                }
                if o.unknown > 0 || o.not_sent > 0 {
                    o.failure = Some(failure.take().unwrap_or_else(|| {
                        Err(text.clone().unwrap_or_else(|| {
                            "records were left unsent without a connection failure".into()
                        }))
                    }));
                }
                o
            })
            .collect()
    }
}

/// A record refused with `e`: retried later when the error is transient (the command
/// did not run: `LOADING`, `BUSY`, `TRYAGAIN`...) and the record may be sent again.
fn refused(e: &Error, idempotent: bool) -> State {
    let oom = e.redis_kind() == Some(RedisErrorKind::OutOfMemory);
    let failed = State::Failed {
        error: error_text(e),
        oom,
    };
    if e.retry() == Retry::Always && idempotent {
        return State::Retry(Box::new(failed));
    }
    failed
}

/// An error's text with its causes (a server error's own message: `WRONGTYPE ...`).
pub(crate) fn error_text(e: &Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The key of a record's first command (for error messages): its second argument, or
/// the first key of an `EVALSHA`/`EVAL`.
fn first_key(resp: &[u8]) -> Option<String> {
    let mut key = None;
    let _ = crate::resp::walk_packed(resp, |_, args| {
        if key.is_none() {
            let k = match args.first().map(|a| a.to_ascii_uppercase()) {
                Some(c) if c == b"EVALSHA" || c == b"EVAL" => args.get(3),
                _ => args.get(1),
            };
            key = k.map(|k| String::from_utf8_lossy(k).into_owned());
        }
        Ok(())
    });
    key
}

/// Append a record's `EVALSHA` command as the same `EVAL` of the script.
pub(crate) fn push_as_eval(p: &mut Packed, evalsha: &[u8]) {
    let mut args: Vec<&[u8]> = Vec::new();
    let _ = crate::resp::walk_packed(evalsha, |_, a| {
        args.extend_from_slice(a);
        Ok(())
    });
    if args.len() < 3 {
        p.raw(evalsha, 1);
        return;
    }
    p.command(args.len());
    p.arg(b"EVAL");
    p.arg(LUA_SCRIPT.as_bytes());
    for a in &args[2..] {
        p.arg(a);
    }
}
