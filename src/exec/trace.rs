//! A `tracing` span per store operation (feature `tracing`): what the operation sent and
//! received, how long it took, and how it ended, recorded by a connection wrapper that
//! counts what passes through it.
// The stores' methods use it only with `sync` or `tokio`.
#![cfg_attr(not(any(feature = "sync", feature = "tokio")), allow(dead_code))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use redis::Value;
use tracing::Span;
use tracing::field::Empty;

use super::{Delivered, Request, Requests, Step, SyncConnection};
use crate::error::Result;

/// The span of one store operation: `redstash` at level INFO, with `store` and `op`
/// set, the other fields recorded when it ends:
///
/// * `key`: the key of the operation's first request, when it has one;
/// * `requests`, `commands`: round trips' requests and the commands in them;
/// * `bytes_out`: bytes of the commands' arguments (plus a little framing);
/// * `bytes_in`: bytes of the replies' values;
/// * `elapsed_us`: wall time of the whole operation, plan included;
/// * `outcome`: `ok`, or `error` with `error` (the error's text and causes).
pub(crate) fn span(store: &'static str, op: &'static str) -> Span {
    tracing::info_span!(
        "redstash",
        store = short_type_name(store),
        op,
        key = Empty,
        requests = Empty,
        commands = Empty,
        bytes_out = Empty,
        bytes_in = Empty,
        elapsed_us = Empty,
        outcome = Empty,
        error = Empty,
    )
}

/// `redstash::store::array::ArrayStore<redstash::codec::Npy>` -> `ArrayStore`.
fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// What passed through a [`Traced`] connection.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    commands: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    key: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn request(&self, req: &Request<'_>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(req.len() as u64, Ordering::Relaxed);
        let bytes: usize = req.commands().iter().map(|c| c.size_hint()).sum();
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        if let (Some(k), Ok(mut key)) = (req.key(), self.key.lock())
            && key.is_none()
        {
            *key = Some(k.to_owned());
        }
    }

    fn replies(&self, values: &[Value]) {
        let bytes: usize = values.iter().map(value_bytes).sum();
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn delivered(&self, d: &Delivered) {
        if let Ok(all) = d {
            all.iter().for_each(|r| self.replies(r));
        }
    }

    /// Record the counts, the time since `start` and the outcome on `span`.
    fn record<T>(&self, span: &Span, start: Instant, result: &Result<T>) {
        if let Ok(key) = self.key.lock()
            && let Some(k) = key.as_deref()
        {
            span.record("key", k);
        }
        span.record("requests", self.requests.load(Ordering::Relaxed));
        span.record("commands", self.commands.load(Ordering::Relaxed));
        span.record("bytes_out", self.bytes_out.load(Ordering::Relaxed));
        span.record("bytes_in", self.bytes_in.load(Ordering::Relaxed));
        record_end(span, start, result);
    }
}

/// Bytes of a reply's values (bulk strings, simple strings and errors; a few bytes for
/// anything else).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::BulkString(b) => b.len(),
        Value::SimpleString(s) => s.len(),
        Value::Array(items) | Value::Set(items) => items.iter().map(value_bytes).sum(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| value_bytes(k) + value_bytes(v))
            .sum(),
        _ => 8,
    }
}

/// A connection that counts the requests and replies passing through it.
struct Traced<'c, C: ?Sized> {
    con: &'c mut C,
    counters: Arc<Counters>,
}

impl<'c, C: ?Sized> Traced<'c, C> {
    fn new(con: &'c mut C) -> Self {
        Traced {
            con,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The requests, counted as they are built.
    fn counted<'a>(&self, reqs: Requests<'a>) -> Requests<'a> {
        let counters = Arc::clone(&self.counters);
        Requests::new(reqs.inspect(move |r| counters.request(r)))
    }
}

