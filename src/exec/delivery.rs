//! What became of requests sent together: the replies of each, or, when a request was
//! refused as a whole or the connection failed part-way, exactly which requests (and
//! which of their commands) were answered, which were in flight and which were never
//! sent. Bulk writes turn this into [`Error::PartialWrite`](crate::Error::PartialWrite).

use redis::Value;

use super::ReplyCheck;
use crate::error::{Error, RedisErrorKind, Result};

/// The replies of the requests of a [`Step::SendAll`](super::Step::SendAll): one
/// `Vec<Value>` per request (one reply per command) when every request was answered,
/// else what became of each.
pub type Delivered = std::result::Result<Vec<Vec<Value>>, Box<Interrupted>>;

/// What became of one request of a [`Step::SendAll`](super::Step::SendAll) that did not
/// complete.
#[derive(Debug)]
pub enum Delivery {
    /// Answered: one reply per command (server errors as `Value::ServerError`).
    Answered(Vec<Value>),
    /// Answered with an error for the request as a whole (a transaction refused at
    /// `EXEC`, e.g. `EXECABORT` or a `WATCH` abort): none of its commands ran.
    Refused(Error),
    /// Written (in whole or in part) but not answered in full before the connection
    /// failed: `replies[i]` is the reply to command `i` when it was read. A command
    /// without a reply may or may not have run; a transaction's commands have no reply
    /// until its `EXEC` reply.
    InFlight(Vec<Option<Value>>),
    /// Not a byte of it was written: none of its commands ran.
    NotSent,
}

/// Requests sent together that did not all complete: what became of each, in order,
/// and the failure that cut them short (when the connection failed).
#[derive(Debug)]
pub struct Interrupted {
    /// One entry per request, in the order they were given.
    pub requests: Vec<Delivery>,
    /// The connection failure that left requests in flight or unsent, if there was one
    /// (else some request was [`Refused`](Delivery::Refused)).
    pub failure: Option<Error>,
}

impl Interrupted {
    /// Every one of `n` requests was not sent, because of `failure`.
    pub fn none_sent(n: usize, failure: Error) -> Box<Self> {
        Box::new(Interrupted {
            requests: (0..n).map(|_| Delivery::NotSent).collect(),
            failure: Some(failure),
        })
    }

    /// The error to report when the caller needs only one: the connection failure,
    /// else the first refusal.
    // Boxed: what a `Delivered` holds, so that `map_err(Interrupted::into_error)` works.
    #[allow(clippy::boxed_local)]
    pub fn into_error(self: Box<Self>) -> Error {
        if let Some(e) = self.failure {
            return e;
        }
        self.requests
            .into_iter()
            .find_map(|d| match d {
                Delivery::Refused(e) => Some(e),
                _ => None,
            })
            .unwrap_or_else(|| Error::unexpected("requests interrupted without an error", None))
    }
}

/// Whether an error from a connection means the connection failed (so the request may
/// be in flight), rather than the server refusing the request as a whole.
pub(crate) fn is_connection_failure(e: &Error) -> bool {
    match e {
        Error::Redis { kind, .. } => *kind == RedisErrorKind::Connection,
        // A reply redstash cannot read (a count mismatch, a malformed EXEC reply): the
        // outcome of the request is not known.
        Error::UnexpectedReply { .. } | Error::Io(_) => true,
        _ => false,
    }
}

/// Collects the deliveries of requests run one after the other (a connection that
/// sends a request only once the previous one is answered).
#[derive(Debug, Default)]
pub(crate) struct Sequential {
    answered: Vec<Vec<Value>>,
    interrupted: Option<Vec<Delivery>>,
}

impl Sequential {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Sequential {
            answered: Vec::with_capacity(n),
            interrupted: None,
        }
    }

    /// Record the outcome of the next request. Returns `Err` (with everything) when the
    /// connection failed, so that no later request is sent; `remaining` is the number
    /// of requests after this one.
    pub(crate) fn push(
        &mut self,
        outcome: Result<Vec<Value>>,
        commands: usize,
        remaining: usize,
    ) -> std::result::Result<(), Box<Interrupted>> {
        match outcome {
            Ok(replies) => match &mut self.interrupted {
                Some(d) => d.push(Delivery::Answered(replies)),
                None => self.answered.push(replies),
            },
            Err(e) if is_connection_failure(&e) => {
                let mut requests = self.take_deliveries();
                requests.push(Delivery::InFlight(vec![None; commands]));
                requests.extend((0..remaining).map(|_| Delivery::NotSent));
                return Err(Box::new(Interrupted {
                    requests,
                    failure: Some(e),
                }));
            }
            Err(e) => {
                let mut d = self.take_deliveries();
                d.push(Delivery::Refused(e));
                self.interrupted = Some(d);
            }
        }
        Ok(())
    }

    #[cfg(feature = "tokio")]
    /// The next request could not be prepared (`error`, before anything of it was
    /// sent): it and the `remaining - 1` after it are not sent.
    pub(crate) fn stop(
        &mut self,
        error: Error,
        remaining: usize,
    ) -> std::result::Result<(), Box<Interrupted>> {
        let mut requests = self.take_deliveries();
        requests.extend((0..remaining).map(|_| Delivery::NotSent));
        Err(Box::new(Interrupted {
            requests,
            failure: Some(error),
        }))
    }

    fn take_deliveries(&mut self) -> Vec<Delivery> {
        match self.interrupted.take() {
            Some(d) => d,
            None => std::mem::take(&mut self.answered)
                .into_iter()
                .map(Delivery::Answered)
                .collect(),
        }
    }

    pub(crate) fn finish(self) -> Delivered {
        match self.interrupted {
            None => Ok(self.answered),
            Some(requests) => Err(Box::new(Interrupted {
                requests,
                failure: None,
            })),
        }
    }
}

