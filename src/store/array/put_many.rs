//! [`ArrayStore::put_many`]: many arrays in bounded requests, with exact accounting.
//!
//! Small items (encoded within the store's chunk size) are sent as `GETRANGE` + `SET`
//! pairs in requests of at most [`ITEMS_PER_REQUEST`] items or [`BYTES_PER_REQUEST`]
//! bytes, each encoded just before it is sent, so that memory stays bounded whatever
//! the number of items (the direct connections pipeline the requests). Items too big
//! for one value are written afterwards, one at a time, as chunks then their manifest.
//! Every request is sent as a [`Step::SendAll`], so a connection failure reaches the
//! plan, which reports exactly which items were written, refused, in flight (unknown)
//! or never sent ([`Error::PartialWrite`]).

use std::sync::{Arc, Mutex};

use redis::Value;

use super::{ArrayStore, del_cmd, getrange_cmd, set_command, stale_chunks, value_len};
use crate::array::AsArray;
use crate::codec::{ArrayCodec, Limits};
use crate::error::{Error, Result};
use crate::exec::{Delivered, Delivery, Interrupted, Replies, Request, Requests, Step};
use crate::store::tally::Tally;

/// Most items per request of small items.
pub(crate) const ITEMS_PER_REQUEST: usize = 1_000;

/// Most encoded bytes per request of small items (one item may exceed it alone).
pub(crate) const BYTES_PER_REQUEST: usize = 16 << 20;

/// What the lazily built requests found out while encoding: items too big for one
/// value (written afterwards, as chunks) and the first encoding error (which stops the
/// sending: that item and all after it are not sent).
#[derive(Default)]
struct Found {
    big: Vec<usize>,
    /// `(item, error)`.
    error: Option<(usize, Error)>,
}

