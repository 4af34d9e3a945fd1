//! What became of requests sent together: the replies of each, or, when a request was
//! refused as a whole or the connection failed part-way, exactly which requests (and
//! which of their commands) were answered, which were in flight and which were never
//! sent. Bulk writes turn this into [`Error::PartialWrite`](crate::Error::PartialWrite).

use redis::Value;

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
    /// The connection failure that left requests in flight or unsent, if there was one,
    /// or the error of writes that ran but were not proven replicated (a cluster
    /// connection's `with_wait`: those requests are in flight); else some request was
    /// [`Refused`](Delivery::Refused).
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
        Error::Redis { kind, .. } => {
            matches!(kind, RedisErrorKind::Connection | RedisErrorKind::Timeout)
        }
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
