//! Running plans on a Redis Cluster (feature `cluster`).
//!
//! [`ClusterConnection`] is a [`SyncConnection`](crate::exec::SyncConnection) (and, with
//! the feature `tokio`, `ClusterAsyncConnection` an `AsyncConnection`): every store
//! operation runs on it unchanged, as it runs on a single server. It holds one redstash
//! [`DirectConnection`](crate::direct::DirectConnection) per primary (the same fast, vectored, pipelining connection as
//! the single-server bulk path) and the slot map (`CLUSTER SLOTS`), and executes each
//! request like this:
//!
//! * each command goes to the primary serving the hash slot of its key ([`key_slot`]);
//!   the commands of a [`Packed`](crate::exec::Packed) buffer are routed one by one;
//!   every node's share is written as one pipeline (to all nodes first, then the
//!   replies are read), and the replies are put back in the order of the commands, so
//!   a plan sees exactly what a single server would reply;
//! * `MGET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH` and `MSET` whose keys span slots are
//!   split into one command per slot, and the replies merged (`MGET`: values in the
//!   order of the keys; `DEL`/`UNLINK`/`EXISTS`/`TOUCH`: counts added; `MSET`: `OK`);
//! * a transaction (an atomic request, or `MULTI` ... `EXEC` inside a request) runs on
//!   the node of its keys when they all share one slot; otherwise nothing is sent and
//!   the request fails with [`Error::CrossSlot`];
//! * `SCAN` walks every primary: the cursor a plan sees is a composite one (the index
//!   of the primary in the high bits, that node's cursor in the low 50 bits), which
//!   is 0 only after the last primary is done, so a plan's `SCAN` loop finds every
//!   key of the cluster once (keys that move between primaries during the walk, in a
//!   resharding, may be missed or seen twice, as `SCAN` itself allows);
//! * `DBSIZE` (added), `KEYS` (concatenated), `FLUSHALL`/`FLUSHDB`, `SCRIPT LOAD`/`FLUSH`,
//!   `FUNCTION LOAD`/`FLUSH`/`DELETE`/`RESTORE` and `CONFIG SET`/`RESETSTAT` go to every
//!   primary; other keyless commands (`PING`, `INFO`, `TIME`, ...) go to one primary;
//! * a `MOVED` reply (a resharding or a failover) refreshes the slot map and sends the
//!   redirected commands again (a redirected command was not executed); `ASK` sends
//!   them to the importing node after `ASKING`; `TRYAGAIN`/`CLUSTERDOWN` retry after a
//!   pause. After [`max_redirects`](ClusterConnection::max_redirects) rounds the
//!   redirection is returned as an [`Error::Redis`] of kind
//!   [`RedisErrorKind::Redirect`](crate::RedisErrorKind::Redirect) (or `Transient`).
//!
//! Replicas are not used (reads and writes go to primaries). A connection error
//! (a node restarted or unreachable) fails the call, drops that node's connection and
//! makes the next call refresh the slot map and reconnect; the failed call is not
//! retried because its writes may have been executed.

mod route;
mod sync;
#[cfg(feature = "tokio")]
mod tokio;
mod topology;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};

use self::route::{Part, Plan, Sink, Target, UnitState};
pub use self::sync::ClusterConnection;
#[cfg(feature = "tokio")]
pub use self::tokio::ClusterAsyncConnection;
use self::topology::Topology;
use crate::error::{Error, Result};
use crate::exec::{Command, Delivered, Delivery, Interrupted, Request};
pub use crate::resp::slot::{SLOTS, key_slot};
use crate::resp::{Frame, Framer};

/// Default number of redirection rounds before a call fails.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Requests of a [`Step::SendAll`](crate::exec::Step::SendAll) executed together (at
/// most this many commands), so that memory stays bounded for bulk writes.
const WINDOW_COMMANDS: usize = 20_000;

/// `host:port` of a TCP address.
fn tcp_addr(info: &ConnectionInfo) -> Result<String> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => Ok(format!("{host}:{port}")),
        other => Err(Error::InvalidArgument(format!(
            "a Redis Cluster node must be a plain TCP address, not {other:?}"
        ))),
    }
}

/// `(host, port)` of `host:port`.
fn split_addr(addr: &str) -> Result<(&str, u16)> {
    addr.rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().ok()?,
            ))
        })
        .ok_or_else(|| Error::InvalidArgument(format!("bad node address {addr:?}")))
}

