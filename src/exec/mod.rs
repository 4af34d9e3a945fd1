//! Running plans on connections.
//!
//! Every store operation is written once, as a pure function that returns a [`Step`]: a
//! [`Request`] (a pipeline of commands) plus a pure continuation that parses the replies
//! into either the result or the next request. This module holds the only code that
//! talks to connections: [`run`] drives a step on any [`SyncConnection`] (every
//! `redis::ConnectionLike`, e.g. `redis::Connection`, and redstash's
//! [`DirectConnection`](crate::direct::DirectConnection)), and `run_async` (feature
//! `tokio`) on any [`AsyncConnection`] (every `redis::aio::ConnectionLike`, e.g.
//! `MultiplexedConnection` and `ConnectionManager`).

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
pub use command::{Command, Packed};
pub(crate) use command::{push_header, walk_packed};
pub use delivery::{Delivered, Delivery, Interrupted};
pub(crate) use delivery::{Pipelined, Sequential};
pub use replies::Replies;
pub(crate) use replies::{describe, reply_bytes, reply_ok};
pub(crate) use request::ReplyCheck;
pub use request::{Request, Requests};
pub use scan::{DEFAULT_SCAN_COUNT, Scan, ScanPage};
pub use step::{Continuation, ContinuationAll, Step};
pub use sync::{SyncConnection, run};

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use redis::{Cmd, Value};

    use super::*;

    fn cmds() -> Vec<Cmd> {
        let mut set = redis::cmd("SET");
        set.arg("k:1")
            .arg(&[0u8, 13, 10, 255][..])
            .arg("PX")
            .arg(60_000);
        let mut get = redis::cmd("GET");
        get.arg("");
        vec![set, get, redis::cmd("PING")]
    }

    fn packed() -> Packed {
        let mut p = Packed::with_capacity(16);
        p.command(5);
        p.arg(b"SET");
        p.arg_pieces(&[b"k:", b"1"]);
        p.arg(&[0u8, 13, 10, 255]);
        p.raw(b"$2\r\nPX\r\n", 0);
        p.arg(b"60000");
        p.raw(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", 1);
        p.command(1);
        p.arg(b"PING");
        p
    }

    #[test]
    fn packed_commands_are_redis_rs_packing() {
        let p = packed();
        let want: Vec<u8> = cmds().iter().flat_map(|c| c.get_packed_command()).collect();
        assert_eq!(p.as_bytes(), &want[..]);
        assert_eq!(p.count(), 3);
        let back: Vec<Vec<u8>> = p
            .to_cmds()
            .unwrap()
            .iter()
            .map(|c| c.get_packed_command())
            .collect();
        let want: Vec<Vec<u8>> = cmds().iter().map(|c| c.get_packed_command()).collect();
        assert_eq!(back, want);
        let mut buf = Vec::new();
        push_header(&mut buf, b'$', 0);
        push_header(&mut buf, b'*', 1234567890);
        assert_eq!(buf, b"$0\r\n*1234567890\r\n");
    }

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
    fn malformed_packed_commands_are_errors() {
        for (bytes, count) in [
            (&b"*1\r\n$4\r\nPIN"[..], 1),
            (b"*1\r\n$x\r\nPING\r\n", 1),
            (b"*1\r\n$4\r\nPINGxx", 1),
            (b"+OK\r\n", 1),
            (b"*1\r\n$4\r\nPING\r\n", 2),
        ] {
            let p = Packed {
                resp: bytes.to_vec(),
                count,
            };
            assert!(p.to_cmds().is_err(), "{bytes:?}");
        }
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
