//! Running plans on synchronous connections.

use redis::Value;

use super::{Delivered, Replies, Request, Requests, Sequential, Step};
use crate::error::Result;

/// A synchronous connection redstash can run requests on.
pub trait SyncConnection {
    /// Send the request and return one reply per command (server errors as
    /// `Value::ServerError` elements).
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>>;

    /// Send independent requests and return the replies of each, or what became of
    /// each when they did not all complete ([`Interrupted`](super::Interrupted)). The default sends them
    /// one round trip at a time, building each request just before sending it, and
    /// stops at a connection failure; connections override it to pipeline them.
    fn run_requests(&mut self, mut reqs: Requests<'_>) -> Delivered {
        let mut out = Sequential::with_capacity(reqs.len());
        while let Some(r) = reqs.next() {
            let outcome = self.run_request(&r);
            out.push(outcome, r.len(), reqs.len())?;
        }
        out.finish()
    }
}

impl<C: redis::ConnectionLike> SyncConnection for C {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        let packed = req.packed();
        let (offset, count) = req.reply_window();
        let replies = self
            .req_packed_commands(&packed, offset, count)
            .map_err(|e| req.error(e))?;
        req.finish(replies)
    }
}

/// Drive an operation to its end on a synchronous connection.
pub fn run<T>(con: &mut (impl SyncConnection + ?Sized), mut step: Step<'_, T>) -> Result<T> {
    loop {
        match step {
            Step::Done(v) => return Ok(v),
            Step::Failed(e) => return Err(e),
            Step::Send(req, next) => {
                let replies = con.run_request(&req)?;
                step = next(Replies::new(replies, req.key().map(str::to_owned)))?;
            }
            Step::SendAll(reqs, next) => {
                let replies = con.run_requests(reqs);
                step = next(replies)?;
            }
            Step::Compute(work) => step = work.run()?,
        }
    }
}
