//! Running plans on async (tokio) connections.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use redis::Value;

use super::step::{Compute, OFFLOAD_THRESHOLD};
use super::{Delivered, Replies, ReplyCheck, Request, Requests, Sequential, Step};
use crate::error::{Error, Result};

/// An asynchronous connection redstash can run requests on: every
/// `redis::aio::ConnectionLike` (`MultiplexedConnection`, `ConnectionManager`, ...) and
/// redstash's own direct and cluster connections.
pub trait AsyncConnection: Send {
    /// Send the request and return one reply per command (server errors as
    /// `Value::ServerError` elements).
    fn run_request(&mut self, req: Request<'_>) -> impl Future<Output = Result<Vec<Value>>> + Send;

    /// Send independent requests and return the replies of each (pipelined when the
    /// connection can), building each request just before sending it; or what became
    /// of each when they did not all complete ([`Interrupted`](super::Interrupted)).
    fn run_requests(&mut self, reqs: Requests<'_>) -> impl Future<Output = Delivered> + Send;
}

impl<C: redis::aio::ConnectionLike + Send> AsyncConnection for C {
    /// One round trip per request (a redis-rs connection takes one call at a time). The
    /// server waits between calls, so the work between them is kept minimal: each
    /// request is turned into a pipeline, and the previous pipeline freed, while the one
    /// before it is under way.
    async fn run_requests(&mut self, mut reqs: Requests<'_>) -> Delivered {
        let mut out = Sequential::with_capacity(reqs.len());
        let mut next = match reqs.next().map(Prepared::new).transpose() {
            Ok(n) => n,
            Err(e) => {
                out.stop(e, 1 + reqs.len())?;
                None
            }
        };
        let mut sent: Option<Prepared> = None;
        while let Some(p) = next.take() {
            let (offset, count) = p.window;
            let call = self.req_packed_commands(&p.pipeline, offset, count);
            let (replies, following) = while_in_flight(call, || {
                drop(sent.take());
                reqs.next().map(Prepared::new).transpose()
            })
            .await;
            let outcome = replies
                .map_err(|e| p.shell.error(e))
                .and_then(|r| p.shell.finish(r));
            // Built but not sent: `following` (if any) counts among the remaining.
            let remaining = reqs.len() + usize::from(matches!(following, Ok(Some(_)) | Err(_)));
            out.push(outcome, p.shell.len, remaining)?;
            next = match following {
                Ok(n) => n,
                Err(e) => {
                    out.stop(e, 1 + reqs.len())?;
                    None
                }
            };
            sent = Some(p);
        }
        out.finish()
    }

    async fn run_request(&mut self, req: Request<'_>) -> Result<Vec<Value>> {
        let p = Prepared::new(req)?;
        let (offset, count) = p.window;
        let replies = self
            .req_packed_commands(&p.pipeline, offset, count)
            .await
            .map_err(|e| p.shell.error(e))?;
        p.shell.finish(replies)
    }
}

/// A request as a redis-rs pipeline, with what checking its replies needs.
struct Prepared {
    pipeline: redis::Pipeline,
    window: (usize, usize),
    shell: ReplyCheck,
}

impl Prepared {
    fn new(req: Request<'_>) -> Result<Self> {
        Ok(Prepared {
            window: req.reply_window(),
            shell: req.shell(),
            pipeline: req.into_pipeline()?,
        })
    }
}

/// Await `call`, running `work` once the call is under way: after its first poll (a
/// redis-rs multiplexed connection then has the request queued) and one yield to the
/// runtime (its driver task then writes what the socket takes), so that the server works
/// on the request while `work` runs.
async fn while_in_flight<F: Future, R>(call: F, work: impl FnOnce() -> R) -> (F::Output, R) {
    let mut call = pin!(call);
    match poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        Poll::Ready(v) => (v, work()),
        Poll::Pending => {
            tokio::task::yield_now().await;
            let r = work();
            (call.await, r)
        }
    }
}

/// Run the work of a [`Step::Compute`] on tokio's blocking threads when it costs at
/// least [`OFFLOAD_THRESHOLD`] and a tokio runtime is current (so that it does not block
/// the thread polling this task), else in place; then its continuation, here.
async fn compute<'a, T>(c: Compute<'a, T>) -> Result<Step<'a, T>> {
    let handle = (c.cost() >= OFFLOAD_THRESHOLD)
        .then(tokio::runtime::Handle::try_current)
        .and_then(std::result::Result::ok);
    let Some(handle) = handle else {
        return c.run();
    };
    let task = c.task().to_owned();
    let (work, then) = c.detach();
    // The work catches its own panic: the join fails only when the runtime shuts down.
    let out = handle
        .spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::panicked(format!("{task} ({e})"))));
    then(out)
}

/// Drive an operation to its end on an asynchronous connection. The work of a
/// [`Step::Compute`] of at least [`OFFLOAD_THRESHOLD`] bytes runs on tokio's blocking
/// threads (see [`Step::compute`]).
pub async fn run_async<T>(
    con: &mut (impl AsyncConnection + ?Sized),
    mut step: Step<'_, T>,
) -> Result<T> {
    loop {
        match step {
            Step::Done(v) => return Ok(v),
            Step::Failed(e) => return Err(e),
            Step::Send(req, next) => {
                let key = req.key().map(str::to_owned);
                let replies = con.run_request(req).await?;
                step = next(Replies::new(replies, key))?;
            }
            Step::SendAll(reqs, next) => {
                let replies = con.run_requests(reqs).await;
                step = next(replies)?;
            }
            Step::Compute(work) => step = compute(work).await?,
        }
    }
}
