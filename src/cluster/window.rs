//! The requests of a `SendAll` on a cluster, run a window at a time (sans-IO): each
//! window is planned and driven as one, so memory stays bounded for bulk writes; what
//! became of every request is collected across windows.

use redis::Value;

use crate::error::Error;
use crate::exec::{Delivered, Delivery, Interrupted, Request, Requests};

/// Requests of a [`Step::SendAll`](crate::exec::Step::SendAll) executed together (at
/// most this many commands, and at least one request).
const WINDOW_COMMANDS: usize = 20_000;

/// A window of requests that failed: the error, and what became of each request
/// (`None`: nothing was sent).
pub(super) struct Cut {
    pub(super) error: Error,
    pub(super) deliveries: Option<Vec<Delivery>>,
}

impl Cut {
    /// Nothing of the window was sent, because of `error`.
    pub(super) fn nothing_sent(error: Error) -> Box<Self> {
        Box::new(Cut {
            error,
            deliveries: None,
        })
    }
}

/// The requests of a plan run to the end: the replies of each, the transactions
/// refused as a whole (request index, why; their replies are empty), and the requests
/// whose writes fewer replicas acknowledged than `WAIT` asked (request index, why).
pub(super) struct Answers {
    pub(super) replies: Vec<Vec<Value>>,
    pub(super) refused: Vec<(usize, Error)>,
    pub(super) unreplicated: Vec<(usize, Error)>,
}

impl Answers {
    /// The replies of every request, or the first refusal, or the first request not
    /// proven replicated.
    pub(super) fn into_replies(mut self) -> crate::error::Result<Vec<Vec<Value>>> {
        if !self.refused.is_empty() {
            return Err(self.refused.swap_remove(0).1);
        }
        if !self.unreplicated.is_empty() {
            return Err(self.unreplicated.swap_remove(0).1);
        }
        Ok(self.replies)
    }
}

/// The windows of requests a cluster connection runs one after the other: answered,
/// refused as a whole, cut short (each request by what became of the units it was split
/// into), or not sent.
pub(super) struct Windows<'a> {
    reqs: Requests<'a>,
    answered: Vec<Vec<Value>>,
    /// Requests refused as a whole so far (index among all requests, why).
    refused: Vec<(usize, Error)>,
    /// Requests not proven replicated so far (index among all requests, why): in
    /// flight, since their writes ran on a primary that may fail before a replica has
    /// them.
    unreplicated: Vec<(usize, Error)>,
}

impl<'a> Windows<'a> {
    pub(super) fn new(reqs: Requests<'a>) -> Self {
        Windows {
            answered: Vec::with_capacity(reqs.len()),
            refused: Vec::new(),
            unreplicated: Vec::new(),
            reqs,
        }
    }

    /// What became of the requests answered so far: answered, refused, or in flight
    /// (not proven replicated); and the first of the latter's errors.
    fn deliveries_so_far(&mut self) -> (Vec<Delivery>, Option<Error>) {
        let mut requests: Vec<Delivery> = std::mem::take(&mut self.answered)
            .into_iter()
            .map(Delivery::Answered)
            .collect();
        for (i, e) in std::mem::take(&mut self.refused) {
            if let Some(d) = requests.get_mut(i) {
                *d = Delivery::Refused(e);
            }
        }
        let mut first = None;
        for (i, e) in std::mem::take(&mut self.unreplicated) {
            if let Some(d) = requests.get_mut(i) {
                let n = match d {
                    Delivery::Answered(r) => r.len(),
                    _ => continue,
                };
                *d = Delivery::InFlight(vec![None; n]);
                first.get_or_insert(e);
            }
        }
        (requests, first)
    }

    /// The next window: requests (built now) up to [`WINDOW_COMMANDS`] commands.
    pub(super) fn next_window(&mut self) -> Option<Vec<Request<'a>>> {
        let mut window = Vec::new();
        let mut commands = 0;
        while commands < WINDOW_COMMANDS {
            let Some(r) = self.reqs.next() else { break };
            commands += r.len();
            window.push(r);
        }
        (!window.is_empty()).then_some(window)
    }

    /// Record a window's result; `Err` stops the run: the window's requests are in
    /// flight (as the cut says) or not sent, and those after it are not sent.
    pub(super) fn record(
        &mut self,
        window: &[Request<'_>],
        result: std::result::Result<Answers, Box<Cut>>,
    ) -> std::result::Result<(), Box<Interrupted>> {
        match result {
            Ok(Answers {
                replies,
                refused,
                unreplicated,
            }) => {
                let base = self.answered.len();
                self.refused
                    .extend(refused.into_iter().map(|(i, e)| (base + i, e)));
                self.unreplicated
                    .extend(unreplicated.into_iter().map(|(i, e)| (base + i, e)));
                self.answered.extend(replies);
                Ok(())
            }
            Err(cut) => {
                let Cut { error, deliveries } = *cut;
                let (mut requests, _) = self.deliveries_so_far();
                match deliveries {
                    Some(d) if d.len() == window.len() => requests.extend(d),
                    Some(_) => requests.extend(
                        window
                            .iter()
                            .map(|r| Delivery::InFlight(vec![None; r.len()])),
                    ),
                    None => requests.extend(window.iter().map(|_| Delivery::NotSent)),
                }
                requests.extend((0..self.reqs.len()).map(|_| Delivery::NotSent));
                Err(Box::new(Interrupted {
                    requests,
                    failure: Some(error),
                }))
            }
        }
    }

    /// Every request answered, or (when some were refused as a whole or not proven
    /// replicated) what became of each; the failure is then the first
    /// [`NotReplicated`](crate::RedisErrorKind::NotReplicated) error, if any.
    pub(super) fn finish(mut self) -> Delivered {
        if self.refused.is_empty() && self.unreplicated.is_empty() {
            return Ok(self.answered);
        }
        let (requests, failure) = self.deliveries_so_far();
        Err(Box::new(Interrupted { requests, failure }))
    }
}
