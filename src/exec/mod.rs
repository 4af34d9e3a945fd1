//! Running plans on connections.
//!
//! Every store operation is written once, as a pure function that returns a [`Step`]: a
//! [`Request`] (a pipeline of commands) plus a pure continuation that parses the replies
//! into either the result or the next request. This module holds the only code that
//! talks to connections: [`run`] drives a step on any [`SyncConnection`] (every
//! `redis::ConnectionLike`, e.g. `redis::Connection`, and redstash's own direct and
//! cluster connections), and `run_async` (feature `tokio`) on any `AsyncConnection`
//! (every `redis::aio::ConnectionLike`, e.g. `MultiplexedConnection` and
//! `ConnectionManager`, and redstash's own).
//!
//! `exec` sits on the RESP wire layer (commands encoded as RESP, the transaction-reply
//! check) and knows no concrete connection of redstash: those implement its traits.
//!
//! # Public API: plans you can compose
//!
//! Every store method has a `plan_*` twin that returns its [`Step`] without running it.
//! [`Step`], [`Request`], [`Command`], [`Replies`] and the runners are public so that a
//! caller can chain redstash operations with commands of their own and run the whole on
//! one connection, sync or async, exactly as the stores do: [`Step::and_then`] continues
//! after a result, [`Step::send`] / [`Step::then`] send a request of your own and parse
//! its replies in command order. The wire-level helpers the stores share (reply
//! decoding, the transaction check, RESP framing) stay private.
//!
//! ```
//! # #[cfg(all(feature = "testkit", feature = "ndarray"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use redstash::exec::{Request, Step, run};
//! use redstash::ArrayStore;
//!
//! # let server = redstash::testkit::RedisServer::start()?;
//! # let mut con = server.client()?.get_connection()?;
//! let store = ArrayStore::new("emb");
//! store.put(&mut con, "user:42", &ndarray::Array1::<f32>::ones(8))?;
//!
//! // Read the array, then count the read in a key of our own: one plan, run once.
//! let plan = store.plan_get("user:42")?.and_then(|array| {
//!     let mut incr = redis::cmd("INCR");
//!     incr.arg("emb:reads");
//!     Ok(Step::then(Request::single(incr, Some("emb:reads")), move |mut replies| {
//!         let reads = replies.next_int()?;
//!         replies.finish()?; // a miscounted parse is an error, not a misread
//!         Ok((array, reads))
//!     }))
//! });
//! let (array, reads) = run(&mut con, plan)?;
//! assert_eq!(array.map(|a| a.shape().to_vec()), Some(vec![8]));
//! assert_eq!(reads, 1);
//! # Ok(()) }
//! # #[cfg(not(all(feature = "testkit", feature = "ndarray")))]
//! # fn main() {}
//! ```

#[cfg(feature = "tokio")]
mod asynchronous;
mod command;
mod delivery;
mod replies;
mod request;
mod retry;
mod scan;
mod step;
mod sync;
#[cfg(feature = "tracing")]
pub(crate) mod trace;

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncConnection, run_async};
pub use command::Command;
pub use delivery::{Delivered, Delivery, Interrupted};
pub(crate) use delivery::{Sequential, is_connection_failure};
pub use replies::Replies;
pub(crate) use replies::{describe, reply_bytes, reply_ok};
pub(crate) use request::ReplyCheck;
pub use request::{Request, Requests};
pub(crate) use retry::Attempts;
pub use retry::{DEFAULT_MAX_RETRIES, RetryPolicy};
pub use scan::{DEFAULT_SCAN_COUNT, Scan, ScanPage};
pub use step::{Compute, Continuation, ContinuationAll, OFFLOAD_THRESHOLD, Step};
pub use sync::{SyncConnection, run};

pub use crate::resp::Packed;
#[cfg(feature = "ndarray")]
pub(crate) use crate::resp::push_header;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use redis::Value;

    use super::*;
    use crate::resp::encode::tests::packed;

    #[test]
    fn packed_commands_in_requests() {
        let mut req = Request::new(Some("k"));
        req.push(redis::cmd("MULTI"));
        req.push(packed());
        assert_eq!(req.len(), 4);
        assert_eq!(req.commands().len(), 2);
        assert!(matches!(req.packed(), Cow::Owned(_)));
        let p = req.clone().into_pipeline().unwrap();
        assert_eq!(p.len(), 4);
        let single = Request::single(packed(), None);
        assert_eq!(single.reply_window(), (0, 3));
        // One packed command is sent as it is.
        assert!(matches!(single.packed(), Cow::Borrowed(b) if b == packed().as_bytes()));
        assert_eq!(single.clone().atomic().reply_window(), (4, 1));
        // Several packed commands are not one command.
        assert!(Command::Packed(packed()).into_cmd().is_err());
        let mut one = Packed::with_capacity(0);
        one.command(1);
        one.arg(b"PING");
        let c = Command::from(one).into_cmd().unwrap();
        assert_eq!(
            c.get_packed_command(),
            redis::cmd("PING").get_packed_command()
        );
    }

    #[test]
    fn requests_are_built_lazily() {
        let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&built);
        let mut reqs = Requests::new((0..3).map(move |i| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Request::single(redis::cmd("PING"), Some(&i.to_string()))
        }));
        assert_eq!(reqs.len(), 3);
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(
            reqs.next().and_then(|r| r.key().map(str::to_owned)),
            Some("0".into())
        );
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(reqs.len(), 2);
        let step: Step<'static, usize> = Step::SendAll(
            reqs,
            Box::new(|r| Ok(Step::Done(r.map_err(Interrupted::into_error)?.len()))),
        );
        let step = step.map(|n| n + 1).narrow();
        let Step::SendAll(reqs, k) = step else {
            panic!("not a SendAll")
        };
        let replies: Vec<Vec<Value>> = reqs.map(|r| vec![Value::Okay; r.len()]).collect();
        assert!(matches!(k(Ok(replies)).unwrap(), Step::Done(3)));
    }
}
