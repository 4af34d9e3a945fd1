//! Running plans on async (tokio) connections.

use std::future::Future;

use redis::Value;

use super::{Command, Request, Step, lens, pipelinable, split_replies};
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
    /// connection can).
    fn run_requests(
        &mut self,
        reqs: Vec<Request<'_>>,
    ) -> impl Future<Output = Result<Vec<Vec<Value>>>> + Send;
}

impl AsyncConnection for crate::direct::DirectAsyncConnection {
    async fn run_requests(&mut self, reqs: Vec<Request<'_>>) -> Result<Vec<Vec<Value>>> {
        if !pipelinable(&reqs) {
            return one_by_one(self, reqs).await;
        }
        let replies = {
            let all: Vec<&Command<'_>> = reqs.iter().flat_map(|r| r.commands().iter()).collect();
            self.exec(&all, false).await.map_err(Error::from)?
        };
        split_replies(&lens(&reqs), replies)
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
    async fn run_requests(&mut self, reqs: Vec<Request<'_>>) -> Result<Vec<Vec<Value>>> {
        if !pipelinable(&reqs) {
            return one_by_one(self, reqs).await;
        }
        let lens = lens(&reqs);
        let total = lens.iter().sum();
        let mut pipeline = redis::Pipeline::with_capacity(total);
        for r in reqs {
            for c in r.into_commands() {
                pipeline.add_command(c.into_cmd());
            }
        }
        let replies = self.req_packed_commands(&pipeline, 0, total).await?;
        split_replies(&lens, replies)
    }

    async fn run_request(&mut self, req: Request<'_>) -> Result<Vec<Value>> {
        let (offset, count) = req.reply_window();
        // The checks after the call need the key and shape of the request, not its data.
        let shell = req.shell();
        let pipeline = req.into_pipeline();
        let replies = self
            .req_packed_commands(&pipeline, offset, count)
            .await
            .map_err(|e| shell.error(e))?;
        shell.finish(replies)
    }
}

/// Send requests one round trip at a time (what a transaction among them needs).
async fn one_by_one<C: AsyncConnection + ?Sized>(
    con: &mut C,
    reqs: Vec<Request<'_>>,
) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        out.push(con.run_request(r).await?);
    }
    Ok(out)
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
