//! One round of a plan (sans-IO): the pending units grouped by node and written as
//! batches, the replies of each node taken back (redirected units scheduled again), and
//! the rounds until every unit is answered, with what to do between them.

use std::time::Duration;

use redis::Value;

use super::plan::{Part, Plan, Sink, UnitState};
use super::router::{Router, wait_cmd};
use super::window::{Answers, Cut};
use crate::error::{Error, RedisErrorKind, Result};
use crate::exec::{Command, Request};
use crate::resp::transaction::expected_replies;
use crate::resp::{Frame, Framer};

/// The `ASKING` command sent before a command redirected with `ASK`.
fn asking_cmd() -> redis::Cmd {
    redis::cmd("ASKING")
}

/// The units bound for one node as batches to write: non-atomic units together as one
/// pipeline, each transaction as its own `MULTI`/`EXEC` batch (`true`).
fn batches<'r>(
    plan: &'r Plan,
    reqs: &'r [Request<'r>],
    units: &[usize],
    asking: &'r redis::Cmd,
) -> Result<Vec<(Vec<Outgoing<'r>>, bool)>> {
    let mut out: Vec<(Vec<Outgoing<'r>>, bool)> = vec![(Vec::new(), false)];
    for &u in units {
        let unit = &plan.units[u];
        if unit.asking.is_some() {
            if out.last().is_none_or(|b| b.1) {
                out.push((Vec::new(), false));
            }
            if let Some(b) = out.last_mut() {
                b.0.push(Outgoing::Cmd(asking));
            }
        }
        if let Sink::Transaction { req } = unit.sink {
            let cmds = reqs[req].commands().iter().map(Outgoing::Command).collect();
            out.push((cmds, true));
            continue;
        }
        if out.last().is_none_or(|b| b.1) {
            out.push((Vec::new(), false));
        }
        let Some((frames, _)) = out.last_mut() else {
            continue;
        };
        for part in &plan.parts[unit.parts.clone()] {
            frames.push(match part {
                Part::Whole { req, cmd } => Outgoing::Command(&reqs[*req].commands()[*cmd]),
                Part::Raw { req, cmd, range } => match &reqs[*req].commands()[*cmd] {
                    Command::Packed(p) => Outgoing::Raw(&p.as_bytes()[range.clone()]),
                    _ => {
                        return Err(Error::unexpected(
                            "routed bytes of an unpacked command",
                            None,
                        ));
                    }
                },
                Part::Owned(i) => Outgoing::Cmd(&plan.owned[*i]),
            });
        }
    }
    out.retain(|b| !b.0.is_empty());
    Ok(out)
}

/// Deliver the raw replies one node gave to `units` (in the order they were sent), or
/// schedule the redirected ones again.
fn absorb(
    plan: &mut Plan,
    reqs: &[Request<'_>],
    units: &[usize],
    raw: Vec<Value>,
    outcome: &mut Outcome,
    out: &mut [Vec<Value>],
    wrote: &mut Vec<usize>,
) -> Result<()> {
    let mut it = raw.into_iter();
    for &u in units {
        let unit = &plan.units[u];
        if unit.asking.is_some() {
            it.next();
        }
        let n = match unit.sink {
            Sink::Transaction { req } => expected_replies(reqs[req].len(), true),
            _ => unit.parts.len(),
        };
        let replies: Vec<Value> = it.by_ref().take(n).collect();
        if let Some(redirect) = redirection(&replies) {
            let unit = &mut plan.units[u];
            match redirect {
                Redirect::Moved(e, to) => {
                    unit.asking = None;
                    outcome.refresh = true;
                    outcome.last = Some(e);
                    outcome.moved.extend(to);
                }
                Redirect::Ask(addr, e) => {
                    unit.asking = Some(addr);
                    outcome.last = Some(e);
                }
                Redirect::Wait(e) => {
                    unit.asking = None;
                    outcome.pause = true;
                    outcome.refresh = true;
                    outcome.last = Some(e);
                }
            }
            // Redirected: not executed; sent again in a later round.
            plan.states[u] = UnitState::NotSent;
            outcome.retry.push(u);
            continue;
        }
        let sink = unit.sink;
        let replies = match sink {
            Sink::Transaction { req } => match reqs[req].finish(replies) {
                Ok(replies) => replies,
                Err(e) => {
                    // Refused as a whole (EXECABORT, a WATCH abort...): none of its
                    // commands ran; the other requests go on.
                    plan.refused.push((req, e));
                    plan.states[u] = UnitState::Answered;
                    continue;
                }
            },
            _ => replies,
        };
        // A unit that may write and was not refused command by command: its writes
        // ran (what `WAIT` is about).
        if !unit.read_only && !replies.iter().all(|v| matches!(v, Value::ServerError(_))) {
            wrote.push(u);
        }
        plan.deliver(sink, replies, out)?;
        plan.states[u] = UnitState::Answered;
    }
    Ok(())
}

/// One round: the pending units grouped by the node they go to, then the replies of
/// each node taken back.
pub(super) struct Round {
    /// Per node: its address and the units bound for it.
    by_node: Vec<(String, Vec<usize>)>,
    asking: redis::Cmd,
    /// `WAIT` after the writes, when the connection asks for it: the command, the
    /// replicas wanted and the timeout.
    wait: Option<(redis::Cmd, u32, Duration)>,
    /// Per node: whether `WAIT` follows its units.
    waited: Vec<bool>,
    outcome: Outcome,
    failed: Option<Error>,
}

impl Round {
    /// Group the `pending` units of `plan` by node.
    pub(super) fn start(router: &Router, plan: &Plan, pending: &[usize]) -> Result<Self> {
        let by_node = router.group(plan, pending)?;
        let wait = router.wait.map(|(n, t)| (wait_cmd(n, t), n, t));
        let waited = by_node
            .iter()
            .map(|(_, units)| wait.is_some() && units.iter().any(|&u| !plan.units[u].read_only))
            .collect();
        Ok(Round {
            by_node,
            asking: asking_cmd(),
            wait,
            waited,
            outcome: Outcome::default(),
            failed: None,
        })
    }

    /// Number of nodes the round writes to.
    pub(super) fn nodes(&self) -> usize {
        self.by_node.len()
    }

    /// The address of node `i` of the round.
    pub(super) fn address(&self, i: usize) -> &str {
        &self.by_node[i].0
    }

    /// What to write to node `i`: its units as batches (see [`batches`]), then `WAIT`
    /// when they may write and the connection asks for it.
    pub(super) fn batches<'r>(
        &'r self,
        plan: &'r Plan,
        reqs: &'r [Request<'r>],
        i: usize,
    ) -> Result<Vec<(Vec<Outgoing<'r>>, bool)>> {
        let mut out = batches(plan, reqs, &self.by_node[i].1, &self.asking)?;
        if let (Some((wait, ..)), true) = (&self.wait, self.waited[i]) {
            match out.last_mut() {
                Some((frames, false)) => frames.push(Outgoing::Cmd(wait)),
                _ => out.push((vec![Outgoing::Cmd(wait)], false)),
            }
        }
        Ok(out)
    }

    /// The write to node `i` started (`writing`): its units may run from now on.
    pub(super) fn written(&self, plan: &mut Plan, i: usize, writing: bool) {
        if writing {
            for &u in &self.by_node[i].1 {
                plan.states[u] = UnitState::Sent;
            }
        }
    }

    /// Take one node's raw replies, or the error writing to or reading from it. Returns
    /// `false` when the node's connection must be dropped (and the slot map read
    /// again). After a connection failure, the node's units are scheduled again when
    /// every one of them may be (not written yet, only reads, or of an idempotent
    /// request: see [`RetryPolicy`](crate::exec::RetryPolicy)); otherwise the round fails, since writes may have run.
    pub(super) fn replied(
        &mut self,
        router: &mut Router,
        plan: &mut Plan,
        reqs: &[Request<'_>],
        i: usize,
        raw: Result<Vec<Value>>,
        out: &mut [Vec<Value>],
    ) -> Result<bool> {
        let units = &self.by_node[i].1;
        match raw {
            Ok(mut raw) => {
                let wait = match (&self.wait, self.waited[i]) {
                    (Some((_, wanted, timeout)), true) => Some((raw.pop(), *wanted, *timeout)),
                    _ => None,
                };
                let mut wrote = Vec::new();
                absorb(plan, reqs, units, raw, &mut self.outcome, out, &mut wrote)?;
                if let Some((reply, wanted, timeout)) = wait
                    && !wrote.is_empty()
                {
                    let acked = match &reply {
                        Some(Value::Int(n)) => *n,
                        _ => 0,
                    };
                    if acked < i64::from(wanted) {
                        for u in wrote {
                            if let Some(r) = plan.request_of(u)
                                && !plan.unreplicated.iter().any(|(q, _)| *q == r)
                            {
                                let key = reqs.get(r).and_then(Request::key);
                                let e = not_replicated(acked, wanted, timeout, &reply, key);
                                plan.unreplicated.push((r, e));
                            }
                        }
                    }
                }
                Ok(true)
            }
            Err(e) => {
                router.failed(&self.by_node[i].0);
                let again = e.redis_kind() == Some(RedisErrorKind::Connection)
                    && units
                        .iter()
                        .all(|&u| plan.states[u] == UnitState::NotSent || plan.may_resend(u));
                if again {
                    for &u in units {
                        if plan.states[u] == UnitState::Sent {
                            plan.maybe_ran[u] = true;
                        }
                        plan.states[u] = UnitState::NotSent;
                        plan.units[u].asking = None;
                        self.outcome.retry.push(u);
                    }
                    self.outcome.pause = true;
                    self.outcome.refresh = true;
                    self.outcome.last = Some(e);
                } else {
                    self.failed.get_or_insert(e);
                }
                Ok(false)
            }
        }
    }

    /// What the round left to do, or the first node's failure.
    pub(super) fn end(self) -> Result<Outcome> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut outcome = self.outcome;
        // Retried units go in their original order (same-slot commands stay ordered).
        outcome.retry.sort_unstable();
        Ok(outcome)
    }
}