/// Requests a direct connection writes before it reads the replies of the oldest one:
/// enough that the server never waits for the client, few enough that the server's
/// reply buffer and the requests whose outcome is unknown after a failure stay bounded.
pub(crate) const WINDOW_REQUESTS: usize = 256;

/// Bytes of requests in flight past which a direct connection reads the replies of the
/// oldest one before writing more (at least two requests stay in flight).
pub(crate) const WINDOW_BYTES: u64 = 32 << 20;

/// Collects the deliveries of requests pipelined on a direct connection: written in
/// order, their replies read in order, the oldest ones read while newer ones are
/// written once [`WINDOW_REQUESTS`] or [`WINDOW_BYTES`] are in flight.
#[derive(Debug)]
pub(crate) struct Pipelined {
    /// Each request written in full: its reply check, raw reply count and bytes.
    sent: Vec<(ReplyCheck, usize, u64)>,
    /// Raw replies of the first requests of `sent` (the last one partial when
    /// `read_failure` stopped the reading there).
    raw: Vec<Vec<Value>>,
    read_failure: Option<Error>,
    bytes_in_flight: u64,
    /// The request whose write failed part-way (its command count), with the error.
    pub(crate) cut: Option<(usize, Error)>,
    /// Requests never written (after a failed write, or when nothing could be sent).
    pub(crate) not_sent: usize,
    /// The error that stopped the sending before a byte of the next request was
    /// written (e.g. an argument that cannot be encoded).
    pub(crate) stopped: Option<Error>,
}

impl Pipelined {
    pub(crate) fn with_capacity(n: usize) -> Self {
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
    pub(crate) fn sent(&mut self, check: ReplyCheck, replies: usize, bytes: u64) {
        self.sent.push((check, replies, bytes));
        self.bytes_in_flight += bytes;
    }

    /// The raw reply count of the oldest request whose replies are still to be read,
    /// if any (and if no read failed).
    pub(crate) fn next_unread(&self) -> Option<usize> {
        if self.read_failure.is_some() {
            return None;
        }
        self.sent.get(self.raw.len()).map(|(_, n, _)| *n)
    }

    /// Whether the oldest request's replies should be read before writing more.
    pub(crate) fn over_window(&self) -> bool {
        let unread = self.sent.len() - self.raw.len();
        self.read_failure.is_none()
            && (unread > WINDOW_REQUESTS || (unread >= 2 && self.bytes_in_flight > WINDOW_BYTES))
    }

    /// The raw replies read for the oldest unread request (all of them, or those read
    /// before `result` failed). Returns whether reading may go on.
    pub(crate) fn read(&mut self, raw: Vec<Value>, result: redis::RedisResult<()>) -> bool {
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
    pub(crate) fn finish(self) -> Delivered {
        let complete = self.cut.is_none() && self.read_failure.is_none() && self.not_sent == 0;
        let mut failure = self.read_failure.or(self.stopped);
        let mut deliveries = Vec::with_capacity(self.sent.len() + 1 + self.not_sent);
        let mut raw = self.raw.into_iter();
        let mut any_refused = false;
        for (check, n, _) in &self.sent {
            let got = raw.next().unwrap_or_default();
            if got.len() == *n {
                match check.finish_raw(got) {
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
                deliveries.push(Delivery::InFlight(check.partial(got)));
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

impl ReplyCheck {
    /// The replies per command of a request whose raw replies were cut short after
    /// `raw` (none for a transaction: its `MULTI` and `QUEUED`s acknowledge nothing).
    fn partial(&self, raw: Vec<Value>) -> Vec<Option<Value>> {
        let mut out: Vec<Option<Value>> = Vec::with_capacity(self.len);
        if !self.atomic {
            out.extend(raw.into_iter().take(self.len).map(Some));
        }
        out.resize(self.len, None);
        out
    }
}
