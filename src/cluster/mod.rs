//! Running plans on a Redis Cluster (feature `cluster`).
//!
//! [`ClusterConnection`] is a [`SyncConnection`]: every store operation runs on it
//! unchanged, as it runs on a single server. It holds one redstash
//! [`DirectConnection`] per primary (the same fast, vectored, pipelining connection as
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
//!   key of the cluster once;
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
mod slot;
mod topology;

use std::collections::HashMap;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};

use self::route::{Part, Plan, Sink, Target};
pub use self::slot::{SLOTS, key_slot};
use self::topology::Topology;
use crate::direct::{DirectConnection, Frame, Framer};
use crate::error::{Error, Result};
use crate::exec::{Request, Requests, SyncConnection};

/// Default number of redirection rounds before a call fails.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Requests of a [`Step::SendAll`](crate::exec::Step::SendAll) executed together (at
/// most this many commands), so that memory stays bounded for bulk writes.
const WINDOW_COMMANDS: usize = 20_000;

/// A connection to a Redis Cluster that runs any redstash plan (see the
/// [module docs](self) for how commands are routed).
///
/// ```no_run
/// use redstash::ArrayStore;
/// use redstash::cluster::ClusterConnection;
/// # fn main() -> redstash::Result<()> {
/// let mut con = ClusterConnection::open(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])?;
/// let store = ArrayStore::new("arrays");
/// let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
/// store.put(&mut con, "a", &a)?;
/// store.put(&mut con, "b", &a)?;
/// // One MGET split per slot, values back in the order of the names.
/// let both = store.get_many(&mut con, &["a", "b"])?;
/// assert!(both.iter().all(Option::is_some));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ClusterConnection {
    /// Connection settings (auth, database) shared by every node; the address of the
    /// first seed.
    base: ConnectionInfo,
    /// The seed nodes' addresses (`host:port`).
    seeds: Vec<String>,
    topology: Topology,
    cons: HashMap<String, DirectConnection>,
    /// The slot map must be read again before the next call.
    stale: bool,
    max_redirects: usize,
    timeout: Option<Duration>,
}

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

impl ClusterConnection {
    /// Connect to a cluster through any of `seeds` (URLs such as `redis://host:port`,
    /// with `redis://user:password@host:port` for ACL/password auth, which every node
    /// gets; or [`redis::ConnectionInfo`]s), and read its slot map.
    ///
    /// Fails if no seed is given, a seed is not a TCP address, or no seed answers
    /// `CLUSTER SLOTS` (the error of the last one).
    pub fn open<T: IntoConnectionInfo>(seeds: impl IntoIterator<Item = T>) -> Result<Self> {
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
        let mut con = ClusterConnection {
            base,
            seeds,
            topology: Topology::empty(),
            cons: HashMap::new(),
            stale: true,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            timeout: None,
        };
        con.refresh()?;
        Ok(con)
    }

    /// Fail a call after `n` rounds of redirections (`MOVED`, `ASK`, `TRYAGAIN`,
    /// `CLUSTERDOWN`) instead of [`DEFAULT_MAX_REDIRECTS`].
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// Sets (or clears, with `None`) the read and write timeout of every node
    /// connection, now and for those opened later.
    pub fn set_timeout(&mut self, dur: Option<Duration>) -> Result<()> {
        self.timeout = dur;
        for con in self.cons.values_mut() {
            con.set_timeout(dur)?;
        }
        Ok(())
    }

    /// The addresses (`host:port`) of the primaries, sorted (as of the last slot map).
    pub fn primaries(&self) -> &[String] {
        self.topology.primaries()
    }

    /// The address of the primary serving `slot` (as of the last slot map).
    pub fn slot_owner(&self, slot: u16) -> Option<&str> {
        self.topology
            .owner(slot)
            .and_then(|i| self.topology.primaries().get(i))
            .map(String::as_str)
    }

