//! Running plans on synchronous connections.

use redis::Value;

use super::{Delivered, Interrupted, Pipelined, Replies, Request, Requests, Sequential, Step};
use crate::error::Result;

/// A synchronous connection redstash can run requests on.
pub trait SyncConnection {
    /// Send the request and return one reply per command (server errors as
    /// `Value::ServerError` elements).
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>>;

    /// Send independent requests and return the replies of each, or what became of
    /// each when they did not all complete ([`Interrupted`]). The default sends them
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

impl SyncConnection for crate::direct::DirectConnection {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        // The direct connection unwraps a transaction's EXEC reply itself.
        let replies = self.exec(&req.cmds, req.atomic).map_err(|e| req.error(e))?;
        req.shell().check_len(replies)
    }

    /// Writes each request as soon as it is built (building the next one overlaps with
    /// the server's work on those already written) and reads the replies in order, the
    /// oldest ones while newer ones are written once a window of requests is in flight.
    /// After a failed write, the replies of the requests written before it are still
    /// read (each is an acknowledgement).
    fn run_requests(&mut self, mut reqs: Requests<'_>) -> Delivered {
        if let Err(e) = self.begin() {
            return Err(Interrupted::none_sent(reqs.len(), e.into()));
        }
        let mut p = Pipelined::with_capacity(reqs.len());
        'send: while let Some(r) = reqs.next() {
            let before = self.bytes_sent();
            match self.send(&r.cmds, r.atomic) {
                Ok(raw) => p.sent(r.shell(), raw, self.bytes_sent() - before),
                Err(e) => {
                    if self.write_started() {
                        p.cut = Some((r.len(), r.error(e)));
                    } else {
                        // Refused before any byte was written (e.g. an argument that
                        // cannot be encoded): not sent, nor is anything after it.
                        p.not_sent = 1;
                        p.stopped = Some(r.error(e));
                    }
                    p.not_sent += reqs.len();
                    break;
                }
            }
            while p.over_window() {
                if !self.read_oldest(&mut p) {
                    p.not_sent += reqs.len();
                    break 'send;
                }
            }
        }
        while self.read_oldest(&mut p) {}
        p.finish()
    }
}

impl crate::direct::DirectConnection {
    /// Read the replies of the oldest request of `p` not read yet; whether reading may
    /// go on (there was one, and no read failed).
    fn read_oldest(&mut self, p: &mut Pipelined) -> bool {
        let Some(n) = p.next_unread() else {
            return false;
        };
        let mut raw = Vec::with_capacity(n);
        let result = self.recv_into(n, &mut raw);
        p.read(raw, result)
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
        }
    }
}
