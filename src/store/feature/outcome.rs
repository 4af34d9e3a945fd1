//! What became of a bulk write: from what became of each chunk (its replies, or a
//! refusal or connection failure), which entities were written, refused, in flight
//! (unknown) or never sent.

use std::ops::Range;

use redis::Value;

use super::write::Write;
use crate::error::{Error, Result};
use crate::exec::{Delivered, Delivery};
use crate::resp::transaction::Aborted;
use crate::resp::transaction_replies;
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

/// Per-item outcome of a chunk's replies: `Ok(())` or the item's first error. A
/// transaction's replies are unwrapped by the one transaction check of the wire layer
/// ([`transaction_replies`]); a reply count that is not one per command is an error for
/// every item (never a silent misread).
fn chunk_outcome(
    replies: Vec<Value>,
    n_items: usize,
    per_item: usize,
    atomic: bool,
    keys: &dyn Fn(usize) -> String,
) -> Vec<Result<()>> {
    let replies = if atomic {
        match transaction_replies(replies) {
            Ok(inner) => inner,
            Err(aborted) => return aborted_outcome(aborted, n_items, per_item, keys),
        }
    } else {
        replies
    };
    let expected = n_items * per_item;
    if replies.len() != expected {
        let msg = format!(
            "{} replies to a chunk of {expected} commands",
            replies.len()
        );
        return (0..n_items)
            .map(|i| Err(Error::unexpected(msg.clone(), Some(keys(i)))))
            .collect();
    }
    let mut out = Vec::with_capacity(n_items);
    let mut it = replies.into_iter();
    for i in 0..n_items {
        let mut res = Ok(());
        for v in it.by_ref().take(per_item) {
            if let (Ok(()), Value::ServerError(e)) = (&res, v) {
                res = Err(Error::redis(e.into(), Some(&keys(i))));
            }
        }
        out.push(res);
    }
    out
}

/// Per-item outcome of a transaction that did not run (none of its commands did): the
/// item whose command was refused while queued gets the server's error for that
/// command; every other item an error that says the transaction failed, and why.
fn aborted_outcome(
    aborted: Aborted,
    n_items: usize,
    per_item: usize,
    keys: &dyn Fn(usize) -> String,
) -> Vec<Result<()>> {
    let culprit = match &aborted {
        Aborted::Queued { index, .. } => (index / per_item.max(1)).min(n_items.saturating_sub(1)),
        _ => 0,
    };
    let err = aborted.into_error(Some(&keys(culprit)));
    let msg = format!("transaction failed: {}", err.with_causes());
    let mut out: Vec<Result<()>> = (0..n_items)
        .map(|i| Err(Error::unexpected(msg.clone(), Some(keys(i)))))
        .collect();
    if let Some(slot) = out.get_mut(culprit) {
        *slot = Err(err);
    }
    out
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::chunk_outcome;
    use crate::error::{Error, RedisErrorKind};
    use crate::resp::server_error_value;

    fn keys(i: usize) -> String {
        format!("k{i}")
    }

    fn queued() -> Value {
        Value::SimpleString("QUEUED".into())
    }

    fn key_of(r: &crate::error::Result<()>) -> Option<String> {
        match r {
            Err(Error::Redis { key, .. } | Error::UnexpectedReply { key, .. }) => key.clone(),
            _ => None,
        }
    }

    /// A transaction refused because the 2nd command of item 1 was refused while
    /// queued: item 1 gets that command's own error, the others say the transaction
    /// failed; none is written.
    #[test]
    fn a_refused_transaction_names_the_item_whose_command_was_refused() {
        let raw = vec![
            Value::Okay,
            queued(),
            queued(),
            queued(),
            server_error_value(b"NOPERM this user has no permissions to run 'pexpire'"),
            queued(),
            queued(),
            server_error_value(b"EXECABORT Transaction discarded because of previous errors."),
        ];
        let out = chunk_outcome(raw, 3, 2, true, &keys);
        assert_eq!(out.len(), 3);
        let e = out[1].as_ref().unwrap_err();
        assert_eq!(e.redis_kind(), Some(RedisErrorKind::Auth), "{e}");
        assert_eq!(key_of(&out[1]).as_deref(), Some("k1"));
        for i in [0, 2] {
            let e = out[i].as_ref().unwrap_err();
            assert!(e.to_string().contains("transaction failed"), "{e}");
            assert_eq!(key_of(&out[i]), Some(keys(i)));
        }
    }

    /// A `WATCH` abort (nil `EXEC`) is the same `ExecAbort` error as on every connection.
    #[test]
    fn a_watch_abort_refuses_every_item() {
        let raw = vec![Value::Okay, queued(), queued(), Value::Nil];
        let out = chunk_outcome(raw, 2, 1, true, &keys);
        assert!(out.iter().all(|r| r.is_err()));
        let e = out[0].as_ref().unwrap_err();
        assert!(e.with_causes().contains("aborted"), "{}", e.with_causes());
    }

    /// Fewer replies than commands is an error for every item, not a write of the
    /// items whose replies are missing.
    #[test]
    fn a_miscounted_chunk_is_an_error_for_every_item() {
        let out = chunk_outcome(
            vec![Value::Okay, Value::Okay, Value::Okay],
            2,
            2,
            false,
            &keys,
        );
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(Error::UnexpectedReply { .. })))
        );
        let exec = Value::Array(vec![Value::Okay]);
        let out = chunk_outcome(
            vec![Value::Okay, queued(), queued(), exec],
            2,
            1,
            true,
            &keys,
        );
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(Error::UnexpectedReply { .. })))
        );
        let ok = chunk_outcome(vec![Value::Okay, Value::Int(1)], 1, 2, false, &keys);
        assert!(ok[0].is_ok());
    }
}
