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

#[cfg(feature = "tokio")]
mod asynchronous;
mod command;
mod delivery;
mod replies;
mod request;
mod scan;
mod step;
mod sync;

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncConnection, run_async};
pub use command::Command;
pub use delivery::{Delivered, Delivery, Interrupted};
pub(crate) use delivery::{Sequential, is_connection_failure};
pub use replies::Replies;
pub(crate) use replies::{describe, reply_bytes, reply_ok};
pub(crate) use request::ReplyCheck;
pub use request::{Request, Requests};
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