/// A command as written to a node.
pub(super) enum Outgoing<'r> {
    Command(&'r Command<'r>),
    Raw(&'r [u8]),
    Cmd(&'r redis::Cmd),
}

impl Frame for Outgoing<'_> {
    fn frame<'a>(&'a self, f: &mut Framer<'_, 'a>) -> redis::RedisResult<()> {
        match self {
            Outgoing::Command(c) => c.frame(f),
            Outgoing::Raw(b) => {
                f.raw(b);
                Ok(())
            }
            Outgoing::Cmd(c) => c.frame(f),
        }
    }

    fn replies(&self) -> usize {
        match self {
            Outgoing::Command(c) => c.replies(),
            _ => 1,
        }
    }
}

/// The error of writes that ran but that fewer than `wanted` replicas acknowledged
/// (`acked`) within `timeout`.
fn not_replicated(
    acked: i64,
    wanted: u32,
    timeout: Duration,
    reply: &Option<Value>,
    key: Option<&str>,
) -> Error {
    let detail = match reply {
        Some(Value::Int(_)) => String::new(),
        other => format!(" (WAIT replied {other:?})"),
    };
    let e = redis::make_extension_error(
        "NOTREPLICATED".into(),
        Some(format!(
            "{acked} of {wanted} replicas acknowledged the write within {} ms{detail}",
            timeout.as_millis()
        )),
    );
    Error::redis(e, key)
}

