//! Pipelining the requests of a `SendAll` on a direct connection (sans-IO): each request
//! is written as soon as it is built (building the next one overlaps with the server's
//! work on those already written), the replies are read in order, the oldest ones while
//! newer ones are written once a window of requests is in flight. After a failed write,
//! the replies of the requests written before it are still read (each is an
//! acknowledgement). [`PipelinedRun`] holds that logic; the sync and tokio connections
//! only do what it asks ([`Next`]).

use redis::{RedisResult, Value};

use crate::error::Error;
use crate::exec::{
    Delivered, Delivery, Interrupted, ReplyCheck, Request, Requests, is_connection_failure,
};

/// What the connection must do next for a [`PipelinedRun`].
pub(crate) enum Next<'a> {
    /// Write this request, then report with [`PipelinedRun::written`].
    Write(Request<'a>),
    /// Read this many raw replies (those of the oldest request not read yet) with
    /// `recv_into`, then report with [`PipelinedRun::read`].
    Read(usize),
    /// Every request is accounted for: [`PipelinedRun::finish`].
    Done,
}

/// The requests of a `SendAll` being pipelined on a direct connection.
pub(crate) struct PipelinedRun<'a> {
    reqs: Requests<'a>,
    p: Pipelined,
    /// No request is written any more (all were, or a write or read failed): the
    /// replies owed are read, then the run is done.
    draining: bool,
}

impl<'a> PipelinedRun<'a> {
    /// Start a run; `begin` is the connection's check that it may take a call (when it
    /// fails, no request is sent).
    pub(crate) fn start(
        reqs: Requests<'a>,
        begin: RedisResult<()>,
    ) -> std::result::Result<Self, Box<Interrupted>> {
        if let Err(e) = begin {
            return Err(Interrupted::none_sent(reqs.len(), e.into()));
        }
        Ok(PipelinedRun {
            p: Pipelined::with_capacity(reqs.len()),
            reqs,
            draining: false,
        })
    }

    /// What to do next.
    pub(crate) fn next(&mut self) -> Next<'a> {
        if !self.draining {
            if self.p.over_window()
                && let Some(n) = self.p.next_unread()
            {
                return Next::Read(n);
            }
            match self.reqs.next() {
                Some(r) => return Next::Write(r),
                None => self.draining = true,
            }
        }
        match self.p.next_unread() {
            Some(n) => Next::Read(n),
            None => Next::Done,
        }
    }

    /// The write of `req` ended with `result` (its raw reply count): `bytes` were handed
    /// to the socket, and on failure `write_started` says whether any was.
    pub(crate) fn written(
        &mut self,
        req: &Request<'_>,
        result: RedisResult<usize>,
        bytes: u64,
        write_started: bool,
    ) {
        match result {
            Ok(raw) => self.p.sent(req.shell(), raw, bytes),
            Err(e) => {
                if write_started {
                    self.p.cut = Some((req.len(), req.error(e)));
                } else {
                    // Refused before any byte was written (e.g. an argument that
                    // cannot be encoded): not sent, nor is anything after it.
                    self.p.not_sent = 1;
                    self.p.stopped = Some(req.error(e));
                }
                self.stop_writing();
            }
        }
    }

    /// The raw replies read for the oldest unread request (all of them, or those read
    /// before `result` failed).
    pub(crate) fn read(&mut self, raw: Vec<Value>, result: RedisResult<()>) {
        if !self.p.read(raw, result) {
            self.stop_writing();
        }
    }

    fn stop_writing(&mut self) {
        if !self.draining {
            self.p.not_sent += self.reqs.len();
            self.draining = true;
        }
    }

    /// What became of every request.
    pub(crate) fn finish(self) -> Delivered {
        self.p.finish()
    }
}

/// Requests a direct connection writes before it reads the replies of the oldest one:
/// enough that the server never waits for the client, few enough that the server's
/// reply buffer and the requests whose outcome is unknown after a failure stay bounded.
const WINDOW_REQUESTS: usize = 256;

/// Bytes of requests in flight past which a direct connection reads the replies of the
/// oldest one before writing more (at least two requests stay in flight).
const WINDOW_BYTES: u64 = 32 << 20;