/// What the sync and async cluster connections share (sans-IO): the settings, the slot
/// map and the routing of units to nodes.
#[derive(Debug)]
struct Router {
    /// Connection settings (auth, database) shared by every node; the address of the
    /// first seed.
    base: ConnectionInfo,
    /// The seed nodes' addresses (`host:port`).
    seeds: Vec<String>,
    topology: Topology,
    /// The slot map must be read again before the next call.
    stale: bool,
    max_redirects: usize,
}

impl Router {
    fn new<T: IntoConnectionInfo>(seeds: impl IntoIterator<Item = T>) -> Result<Self> {
        let infos = seeds
            .into_iter()
            .map(|s| s.into_connection_info().map_err(Error::from))
            .collect::<Result<Vec<_>>>()?;
        let Some(base) = infos.first().cloned() else {
            return Err(Error::InvalidArgument(
                "a cluster connection needs at least one seed node".into(),
            ));
        };
        let seeds = infos.iter().map(tcp_addr).collect::<Result<Vec<_>>>()?;
        Ok(Router {
            base,
            seeds,
            topology: Topology::empty(),
            stale: true,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        })
    }

    /// Where to ask for the slot map: the known primaries, then the seeds.
    fn map_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topology.primaries().to_vec();
        v.extend(self.seeds.iter().cloned());
        v
    }

    /// The connection info of the node at `addr`.
    fn node_info(&self, addr: &str) -> Result<ConnectionInfo> {
        let (host, port) = split_addr(addr)?;
        Ok(self
            .base
            .clone()
            .set_addr(ConnectionAddr::Tcp(host.to_owned(), port)))
    }

    /// The slot map from a `CLUSTER SLOTS` reply of the node at `addr`.
    /// Take the `CLUSTER SLOTS` reply of the node at `addr` as the slot map; an error
    /// (asking, or a reply that cannot be used) leaves the map as it was.
    fn adopt_slots(&mut self, addr: &str, reply: Result<Option<Value>>) -> Result<()> {
        self.topology = Self::parse_slots(addr, reply?)?;
        self.stale = false;
        Ok(())
    }

    fn parse_slots(addr: &str, reply: Option<Value>) -> Result<Topology> {
        let (host, _) = split_addr(addr)?;
        match reply {
            Some(Value::ServerError(e)) => Err(Error::redis(e.into(), None)),
            Some(v) => Topology::parse(v, host),
            None => Err(Error::unexpected("no reply to CLUSTER SLOTS", None)),
        }
    }

    fn slot_owner(&self, slot: u16) -> Option<&str> {
        self.topology
            .owner(slot)
            .and_then(|i| self.topology.primaries().get(i))
            .map(String::as_str)
    }

    /// The address a unit goes to.
    fn address(&self, target: Target, asking: Option<&String>) -> Result<String> {
        if let Some(a) = asking {
            return Ok(a.clone());
        }
        let primaries = self.topology.primaries();
        let node = match target {
            Target::Any => Some(0),
            Target::Node(i) => Some(i),
            Target::Slot(s) => self.topology.owner(s),
        };
        match node.and_then(|i| primaries.get(i)) {
            Some(a) => Ok(a.clone()),
            None => {
                let e = redis::make_extension_error(
                    "CLUSTERDOWN".into(),
                    Some(format!("{target:?} is not served by any known primary")),
                );
                Err(Error::redis(e, None))
            }
        }
    }

    /// The `pending` units grouped by the address they go to.
    fn group(&self, plan: &Plan, pending: &[usize]) -> Result<Vec<(String, Vec<usize>)>> {
        let mut by_node: Vec<(String, Vec<usize>)> = Vec::new();
        for &u in pending {
            let unit = &plan.units[u];
            let addr = self.address(unit.target, unit.asking.as_ref())?;
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, units)) => units.push(u),
                None => by_node.push((addr, vec![u])),
            }
        }
        Ok(by_node)
    }

    /// After a round: whether to go on (`Ok(true)`), stop (`Ok(false)`: done) or fail.
    fn next_round(&self, outcome: &mut Outcome, rounds: &mut usize) -> Result<bool> {
        if outcome.retry.is_empty() {
            return Ok(false);
        }
        *rounds += 1;
        if *rounds > self.max_redirects {
            return Err(outcome
                .last
                .take()
                .unwrap_or_else(|| Error::unexpected("too many redirections", None)));
        }
        Ok(true)
    }
}

