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

/// The windows of requests a cluster connection runs one after the other: answered, cut
/// short (each request by what became of the units it was split into), or not sent.
pub(super) struct Windows<'a> {
    reqs: Requests<'a>,
    answered: Vec<Vec<Value>>,
}

impl<'a> Windows<'a> {
    pub(super) fn new(reqs: Requests<'a>) -> Self {
        Windows {
            answered: Vec::with_capacity(reqs.len()),
            reqs,
        }
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
        result: std::result::Result<Vec<Vec<Value>>, Box<Cut>>,
    ) -> std::result::Result<(), Box<Interrupted>> {
        match result {
            Ok(replies) => {
                self.answered.extend(replies);
                Ok(())
            }
            Err(cut) => {
                let Cut { error, deliveries } = *cut;
                let mut requests: Vec<Delivery> = std::mem::take(&mut self.answered)
                    .into_iter()
                    .map(Delivery::Answered)
                    .collect();
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

    pub(super) fn finish(self) -> Delivered {
        Ok(self.answered)
    }
}
