//! What became of a bulk write: from what became of each chunk (its replies, or a
//! refusal or connection failure), which entities were written, refused, in flight
//! (unknown) or never sent.

use std::ops::Range;

use redis::Value;

use super::write::Write;
use crate::error::{Error, Result};
use crate::exec::{Delivered, Delivery};
use crate::store::tally::Tally;

impl Write<'_> {
    /// The result of the write from what became of every chunk: the number written,
    /// or exactly which entities were written, refused, in flight (unknown) or never
    /// sent.
    pub(super) fn outcome(&self, delivered: Delivered) -> Result<usize> {
        let per_item = self.view.layout.encoding().commands_per_entity(&self.view);
        let (deliveries, failure) = match delivered {
            // Fast path: every chunk fully written (no per-entity bookkeeping).
            Ok(all) => {
                if all.len() == self.chunks()
                    && all.iter().enumerate().all(|(c, replies)| {
                        chunk_all_ok(replies, self.chunk_items(c).len() * per_item, self.atomic)
                    })
                {
                    return Ok(self.ids.len());
                }
                (all.into_iter().map(Delivery::Answered).collect(), None)
            }
            Err(i) => (i.requests, i.failure),
        };
        let mut tally = Tally::default();
        let mut deliveries = deliveries.into_iter();
        for chunk in 0..self.chunks() {
            let items = self.chunk_items(chunk);
            let start = items.start;
            let answered = match deliveries.next().unwrap_or(Delivery::NotSent) {
                Delivery::Answered(replies) => Some(replies),
                Delivery::Refused(e) => {
                    let msg = e.with_causes();
                    tally.refused(start, e);
                    for i in items.skip(1) {
                        tally.refused(i, Error::unexpected(msg.clone(), None));
                    }
                    continue;
                }
                Delivery::NotSent => {
                    items.for_each(|i| tally.not_sent(i));
                    continue;
                }
                Delivery::InFlight(partial) => {
                    if self.atomic {
                        // Only EXEC's reply says anything; without it all is unknown.
                        if partial.last().is_some_and(Option::is_some) {
                            Some(
                                partial
                                    .into_iter()
                                    .map(|v| v.unwrap_or(Value::Nil))
                                    .collect(),
                            )
                        } else {
                            items.for_each(|i| tally.unknown(i));
                            continue;
                        }
                    } else {
                        self.tally_in_flight(&mut tally, items, partial, per_item);
                        continue;
                    }
                }
            };
            let Some(replies) = answered else { continue };
            let outcome = chunk_outcome(replies, items.len(), per_item, self.atomic, &|i| {
                self.key(start + i)
            });
            for (i, r) in outcome.into_iter().enumerate() {
                match r {
                    Ok(()) => tally.written(start + i),
                    Err(e) => tally.refused(start + i, e),
                }
            }
        }
        tally.finish(failure).map(|_| self.ids.len())
    }

    /// The entities of a chunk (not a transaction) cut short: an entity is written or
    /// refused when all its replies were read, else unknown.
    fn tally_in_flight(
        &self,
        tally: &mut Tally,
        items: Range<usize>,
        partial: Vec<Option<Value>>,
        per_item: usize,
    ) {
        let mut it = partial.into_iter();
        for i in items {
            let replies: Vec<Option<Value>> = it.by_ref().take(per_item).collect();
            if replies.len() < per_item || replies.iter().any(Option::is_none) {
                tally.unknown(i);
                continue;
            }
            let err = replies.into_iter().flatten().find_map(|v| match v {
                Value::ServerError(e) => Some(Error::redis(e.into(), Some(&self.key(i)))),
                _ => None,
            });
            match err {
                Some(e) => tally.refused(i, e),
                None => tally.written(i),
            }
        }
    }
}

/// Whether a chunk of `n` commands was fully written: one non-error reply per command
/// (for a transaction: `MULTI`, `QUEUED`s, then `EXEC`'s array of them).
fn chunk_all_ok(replies: &[Value], n: usize, atomic: bool) -> bool {
    let ok = |v: &Value| !matches!(v, Value::ServerError(_));
    if !atomic {
        return replies.len() == n && replies.iter().all(ok);
    }
    match replies {
        [multi, queued @ .., Value::Array(exec)] => {
            queued.len() == n
                && exec.len() == n
                && ok(multi)
                && queued.iter().all(ok)
                && exec.iter().all(ok)
        }
        _ => false,
    }
}

/// Per-item outcome of a chunk's replies: `Ok(())` or the first error of the item.
fn chunk_outcome(
    replies: Vec<Value>,
    n_items: usize,
    per_item: usize,
    atomic: bool,
    keys: &dyn Fn(usize) -> String,
) -> Vec<Result<()>> {
    let item_err = |v: Value, i: usize| -> Option<Error> {
        match v {
            Value::ServerError(e) => Some(Error::redis(e.into(), Some(&keys(i)))),
            _ => None,
        }
    };
    let replies = if atomic {
        // MULTI, one QUEUED (or a queueing error) per command, then EXEC.
        let mut it = replies.into_iter();
        let multi = it.next().unwrap_or(Value::Nil);
        let mut queued: Vec<Value> = it.by_ref().take(n_items * per_item).collect();
        let exec = it.next().unwrap_or(Value::Nil);
        let first_queue_error = queued
            .iter()
            .position(|v| matches!(v, Value::ServerError(_)))
            .map(|p| p / per_item);
        match exec {
            Value::Array(inner) if inner.len() == n_items * per_item => inner,
            other => {
                // The whole transaction failed: report the most telling error.
                let err = if let Value::ServerError(e) = multi {
                    Error::redis(e.into(), None)
                } else if let Some(i) = first_queue_error {
                    let v = std::mem::replace(&mut queued[i * per_item], Value::Nil);
                    item_err(v, i).unwrap_or_else(|| Error::unexpected("transaction failed", None))
                } else if let Value::ServerError(e) = other {
                    Error::redis(e.into(), None)
                } else {
                    Error::unexpected(format!("EXEC replied {other:?}"), None)
                };
                let msg = err.with_causes();
                let mut out = Vec::with_capacity(n_items);
                out.push(Err(err));
                for _ in 1..n_items {
                    out.push(Err(Error::unexpected(
                        format!("transaction failed: {msg}"),
                        None,
                    )));
                }
                return out;
            }
        }
    } else {
        replies
    };
    let mut out = Vec::with_capacity(n_items);
    let mut it = replies.into_iter();
    for i in 0..n_items {
        let mut res = Ok(());
        for _ in 0..per_item {
            let v = it.next().unwrap_or(Value::Nil);
            if res.is_ok()
                && let Some(e) = item_err(v, i)
            {
                res = Err(e);
            }
        }
        out.push(res);
    }
    out
}