/// The `ASKING` command sent before a command redirected with `ASK`.
/// `CLUSTER SLOTS`.
fn slots_cmd() -> redis::Cmd {
    let mut c = redis::cmd("CLUSTER");
    c.arg("SLOTS");
    c
}

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
) -> Result<()> {
    let mut it = raw.into_iter();
    for &u in units {
        let unit = &plan.units[u];
        if unit.asking.is_some() {
            it.next();
        }
        let n = match unit.sink {
            Sink::Transaction { req } => reqs[req].len() + 2,
            _ => unit.parts.len(),
        };
        let replies: Vec<Value> = it.by_ref().take(n).collect();
        if let Some(redirect) = redirection(&replies) {
            let unit = &mut plan.units[u];
            match redirect {
                Redirect::Moved(e) => {
                    unit.asking = None;
                    outcome.refresh = true;
                    outcome.last = Some(e);
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
            Sink::Transaction { req } => reqs[req].finish(replies)?,
            _ => replies,
        };
        plan.deliver(sink, replies, out)?;
        plan.states[u] = UnitState::Answered;
    }
    Ok(())
}

/// A window of requests that failed: the error, and what became of each request
/// (`None`: nothing was sent).
struct Cut {
    error: Error,
    deliveries: Option<Vec<Delivery>>,
}

/// What became of the windows of requests a cluster connection runs one after the
/// other (see `run_requests`): answered, cut short (each request by what became of the
/// units it was split into), or not sent.
struct Windows {
    answered: Vec<Vec<Value>>,
}

impl Windows {
    fn new(n: usize) -> Self {
        Windows {
            answered: Vec::with_capacity(n),
        }
    }

    /// Record a window's result; `Err((error, sent))` stops the run: the window's
    /// requests are in flight (`sent`) or not sent, and the `remaining` after it are not
    /// sent.
    fn window(
        &mut self,
        window: &[Request<'_>],
        result: std::result::Result<Vec<Vec<Value>>, Box<Cut>>,
        remaining: usize,
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
                requests.extend((0..remaining).map(|_| Delivery::NotSent));
                Err(Box::new(Interrupted {
                    requests,
                    failure: Some(error),
                }))
            }
        }
    }

    fn finish(self) -> Delivered {
        Ok(self.answered)
    }
}

/// The replies of one round, taken node by node.
#[derive(Default)]
struct Round {
    outcome: Outcome,
    failed: Option<Error>,
}

impl Round {
    /// Take one node's raw replies, or the error writing to or reading from it. Returns
    /// `false` when the node's connection must be dropped: its writes may have been
    /// executed, so they are not retried, and the slot map is read again on the next
    /// call.
    fn node(
        &mut self,
        router: &mut Router,
        plan: &mut Plan,
        reqs: &[Request<'_>],
        units: &[usize],
        raw: Result<Vec<Value>>,
        out: &mut [Vec<Value>],
    ) -> Result<bool> {
        match raw {
            Ok(raw) => {
                absorb(plan, reqs, units, raw, &mut self.outcome, out)?;
                Ok(true)
            }
            Err(e) => {
                router.stale = true;
                self.failed.get_or_insert(e);
                Ok(false)
            }
        }
    }

    /// What the round left to do, or the first node's failure.
    fn end(self) -> Result<Outcome> {
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
enum Outgoing<'r> {
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

/// What a round left to do.
#[derive(Default)]
struct Outcome {
    retry: Vec<usize>,
    refresh: bool,
    pause: bool,
    /// The last redirection, returned when there are too many.
    last: Option<Error>,
}

impl Outcome {
    /// The pause before the next round (`TRYAGAIN`, `CLUSTERDOWN`).
    fn pause(&self, rounds: usize) -> Option<std::time::Duration> {
        self.pause
            .then(|| std::time::Duration::from_millis(20 * rounds as u64))
    }
}

enum Redirect {
    Moved(Error),
    Ask(String, Error),
    Wait(Error),
}

/// The redirection among a unit's replies, if any.
fn redirection(replies: &[Value]) -> Option<Redirect> {
    for v in replies {
        let Value::ServerError(e) = v else { continue };
        let err = || Error::redis(e.clone().into(), None);
        match e.code() {
            "MOVED" => return Some(Redirect::Moved(err())),
            "ASK" => {
                return Some(
                    match e.details().and_then(|d| d.split_whitespace().last()) {
                        Some(addr) => Redirect::Ask(addr.to_owned(), err()),
                        None => Redirect::Moved(err()),
                    },
                );
            }
            "TRYAGAIN" | "CLUSTERDOWN" => return Some(Redirect::Wait(err())),
            _ => {}
        }
    }
    None
}