/// What a round left to do.
#[derive(Default)]
pub(super) struct Outcome {
    retry: Vec<usize>,
    refresh: bool,
    pause: bool,
    /// The last redirection, returned when there are too many.
    last: Option<Error>,
    /// Where `MOVED` replies said slots are now served.
    moved: Vec<(u16, String)>,
}

/// The rounds of a plan: which units to send next, until every unit is answered, too
/// many redirections, or a failure.
pub(super) struct Rounds {
    pending: Vec<usize>,
    /// Rounds of `MOVED`/`ASK` redirections so far.
    redirects: usize,
    /// Retries so far (after a pause), and their pauses added up.
    retries: u32,
    paused: Duration,
    done: bool,
}

/// What to do before the next round.
pub(super) struct Between {
    /// Wait this long first (`TRYAGAIN`, `CLUSTERDOWN`, a connection failure).
    pub(super) pause: Option<Duration>,
    /// Read the slot map again (`MOVED`, `TRYAGAIN`, `CLUSTERDOWN`, a connection
    /// failure).
    pub(super) refresh: bool,
    /// Then send these slots to these primaries, as `MOVED` said (a node whose own
    /// slot map lags behind a failover must not send the units back where they came
    /// from).
    pub(super) moved: Vec<(u16, String)>,
}

