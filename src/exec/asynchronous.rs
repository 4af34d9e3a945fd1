//! Running plans on async (tokio) connections.

use std::future::Future;

use redis::Value;

use super::{Request, Step};
use crate::error::Result;

/// An asynchronous connection redstash can run requests on: every
/// `redis::aio::ConnectionLike` (`MultiplexedConnection`, `ConnectionManager`, ...) and
/// redstash's [`DirectAsyncConnection`](crate::direct::DirectAsyncConnection).
pub trait AsyncConnection: Send {
    /// Send the request and return one reply per command (server errors as
    /// `Value::ServerError` elements).
    fn run_request(&mut self, req: Request<'_>) -> impl Future<Output = Result<Vec<Value>>> + Send;
}

impl AsyncConnection for crate::direct::DirectAsyncConnection {
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
        }
    }
}
