//! Steps: an operation as a request plus the continuation that parses its replies.

use super::{Delivered, Replies, Request, Requests};
use crate::error::{Error, Result};

/// What parses the replies of a [`Step::Send`]: it reads them with a [`Replies`] cursor
/// and returns the next step.
pub type Continuation<'a, T> = Box<dyn FnOnce(Replies) -> Result<Step<'a, T>> + Send + 'a>;

/// What a continuation of several independent requests returns.
pub type ContinuationAll<'a, T> = Box<dyn FnOnce(Delivered) -> Result<Step<'a, T>> + Send + 'a>;

/// One step of an operation: done, or a request to send and what to do with its replies.
/// `'a` is the lifetime of memory the requests borrow (e.g. the array being written).
pub enum Step<'a, T> {
    /// The operation has its result.
    Done(T),
    /// Send this request, then feed its replies to the continuation.
    Send(Request<'a>, Continuation<'a, T>),
    /// Send these requests, which do not depend on each other's replies, then feed the
    /// replies of each to the continuation. Connections may send them all before reading
    /// any reply (pipelining across requests, so the server never waits for the client),
    /// each as soon as it is built. When a request is refused as a whole or the
    /// connection fails part-way, the continuation gets an [`Interrupted`](super::Interrupted) that says
    /// what became of each request (answered, in flight, never sent), so that a bulk
    /// write can report exactly what was stored.
    SendAll(Requests<'a>, ContinuationAll<'a, T>),
    /// The operation failed without sending anything more (what
    /// [`and_then`](Self::and_then) makes of a continuation that fails at once).
    Failed(Error),
}

impl<T> std::fmt::Debug for Step<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Done(_) => f.write_str("Step::Done"),
            Step::Send(r, _) => f.debug_tuple("Step::Send").field(r).finish(),
            Step::SendAll(r, _) => f.debug_tuple("Step::SendAll").field(r).finish(),
            Step::Failed(e) => f.debug_tuple("Step::Failed").field(e).finish(),
        }
    }
}

impl<'a, T: Send + 'a> Step<'a, T> {
    /// A step that sends `req` and parses the replies with `parse` (one reply per
    /// command, read in order; see [`Replies`]).
    pub fn send(
        req: Request<'a>,
        parse: impl FnOnce(Replies) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::Send(req, Box::new(parse))
    }

    /// A step that sends `req` alone and gives `parse` what became of it ([`Delivered`]):
    /// its replies, or, when the connection failed or the request was refused as a whole,
    /// whether it was in flight or not sent. For writes that account for every item.
    pub fn send_tracked(
        req: Request<'a>,
        parse: impl FnOnce(Delivered) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::SendAll(Requests::from(vec![req]), Box::new(parse))
    }

    /// Continue with `f` once this step has its result. When the result is already
    /// there, `f` runs now, and its error is a [`Step::Failed`].
    pub fn and_then<U: Send + 'a>(
        self,
        f: impl FnOnce(T) -> Result<Step<'a, U>> + Send + 'a,
    ) -> Step<'a, U> {
        match self {
            Step::Done(v) => f(v).unwrap_or_else(Step::Failed),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.and_then(f)))),
            Step::SendAll(reqs, k) => Step::SendAll(reqs, Box::new(move |r| Ok(k(r)?.and_then(f)))),
            Step::Failed(e) => Step::Failed(e),
        }
    }

    /// Map the final result with `f`, which may fail.
    pub fn try_map<U: Send + 'a>(self, f: impl FnOnce(T) -> Result<U> + Send + 'a) -> Step<'a, U> {
        self.and_then(move |v| f(v).map(Step::Done))
    }

    /// The same step, seen as borrowing for a shorter lifetime (a `Step<'static, T>`
    /// where a `Step<'a, T>` is expected).
    pub fn narrow<'b>(self) -> Step<'b, T>
    where
        'a: 'b,
        T: 'b,
    {
        match self {
            Step::Done(v) => Step::Done(v),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.narrow()))),
            Step::SendAll(reqs, k) => Step::SendAll(
                // Not an identity: each request is coerced to the shorter lifetime (the
                // iterator's item type itself cannot be).
                #[allow(clippy::map_identity)]
                Requests::new(reqs.map(|r| -> Request<'b> { r })),
                Box::new(move |r| Ok(k(r)?.narrow())),
            ),
            Step::Failed(e) => Step::Failed(e),
        }
    }

    /// Map the error of this and any later step's parse of its replies (a request a
    /// connection fails to send on a [`Step::Send`] is returned by the connection as
    /// it is; a [`Step::SendAll`]'s continuation sees what became of its requests).
    pub fn map_err(self, f: impl FnOnce(Error) -> Error + Clone + Send + 'a) -> Step<'a, T> {
        match self {
            Step::Done(v) => Step::Done(v),
            Step::Send(req, k) => Step::Send(
                req,
                Box::new(move |r| {
                    let later = f.clone();
                    k(r).map(|s| s.map_err(later)).map_err(f)
                }),
            ),
            Step::SendAll(reqs, k) => Step::SendAll(
                reqs,
                Box::new(move |r| {
                    let later = f.clone();
                    k(r).map(|s| s.map_err(later)).map_err(f)
                }),
            ),
            Step::Failed(e) => Step::Failed(f(e)),
        }
    }

    /// Map the final result.
    pub fn map<U: Send + 'a>(self, f: impl FnOnce(T) -> U + Send + 'a) -> Step<'a, U> {
        match self {
            Step::Done(v) => Step::Done(f(v)),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.map(f)))),
            Step::SendAll(reqs, k) => Step::SendAll(reqs, Box::new(move |r| Ok(k(r)?.map(f)))),
            Step::Failed(e) => Step::Failed(e),
        }
    }

    /// A step that sends `req` and maps its replies (see [`Replies`]) to the final
    /// result.
    pub fn then(req: Request<'a>, parse: impl FnOnce(Replies) -> Result<T> + Send + 'a) -> Self {
        Step::Send(req, Box::new(move |v| parse(v).map(Step::Done)))
    }
}