impl Rounds {
    /// Every unit of `plan` is to be sent.
    pub(super) fn new(plan: &Plan) -> Self {
        Rounds {
            pending: (0..plan.units.len()).collect(),
            redirects: 0,
            retries: 0,
            paused: Duration::ZERO,
            done: false,
        }
    }

    /// The units of the next round, if there is one.
    pub(super) fn pending(&self) -> Option<&[usize]> {
        (!self.done).then_some(&self.pending[..])
    }

    /// After a round that left `outcome`: what to do before the next one (`None`: every
    /// unit is answered), or the last error when the rounds must stop: too many
    /// `MOVED`/`ASK` rounds (`max_redirects`), or a retry whose pause would exceed the
    /// [`RetryPolicy`](crate::exec::RetryPolicy)'s retries or budget.
    pub(super) fn after(
        &mut self,
        router: &Router,
        mut outcome: Outcome,
    ) -> Result<Option<Between>> {
        if outcome.retry.is_empty() {
            self.done = true;
            return Ok(None);
        }
        let pause = if outcome.pause {
            match router.retry.next_pause(self.retries, self.paused) {
                None => None,
                Some(pause) => {
                    self.retries += 1;
                    self.paused = self.paused.saturating_add(pause);
                    Some(Some(pause))
                }
            }
        } else {
            // MOVED/ASK: at once the first time; then the nodes may disagree for a
            // moment (a failover spreading): short pauses, as the retry policy says.
            self.redirects += 1;
            let n = u32::try_from(self.redirects).unwrap_or(u32::MAX);
            (self.redirects <= router.max_redirects).then(|| {
                (n > 1 && router.retry.max_retries() > 0)
                    .then(|| router.retry.backoff(n - 2))
                    .filter(|p| !p.is_zero())
            })
        };
        let Some(pause) = pause else {
            self.done = true;
            return Err(outcome
                .last
                .take()
                .unwrap_or_else(|| Error::unexpected("too many redirections", None)));
        };
        self.pending = std::mem::take(&mut outcome.retry);
        Ok(Some(Between {
            pause,
            refresh: outcome.refresh,
            moved: std::mem::take(&mut outcome.moved),
        }))
    }
}

/// The end of a plan's rounds (`result`): the replies per request, folded, the
/// requests refused as a whole and those not proven replicated; or the error and what
/// became of each request.
pub(super) fn conclude(
    mut plan: Plan,
    mut out: Vec<Vec<Value>>,
    result: Result<()>,
) -> std::result::Result<Answers, Box<Cut>> {
    match result {
        Ok(()) => {
            let refused = std::mem::take(&mut plan.refused);
            let unreplicated = std::mem::take(&mut plan.unreplicated);
            match plan.finish(&mut out) {
                Ok(()) => Ok(Answers {
                    replies: out,
                    refused,
                    unreplicated,
                }),
                Err(error) => Err(Cut::nothing_sent(error)),
            }
        }
        Err(error) => Err(Box::new(Cut {
            error,
            deliveries: Some(plan.deliveries(out)),
        })),
    }
}

enum Redirect {
    /// `MOVED`, and the slot and address it names.
    Moved(Error, Option<(u16, String)>),
    Ask(String, Error),
    Wait(Error),
}

/// The redirection among a unit's replies, if any.
fn redirection(replies: &[Value]) -> Option<Redirect> {
    for v in replies {
        let Value::ServerError(e) = v else { continue };
        let err = || Error::redis(e.clone().into(), None);
        match e.code() {
            "MOVED" => {
                let to = e.details().and_then(|d| {
                    let mut it = d.split_whitespace();
                    let slot = it.next()?.parse().ok()?;
                    Some((slot, it.next()?.to_owned()))
                });
                return Some(Redirect::Moved(err(), to));
            }
            "ASK" => {
                return Some(
                    match e.details().and_then(|d| d.split_whitespace().last()) {
                        Some(addr) => Redirect::Ask(addr.to_owned(), err()),
                        None => Redirect::Moved(err(), None),
                    },
                );
            }
            "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" => {
                return Some(Redirect::Wait(err()));
            }
            _ => {}
        }
    }
    None
}