/// The items of each request of small items: at most [`ITEMS_PER_REQUEST`] items and
/// (by their raw size, when known without encoding) [`BYTES_PER_REQUEST`] bytes, at
/// least one item.
fn request_ranges<A: AsArray>(items: &[(impl AsRef<str>, A)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, a)) in items.iter().enumerate() {
        let size = a.try_array_ref().map_or(0, |r| r.nbytes());
        if i > start && (i - start >= ITEMS_PER_REQUEST || bytes + size > BYTES_PER_REQUEST) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

impl<C: ArrayCodec> ArrayStore<C> {
    /// Plan of [`put_many`](Self::put_many).
    pub fn plan_put_many<'a, N: AsRef<str> + Sync, A: AsArray + Sync>(
        &'a self,
        items: &'a [(N, A)],
    ) -> Result<Step<'a, ()>> {
        self.chunk_bytes()?;
        if items.is_empty() {
            return Ok(Step::Done(()));
        }
        let found = Arc::new(Mutex::new(Found::default()));
        let ranges = Arc::new(request_ranges(items));
        let requests = SmallRequests {
            store: self,
            items,
            ranges: Arc::clone(&ranges),
            next: 0,
            found: Arc::clone(&found),
        };
        let limits = self.limits;
        Ok(Step::SendAll(
            Requests::new(requests),
            Box::new(move |delivered| {
                let found = std::mem::take(&mut *found.lock().map_err(|_| poisoned())?);
                let mut tally = Tally::default();
                let mut stale = Vec::new();
                let failure = tally_small(
                    items, self, &ranges, &found, delivered, &mut tally, &mut stale, &limits,
                );
                if let Some((item, e)) = found.error {
                    let failure = failure.unwrap_or(e);
                    return finish(tally, item..items.len(), &found.big, Some(failure), stale);
                }
                if let Some(f) = failure {
                    return finish(tally, 0..0, &found.big, Some(f), stale);
                }
                self.put_big(items, found.big, 0, tally, stale)
            }),
        ))
    }

    /// Write the big items from `big[pos]` on, one at a time, then clean up.
    fn put_big<'a, N: AsRef<str> + Sync, A: AsArray + Sync>(
        &'a self,
        items: &'a [(N, A)],
        big: Vec<usize>,
        pos: usize,
        mut tally: Tally,
        stale: Vec<String>,
    ) -> Result<Step<'a, ()>> {
        let Some(&item) = big.get(pos) else {
            return done(tally, None, stale);
        };
        let key = self.key(items[item].0.as_ref());
        let value = match self.encode(&items[item].1) {
            Ok(v) => v,
            Err(e) => {
                tally.refused(item, e);
                return self.put_big(items, big, pos + 1, tally, stale);
            }
        };
        let limits = self.limits;
        if value_len(&value) <= self.chunk_size {
            // Smaller once compressed than its raw size suggested: one SET.
            let mut req = Request::new(Some(&key));
            req.push(getrange_cmd(&key));
            req.push(set_command(&key, value, self.ttl));
            return Ok(Step::send_tracked(req, move |d| {
                let mut stale = stale;
                match single_outcome(d) {
                    Outcome::Written(old) => {
                        match stale_chunks(&key, old, None, &limits) {
                            Ok(keys) => stale.extend(keys),
                            Err(e) => tally.also_failed(e),
                        }
                        tally.written(item);
                    }
                    Outcome::Refused(e) => tally.refused(item, e),
                    Outcome::Stop(e, unknown) => {
                        mark(&mut tally, item, unknown);
                        return finish_big(tally, &big[pos + 1..], e, stale);
                    }
                }
                self.put_big(items, big, pos + 1, tally, stale)
            }));
        }
        let w = match self.chunked_write(&key, value) {
            Ok(w) => w,
            Err(e) => {
                tally.refused(item, e);
                return self.put_big(items, big, pos + 1, tally, stale);
            }
        };
        let (chunk_keys, fin, generation) = (w.keys, w.fin, w.generation);
        // Each chunk's request is built (from the array's memory) as it is sent.
        Ok(Step::SendAll(
            Requests::new(w.chunks),
            Box::new(move |d| {
                match d {
                    Ok(r)
                        if r.iter()
                            .all(|c| !matches!(c.first(), Some(Value::ServerError(_)))) => {}
                    Ok(r) => {
                        tally.refused(item, first_server_error(&r, &key));
                        return Ok(with_cleanup(chunk_keys, &key, move || {
                            self.put_big(items, big, pos + 1, tally, stale)
                        }));
                    }
                    Err(i) => {
                        // The manifest was never sent: the item is not stored (its old
                        // value is intact); its chunks are garbage no manifest names.
                        tally.not_sent(item);
                        return finish_big(tally, &big[pos + 1..], i.into_error(), stale);
                    }
                }
                Ok(Step::send_tracked(fin, move |d| {
                    let mut stale = stale;
                    match single_outcome(d) {
                        Outcome::Written(old) => {
                            match stale_chunks(&key, old, Some(generation), &limits) {
                                Ok(keys) => stale.extend(keys),
                                Err(e) => tally.also_failed(e),
                            }
                            tally.written(item);
                            self.put_big(items, big, pos + 1, tally, stale)
                        }
                        Outcome::Refused(e) => {
                            tally.refused(item, e);
                            Ok(with_cleanup(chunk_keys, &key, move || {
                                self.put_big(items, big, pos + 1, tally, stale)
                            }))
                        }
                        Outcome::Stop(e, unknown) => {
                            mark(&mut tally, item, unknown);
                            finish_big(tally, &big[pos + 1..], e, stale)
                        }
                    }
                }))
            }),
        ))
    }
}

/// The requests of small items, each encoded when the connection asks for it.
struct SmallRequests<'a, C: ArrayCodec, N, A> {
    store: &'a ArrayStore<C>,
    items: &'a [(N, A)],
    ranges: Arc<Vec<std::ops::Range<usize>>>,
    next: usize,
    found: Arc<Mutex<Found>>,
}

impl<'a, C: ArrayCodec, N: AsRef<str>, A: AsArray> Iterator for SmallRequests<'a, C, N, A> {
    type Item = Request<'a>;

    fn next(&mut self) -> Option<Request<'a>> {
        let range = self.ranges.get(self.next)?.clone();
        self.next += 1;
        let mut req = Request::new(None);
        let Ok(mut found) = self.found.lock() else {
            return Some(req);
        };
        if found.error.is_some() {
            // Nothing more is sent after an item that could not be encoded.
            return Some(req);
        }
        for i in range {
            let (name, array) = &self.items[i];
            let key = self.store.key(name.as_ref());
            match self.store.set_for(&key, array) {
                Ok(set) if set.arg_len(2) > self.store.chunk_size => found.big.push(i),
                Ok(set) => {
                    req.push(getrange_cmd(&key));
                    req.push(set);
                }
                Err(e) => {
                    found.error = Some((i, e));
                    // The items of this request before it are not sent either.
                    return Some(Request::new(None));
                }
            }
        }
        Some(req)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.ranges.len() - self.next;
        (n, Some(n))
    }
}