impl<C: SyncConnection + ?Sized> SyncConnection for Traced<'_, C> {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        self.counters.request(req);
        let r = self.con.run_request(req);
        if let Ok(v) = &r {
            self.counters.replies(v);
        }
        r
    }

    fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
        let reqs = self.counted(reqs);
        let d = self.con.run_requests(reqs);
        self.counters.delivered(&d);
        d
    }
}

#[cfg(feature = "tokio")]
impl<C: super::AsyncConnection + ?Sized> super::AsyncConnection for Traced<'_, C> {
    async fn run_request(&mut self, req: Request<'_>) -> Result<Vec<Value>> {
        self.counters.request(&req);
        let r = self.con.run_request(req).await;
        if let Ok(v) = &r {
            self.counters.replies(v);
        }
        r
    }

    async fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
        let reqs = self.counted(reqs);
        let d = self.con.run_requests(reqs).await;
        self.counters.delivered(&d);
        d
    }
}

#[cfg_attr(not(feature = "sync"), allow(dead_code))]
/// Plan and run an operation inside `span`, recording what it sent, received and how
/// it ended (nothing is counted when no subscriber listens to the span).
pub(crate) fn run_traced<'a, T, C: SyncConnection + ?Sized>(
    span: Span,
    con: &mut C,
    plan: impl FnOnce() -> Result<Step<'a, T>>,
) -> Result<T> {
    if span.is_disabled() {
        return super::run(con, plan()?);
    }
    let _entered = span.enter();
    let start = Instant::now();
    let mut traced = Traced::new(con);
    let result = plan().and_then(|step| super::run(&mut traced, step));
    traced.counters.record(&span, start, &result);
    result
}

/// [`run_traced`] on an async connection.
#[cfg(feature = "tokio")]
pub(crate) async fn run_traced_async<'a, T, C: super::AsyncConnection + ?Sized>(
    span: Span,
    con: &mut C,
    plan: impl FnOnce() -> Result<Step<'a, T>>,
) -> Result<T> {
    use tracing::Instrument;
    if span.is_disabled() {
        return super::run_async(con, plan()?).await;
    }
    let start = Instant::now();
    let mut traced = Traced::new(con);
    let step = span.in_scope(plan);
    let result: Result<T> = match step {
        Ok(step) => {
            super::run_async(&mut traced, step)
                .instrument(span.clone())
                .await
        }
        Err(e) => Err(e),
    };
    traced.counters.record(&span, start, &result);
    result
}

/// Record the time and outcome of an operation that runs over several connections (no
/// counts: its requests go through connections the span does not wrap).
fn record_timed<T>(span: &Span, key: &str, start: Instant, result: &Result<T>) {
    span.record("key", key);
    record_end(span, start, result);
}

/// Record the time since `start` and the outcome of an operation on its span.
fn record_end<T>(span: &Span, start: Instant, result: &Result<T>) {
    span.record(
        "elapsed_us",
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    match result {
        Ok(_) => span.record("outcome", "ok"),
        Err(e) => {
            span.record("outcome", "error");
            span.record("error", tracing::field::display(e.with_causes()))
        }
    };
}

/// Run an operation over several connections inside a span of `store` and `op` about
/// `key`, recording its time and outcome.
pub(crate) fn timed<T>(
    store: &'static str,
    op: &'static str,
    key: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let span = self::span(store, op);
    if span.is_disabled() {
        return f();
    }
    let _entered = span.enter();
    let start = Instant::now();
    let result = f();
    record_timed(&span, key, start, &result);
    result
}

/// [`timed`] for an async operation.
#[cfg(feature = "tokio")]
pub(crate) async fn timed_async<T>(
    store: &'static str,
    op: &'static str,
    key: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    use tracing::Instrument;
    let span = self::span(store, op);
    if span.is_disabled() {
        return f.await;
    }
    let start = Instant::now();
    let result = f.instrument(span.clone()).await;
    record_timed(&span, key, start, &result);
    result
}
