//! Running plans on async (tokio) connections.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use redis::Value;

use super::{ReplyCheck, Request, Requests, Step};
use crate::error::Error;
use crate::error::Result;

/// An asynchronous connection redstash can run requests on: every
/// `redis::aio::ConnectionLike` (`MultiplexedConnection`, `ConnectionManager`, ...) and
/// redstash's [`DirectAsyncConnection`](crate::direct::DirectAsyncConnection).
pub trait AsyncConnection: Send {
    /// Send the request and return one reply per command (server errors as
    /// `Value::ServerError` elements).
    fn run_request(&mut self, req: Request<'_>) -> impl Future<Output = Result<Vec<Value>>> + Send;

    /// Send independent requests and return the replies of each (pipelined when the
    /// connection can), building each request just before sending it.
    fn run_requests(
        &mut self,
        reqs: Requests<'_>,
    ) -> impl Future<Output = Result<Vec<Vec<Value>>>> + Send;
}

impl AsyncConnection for crate::direct::DirectAsyncConnection {
    /// Writes each request as soon as it is built (building the next one overlaps with
    /// the server's work on those already written), then reads all replies.
    async fn run_requests(&mut self, reqs: Requests<'_>) -> Result<Vec<Vec<Value>>> {
        self.begin().map_err(Error::from)?;
        let mut sent = Vec::with_capacity(reqs.len());
        for r in reqs {
            let raw = self
                .send(r.commands(), r.is_atomic())
                .await
                .map_err(|e| r.error(e))?;
            sent.push((r.shell(), raw));
        }
        let mut raw_replies = Vec::with_capacity(sent.len());
        for (check, n) in &sent {
            raw_replies.push(self.recv(*n).await.map_err(|e| check.error(e))?);
        }
        sent.iter()
            .zip(raw_replies)
            .map(|((check, _), raw)| check.finish_raw(raw))
            .collect()
    }

    async fn run_request(&mut self, req: Request<'_>) -> Result<Vec<Value>> {
        // The direct connection unwraps a transaction's EXEC reply itself.
        let replies = self
            .exec(req.commands(), req.is_atomic())
            .await
            .map_err(|e| req.error(e))?;
        req.shell().check_len(replies)
    }
}

impl<C: redis::aio::ConnectionLike + Send> AsyncConnection for C {
    /// One round trip per request (a redis-rs connection takes one call at a time). The
    /// server waits between calls, so the work between them is kept minimal: each
    /// request is turned into a pipeline, and the previous pipeline freed, while the one
    /// before it is under way.
    async fn run_requests(&mut self, mut reqs: Requests<'_>) -> Result<Vec<Vec<Value>>> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut next = reqs.next().map(Prepared::new).transpose()?;
        let mut sent: Option<Prepared> = None;
        while let Some(p) = next.take() {
            let (offset, count) = p.window;
            let call = self.req_packed_commands(&p.pipeline, offset, count);
            let (replies, following) = while_in_flight(call, || {
                drop(sent.take());
                reqs.next().map(Prepared::new).transpose()
            })
            .await;
            out.push(p.shell.finish(replies.map_err(|e| p.shell.error(e))?)?);
            next = following?;
            sent = Some(p);
        }
        Ok(out)
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

/// Drive an operation to its end on an asynchronous connection.
pub async fn run_async<T>(
    con: &mut (impl AsyncConnection + ?Sized),
    mut step: Step<'_, T>,
) -> Result<T> {
    loop {
        match step {
            Step::Done(v) => return Ok(v),
            Step::Send(req, next) => {
                let replies = con.run_request(req).await?;
                step = next(replies)?;
            }
            Step::SendAll(reqs, next) => {
                let replies = con.run_requests(reqs).await?;
                step = next(replies)?;
            }
        }
    }
}