impl<C: ArrayCodec, N: AsRef<str>, A: AsArray> ExactSizeIterator for SmallRequests<'_, C, N, A> {}

/// Tally the small items from what became of their requests (collecting the stale
/// chunks of arrays they replaced); the connection failure, if one cut them short.
#[allow(clippy::too_many_arguments)]
fn tally_small<C: ArrayCodec, N: AsRef<str>, A>(
    items: &[(N, A)],
    store: &ArrayStore<C>,
    ranges: &[std::ops::Range<usize>],
    found: &Found,
    delivered: Delivered,
    tally: &mut Tally,
    stale: &mut Vec<String>,
    limits: &Limits,
) -> Option<Error> {
    let (deliveries, failure): (Vec<Delivery>, Option<Error>) = match delivered {
        Ok(all) => (all.into_iter().map(Delivery::Answered).collect(), None),
        Err(i) => (i.requests, i.failure),
    };
    let is_big = |i: usize| found.big.binary_search(&i).is_ok();
    let mut deliveries = deliveries.into_iter();
    let unsent_from = found.error.as_ref().map_or(items.len(), |(i, _)| *i);
    for range in ranges {
        if range.start >= unsent_from {
            break;
        }
        if range.end > unsent_from {
            // The request of the item that could not be encoded was sent empty.
            deliveries.next();
            (range.start..unsent_from)
                .filter(|&i| !is_big(i))
                .for_each(|i| tally.not_sent(i));
            break;
        }
        let small: Vec<usize> = range.clone().filter(|&i| !is_big(i)).collect();
        let replies: Vec<Option<Value>> = match deliveries.next().unwrap_or(Delivery::NotSent) {
            Delivery::Answered(r) => r.into_iter().map(Some).collect(),
            Delivery::InFlight(r) => r,
            Delivery::Refused(e) => {
                let msg = e.with_causes();
                for (n, &i) in small.iter().enumerate() {
                    let e = if n == 0 {
                        Error::unexpected(msg.clone(), None)
                    } else {
                        Error::unexpected(format!("request refused: {msg}"), None)
                    };
                    tally.refused(i, e);
                }
                continue;
            }
            Delivery::NotSent => {
                small.iter().for_each(|&i| tally.not_sent(i));
                continue;
            }
        };
        let mut it = replies.into_iter();
        for &i in &small {
            let old = it.next().flatten();
            match it.next().flatten() {
                None => tally.unknown(i),
                Some(Value::ServerError(e)) => {
                    let key = store.key(items[i].0.as_ref());
                    tally.refused(i, Error::redis(e.into(), Some(&key)));
                }
                Some(_) => {
                    tally.written(i);
                    if let Some(old) = old {
                        let key = store.key(items[i].0.as_ref());
                        match stale_chunks(&key, old, None, limits) {
                            Ok(keys) => stale.extend(keys),
                            // The array was written; its old chunks could not be
                            // listed (e.g. a user without GETRANGE): reported.
                            Err(e) => tally.also_failed(e),
                        }
                    }
                }
            }
        }
    }
    failure
}

/// What became of one tracked request (a big item's `GETRANGE` + `SET`).
enum Outcome {
    /// Stored; the reply to the `GETRANGE` (the old value's start).
    Written(Value),
    /// The `SET` was refused: not stored.
    Refused(Error),
    /// The connection failed: the item is unknown (`true`) or not sent (`false`), and
    /// nothing after it is sent.
    Stop(Error, bool),
}