    /// Read the slot map again (`CLUSTER SLOTS`), from a known primary or a seed.
    pub fn refresh(&mut self) -> Result<()> {
        let mut candidates: Vec<String> = self.topology.primaries().to_vec();
        candidates.extend(self.seeds.iter().cloned());
        let mut last = None;
        for addr in candidates {
            match self.slots_from(&addr) {
                Ok(t) => {
                    self.topology = t;
                    self.stale = false;
                    return Ok(());
                }
                Err(e) => {
                    self.cons.remove(&addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidArgument("no cluster node to ask".into())))
    }

    fn slots_from(&mut self, addr: &str) -> Result<Topology> {
        let (host, _) = split_addr(addr)?;
        let host = host.to_owned();
        let con = self.connection(addr)?;
        let mut c = redis::cmd("CLUSTER");
        c.arg("SLOTS");
        let reply = con.exec(&[c], false)?.pop().unwrap_or(Value::Nil);
        if let Value::ServerError(e) = reply {
            return Err(Error::redis(e.into(), None));
        }
        Topology::parse(reply, &host)
    }

    /// The connection to `addr`, opened if needed (again if it broke).
    fn connection(&mut self, addr: &str) -> Result<&mut DirectConnection> {
        if !self.cons.get(addr).is_some_and(DirectConnection::is_open) {
            let (host, port) = split_addr(addr)?;
            let info = self
                .base
                .clone()
                .set_addr(ConnectionAddr::Tcp(host.to_owned(), port));
            let mut con = DirectConnection::open(info)?;
            if self.timeout.is_some() {
                con.set_timeout(self.timeout)?;
            }
            self.cons.insert(addr.to_owned(), con);
        }
        self.cons
            .get_mut(addr)
            .ok_or_else(|| Error::InvalidArgument(format!("no connection to {addr}")))
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

    /// Run requests (their replies, per request).
    fn execute(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Vec<Value>>> {
        if self.stale {
            self.refresh()?;
        }
        let mut plan = Plan::new(reqs, &self.topology)?;
        let mut out = plan.empty_replies();
        let mut pending: Vec<usize> = (0..plan.units.len()).collect();
        let mut rounds = 0;
        loop {
            let outcome = self.round(&mut plan, reqs, &pending, &mut out)?;
            if outcome.retry.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > self.max_redirects {
                let e = outcome
                    .last
                    .unwrap_or_else(|| Error::unexpected("too many redirections", None));
                return Err(e);
            }
            if outcome.pause {
                std::thread::sleep(Duration::from_millis(20 * rounds as u64));
            }
            if outcome.refresh {
                self.refresh()?;
            }
            pending = outcome.retry;
        }
        plan.finish(&mut out)?;
        Ok(out)
    }

    /// Send the `pending` units (each node's share as one pipeline, written to every
    /// node before any reply is read) and deliver their replies.
    fn round(
        &mut self,
        plan: &mut Plan,
        reqs: &[Request<'_>],
        pending: &[usize],
        out: &mut [Vec<Value>],
    ) -> Result<Outcome> {
        let mut by_node: Vec<(String, Vec<usize>)> = Vec::new();
        for &u in pending {
            let unit = &plan.units[u];
            let addr = self.address(unit.target, unit.asking.as_ref())?;
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, units)) => units.push(u),
                None => by_node.push((addr, vec![u])),
            }
        }
        let asking = redis::cmd("ASKING");
        let mut sent: Vec<Result<usize>> = Vec::with_capacity(by_node.len());
        for (addr, units) in &by_node {
            let result = match self.connection(addr) {
                Ok(con) => send_units(con, plan, reqs, units, &asking),
                Err(e) => Err(e),
            };
            sent.push(result);
        }
        let mut outcome = Outcome::default();
        let mut failed: Option<Error> = None;
        for ((addr, units), n) in by_node.iter().zip(sent) {
            let raw = n.and_then(|n| match self.cons.get_mut(addr.as_str()) {
                Some(con) => con.recv(n).map_err(Error::from),
                None => Err(Error::unexpected("node connection lost", None)),
            });
            let raw = match raw {
                Ok(raw) => raw,
                Err(e) => {
                    self.cons.remove(addr.as_str());
                    self.stale = true;
                    failed.get_or_insert(e);
                    continue;
                }
            };
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
                    outcome.retry.push(u);
                    continue;
                }
                match unit.sink {
                    Sink::Transaction { req } => {
                        let replies = reqs[req].shell().finish_raw(replies)?;
                        plan.deliver(Sink::Transaction { req }, replies, out)?;
                    }
                    sink => plan.deliver(sink, replies, out)?,
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // Retried units go in their original order (same-slot commands stay ordered).
        outcome.retry.sort_unstable();
        Ok(outcome)
    }
}

/// Write the units bound for one node: non-atomic units together as one pipeline,
/// each transaction as its own `MULTI`/`EXEC` batch. Returns the raw replies owed.
fn send_units(
    con: &mut DirectConnection,
    plan: &Plan,
    reqs: &[Request<'_>],
    units: &[usize],
    asking: &redis::Cmd,
) -> Result<usize> {
    con.begin()?;
    let mut owed = 0;
    let mut frames: Vec<Outgoing<'_>> = Vec::new();
    for &u in units {
        let unit = &plan.units[u];
        if unit.asking.is_some() {
            frames.push(Outgoing::Cmd(asking));
        }
        if let Sink::Transaction { req } = unit.sink {
            owed += con.send(&frames, false)?;
            frames.clear();
            owed += con.send(reqs[req].commands(), true)?;
            continue;
        }
        for part in &plan.parts[unit.parts.clone()] {
            frames.push(match part {
                Part::Whole { req, cmd } => Outgoing::Command(&reqs[*req].commands()[*cmd]),
                Part::Raw { req, cmd, range } => match &reqs[*req].commands()[*cmd] {
                    crate::exec::Command::Packed(p) => Outgoing::Raw(&p.as_bytes()[range.clone()]),
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
    owed += con.send(&frames, false)?;
    Ok(owed)
}

/// A command as written to a node.
enum Outgoing<'r> {
    Command(&'r crate::exec::Command<'r>),
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
                let addr = e.details()?.split_whitespace().last()?.to_owned();
                return Some(Redirect::Ask(addr, err()));
            }
            "TRYAGAIN" | "CLUSTERDOWN" => return Some(Redirect::Wait(err())),
            _ => {}
        }
    }
    None
}

impl SyncConnection for ClusterConnection {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        let mut replies = self.execute(std::slice::from_ref(req))?;
        replies
            .pop()
            .ok_or_else(|| Error::unexpected("no replies", req.key().map(str::to_owned)))
    }

    /// Routes and pipelines the requests together, a window of them at a time (about
    /// 20,000 commands), so memory stays bounded.
    fn run_requests(&mut self, reqs: Requests<'_>) -> Result<Vec<Vec<Value>>> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut window: Vec<Request<'_>> = Vec::new();
        let mut commands = 0;
        for r in reqs {
            commands += r.len();
            window.push(r);
            if commands >= WINDOW_COMMANDS {
                out.extend(self.execute(&window)?);
                window.clear();
                commands = 0;
            }
        }
        if !window.is_empty() {
            out.extend(self.execute(&window)?);
        }
        Ok(out)
    }
}