/// Collects the deliveries of requests pipelined on a direct connection: written in
/// order, their replies read in order, the oldest ones read while newer ones are
/// written once [`WINDOW_REQUESTS`] or [`WINDOW_BYTES`] are in flight.
#[derive(Debug)]
struct Pipelined {
    /// Each request written in full: its reply check, raw reply count and bytes.
    sent: Vec<(ReplyCheck, usize, u64)>,
    /// Raw replies of the first requests of `sent` (the last one partial when
    /// `read_failure` stopped the reading there).
    raw: Vec<Vec<Value>>,
    read_failure: Option<Error>,
    bytes_in_flight: u64,
    /// The request whose write failed part-way (its command count), with the error.
    cut: Option<(usize, Error)>,
    /// Requests never written (after a failed write, or when nothing could be sent).
    not_sent: usize,
    /// The error that stopped the sending before a byte of the next request was
    /// written (e.g. an argument that cannot be encoded).
    stopped: Option<Error>,
}

impl Pipelined {
    fn with_capacity(n: usize) -> Self {
        Pipelined {
            sent: Vec::with_capacity(n),
            raw: Vec::with_capacity(n),
            read_failure: None,
            bytes_in_flight: 0,
            cut: None,
            not_sent: 0,
            stopped: None,
        }
    }

    /// A request was written in full: `replies` raw replies owed, `bytes` written.
    fn sent(&mut self, check: ReplyCheck, replies: usize, bytes: u64) {
        self.sent.push((check, replies, bytes));
        self.bytes_in_flight += bytes;
    }

    /// The raw reply count of the oldest request whose replies are still to be read,
    /// if any (and if no read failed).
    fn next_unread(&self) -> Option<usize> {
        if self.read_failure.is_some() {
            return None;
        }
        self.sent.get(self.raw.len()).map(|(_, n, _)| *n)
    }

    /// Whether the oldest request's replies should be read before writing more.
    fn over_window(&self) -> bool {
        let unread = self.sent.len() - self.raw.len();
        self.read_failure.is_none()
            && (unread > WINDOW_REQUESTS || (unread >= 2 && self.bytes_in_flight > WINDOW_BYTES))
    }

    /// The raw replies read for the oldest unread request (all of them, or those read
    /// before `result` failed). Returns whether reading may go on.
    fn read(&mut self, raw: Vec<Value>, result: redis::RedisResult<()>) -> bool {
        let Some((check, _, bytes)) = self.sent.get(self.raw.len()) else {
            return false;
        };
        self.bytes_in_flight -= bytes;
        if let Err(e) = result {
            self.read_failure = Some(check.error(e));
        }
        self.raw.push(raw);
        self.read_failure.is_none()
    }

    /// What became of every request.
    fn finish(self) -> Delivered {
        let complete = self.cut.is_none() && self.read_failure.is_none() && self.not_sent == 0;
        let mut failure = self.read_failure.or(self.stopped);
        let mut deliveries = Vec::with_capacity(self.sent.len() + 1 + self.not_sent);
        let mut raw = self.raw.into_iter();
        let mut any_refused = false;
        for (check, n, _) in &self.sent {
            let got = raw.next().unwrap_or_default();
            if got.len() == *n {
                match check.finish(got) {
                    Ok(replies) => deliveries.push(Delivery::Answered(replies)),
                    Err(e) if is_connection_failure(&e) => {
                        deliveries.push(Delivery::InFlight(vec![None; check.len]));
                        failure.get_or_insert(e);
                    }
                    Err(e) => {
                        any_refused = true;
                        deliveries.push(Delivery::Refused(e));
                    }
                }
            } else {
                deliveries.push(Delivery::InFlight(partial(check, got)));
            }
        }
        if let Some((commands, e)) = self.cut {
            deliveries.push(Delivery::InFlight(vec![None; commands]));
            // The write failure came first: it is what broke the connection.
            failure = Some(e);
        }
        deliveries.extend((0..self.not_sent).map(|_| Delivery::NotSent));
        if complete && !any_refused && failure.is_none() {
            return Ok(deliveries
                .into_iter()
                .map(|d| match d {
                    Delivery::Answered(r) => r,
                    _ => Vec::new(),
                })
                .collect());
        }
        Err(Box::new(Interrupted {
            requests: deliveries,
            failure,
        }))
    }
}

/// The replies per command of a request whose raw replies were cut short after `raw`
/// (none for a transaction: its `MULTI` and `QUEUED`s acknowledge nothing).
fn partial(check: &ReplyCheck, raw: Vec<Value>) -> Vec<Option<Value>> {
    let mut out: Vec<Option<Value>> = Vec::with_capacity(check.len);
    if !check.atomic {
        out.extend(raw.into_iter().take(check.len).map(Some));
    }
    out.resize(check.len, None);
    out
}