fn single_outcome(d: Delivered) -> Outcome {
    let refused = |e: &redis::ServerError| Outcome::Refused(Error::redis(e.clone().into(), None));
    match d {
        Ok(mut all) => answered(all.pop().unwrap_or_default()),
        Err(i) => {
            let Interrupted {
                mut requests,
                failure,
            } = *i;
            let e = failure.unwrap_or_else(|| Error::unexpected("request interrupted", None));
            match requests.pop() {
                Some(Delivery::Refused(e)) => Outcome::Refused(e),
                Some(Delivery::InFlight(r)) => {
                    let mut r = r.into_iter();
                    match (r.next().flatten(), r.next().flatten()) {
                        // Both replies read before the failure: the outcome is known (the
                        // next request finds the connection broken).
                        (_, Some(Value::ServerError(se))) => refused(&se),
                        (Some(old), Some(_)) => Outcome::Written(old),
                        _ => Outcome::Stop(e, true),
                    }
                }
                Some(Delivery::Answered(r)) => answered(r),
                Some(Delivery::NotSent) | None => Outcome::Stop(e, false),
            }
        }
    }
}

/// The outcome of the replies of a big item's `GETRANGE` + `SET`, all read.
fn answered(replies: Vec<Value>) -> Outcome {
    let mut r = Replies::new(replies, None);
    let read = r.next_raw().and_then(|old| Ok((old, r.next_raw()?)));
    match read.and_then(|(old, set)| r.finish().map(|()| (old, set))) {
        Ok((_, Value::ServerError(e))) => Outcome::Refused(Error::redis(e.into(), None)),
        Ok((old, _)) => Outcome::Written(old),
        Err(e) => Outcome::Stop(e, true),
    }
}

fn mark(tally: &mut Tally, item: usize, unknown: bool) {
    if unknown {
        tally.unknown(item);
    } else {
        tally.not_sent(item);
    }
}

fn first_server_error(replies: &[Vec<Value>], key: &str) -> Error {
    replies
        .iter()
        .find_map(|r| match r.first() {
            Some(Value::ServerError(e)) => Some(Error::redis(e.clone().into(), Some(key))),
            _ => None,
        })
        .unwrap_or_else(|| Error::unexpected("chunk refused", Some(key.to_owned())))
}

/// Delete the chunks of a big item that was not stored, then go on with `next`.
fn with_cleanup<'a>(
    chunk_keys: Vec<String>,
    key: &str,
    next: impl FnOnce() -> Result<Step<'a, ()>> + Send + 'a,
) -> Step<'a, ()> {
    let mut req = Request::new(Some(key));
    for part in chunk_keys.chunks(512) {
        req.push(del_cmd(part));
    }
    // Best effort: the chunks are garbage either way (no manifest names them).
    Step::send_tracked(req, move |_| next())
}

/// The connection failed before the big items `rest` were sent.
fn finish_big<'a>(
    mut tally: Tally,
    rest: &[usize],
    e: Error,
    stale: Vec<String>,
) -> Result<Step<'a, ()>> {
    rest.iter().for_each(|&i| tally.not_sent(i));
    done(tally, Some(e), stale)
}

/// The end of the write when the small items failed or an item could not be encoded:
/// the items of `after` and the big items are not sent.
fn finish<'a>(
    mut tally: Tally,
    after: std::ops::Range<usize>,
    big: &[usize],
    failure: Option<Error>,
    stale: Vec<String>,
) -> Result<Step<'a, ()>> {
    for i in after {
        if big.binary_search(&i).is_err() {
            tally.not_sent(i);
        }
    }
    big.iter().for_each(|&i| tally.not_sent(i));
    done(tally, failure, stale)
}

/// Delete the chunks of the arrays replaced (also when the write failed: those
/// arrays were written), then report the tally.
fn done<'a>(mut tally: Tally, failure: Option<Error>, stale: Vec<String>) -> Result<Step<'a, ()>> {
    if stale.is_empty() || failure.is_some() {
        // After a connection failure the clean-up is not attempted: the chunks left
        // are garbage no manifest names (the next put of those arrays removes them).
        return tally.finish(failure).map(|_| Step::Done(()));
    }
    let mut req = Request::new(None);
    for part in stale.chunks(512) {
        req.push(del_cmd(part));
    }
    Ok(Step::send_tracked(req, move |d| {
        if let Err(i) = d {
            tally.also_failed(i.into_error());
        }
        tally.finish(None).map(|_| Step::Done(()))
    }))
}

fn poisoned() -> Error {
    Error::panicked("a put_many request builder")
}
