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
    fn run_request(&mut self, req: &Request) -> impl Future<Output = Result<Vec<Value>>> + Send;
}

impl<C: redis::aio::ConnectionLike + Send> AsyncConnection for C {
    async fn run_request(&mut self, req: &Request) -> Result<Vec<Value>> {
        let (offset, count) = if req.atomic {
            (req.len + 1, 1)
        } else {
            (0, req.len)
        };
        let replies = self
            .req_packed_commands(&req.pipeline, offset, count)
            .await
            .map_err(|e| req.error(e))?;
        req.finish(replies)
    }
}

/// Drive an operation to its end on an asynchronous connection.
pub async fn run_async<T>(con: &mut (impl AsyncConnection + ?Sized), mut step: Step<T>) -> Result<T> {
    loop {
        match step {
            Step::Done(v) => return Ok(v),
            Step::Send(req, next) => {
                let replies = con.run_request(&req).await?;
                step = next(replies)?;
            }
        }
    }
}
