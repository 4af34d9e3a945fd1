//! What the sync and async cluster connections share about the cluster (sans-IO): the
//! connection settings, the seeds, the slot map and which node a unit goes to.

use std::collections::HashSet;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};

use super::DEFAULT_MAX_REDIRECTS;
use super::plan::{Plan, Sink, Target, Unit};
use super::topology::Topology;
use crate::error::{Error, Result};
use crate::exec::RetryPolicy;

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
pub(super) struct Router {
    /// Connection settings (auth, database) shared by every node; the address of the
    /// first seed.
    base: ConnectionInfo,
    /// The seed nodes' addresses (`host:port`).
    seeds: Vec<String>,
    pub(super) topology: Topology,
    /// The slot map must be read again before the next call.
    pub(super) stale: bool,
    pub(super) max_redirects: usize,
    /// How connection failures and `TRYAGAIN`/`CLUSTERDOWN` are retried.
    pub(super) retry: RetryPolicy,
    /// Send read-only units to a replica of their slot's primary.
    pub(super) replica_reads: bool,
    /// Follow every write with `WAIT replicas timeout` on its node.
    pub(super) wait: Option<(u32, Duration)>,
    /// Nodes whose connection failed since the slot map last changed: no replica read
    /// goes to them.
    down: HashSet<String>,
}

impl Router {
    pub(super) fn new<T: IntoConnectionInfo>(seeds: impl IntoIterator<Item = T>) -> Result<Self> {
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
            retry: RetryPolicy::failover(),
            replica_reads: false,
            wait: None,
            down: HashSet::new(),
        })
    }

    /// Where to ask for the slot map: every known node (the primaries, then their
    /// replicas), then the seeds; the nodes whose connection failed last.
    pub(super) fn map_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for a in self.topology.nodes().chain(&self.seeds) {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v.sort_by_key(|a| self.down.contains(a));
        v
    }

    /// The connection to the node at `addr` failed: read the slot map again before the
    /// next call, and send no replica read there until the slot map changes.
    pub(super) fn failed(&mut self, addr: &str) {
        self.stale = true;
        self.down.insert(addr.to_owned());
    }

    /// The connection info of the node at `addr`.
    pub(super) fn node_info(&self, addr: &str) -> Result<ConnectionInfo> {
        let (host, port) = split_addr(addr)?;
        Ok(self
            .base
            .clone()
            .set_addr(ConnectionAddr::Tcp(host.to_owned(), port)))
    }

    /// Take the `CLUSTER SLOTS` reply of the node at `addr` as the slot map; an error
    /// (asking, or a reply that cannot be used) leaves the map as it was.
    pub(super) fn adopt_slots(&mut self, addr: &str, reply: Result<Option<Value>>) -> Result<()> {
        let topology = Self::parse_slots(addr, reply?)?;
        if topology != self.topology {
            self.down.clear();
        }
        self.topology = topology;
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

    /// Send `slot` to the primary at `addr` from now on, as a `MOVED` reply said (after
    /// the slot map was read again, which may lag behind the node that redirected).
    pub(super) fn follow_moved(&mut self, moved: &[(u16, String)]) {
        for (slot, addr) in moved {
            if !self.topology.set_owner(*slot, addr) {
                // A primary the slot map does not know yet: read it again next call.
                self.stale = true;
            }
        }
    }

    pub(super) fn slot_owner(&self, slot: u16) -> Option<&str> {
        self.topology
            .owner(slot)
            .and_then(|i| self.topology.primaries().get(i))
            .map(String::as_str)
    }

    /// The address a unit goes to: after `ASK`, the importing node; a read of a slot
    /// with replica reads on, a replica of the slot's primary (one not known to be
    /// down, chosen by slot); else the primary.
    fn address(&self, unit: &Unit) -> Result<String> {
        if let Some(a) = &unit.asking {
            return Ok(a.clone());
        }
        let target = unit.target;
        let primaries = self.topology.primaries();
        let node = match target {
            Target::Any => Some(0),
            Target::Node(i) => Some(i),
            Target::Slot(s) => self.topology.owner(s),
        };
        if let (true, true, Target::Slot(s), Some(i)) =
            (self.replica_reads, unit.read_only, target, node)
            && !matches!(unit.sink, Sink::Transaction { .. })
        {
            let up: Vec<&String> = self
                .topology
                .replicas(i)
                .iter()
                .filter(|a| !self.down.contains(*a))
                .collect();
            if let Some(a) = up.get(usize::from(s) % up.len().max(1)) {
                return Ok((*a).clone());
            }
        }
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
    pub(super) fn group(
        &self,
        plan: &Plan,
        pending: &[usize],
    ) -> Result<Vec<(String, Vec<usize>)>> {
        let mut by_node: Vec<(String, Vec<usize>)> = Vec::new();
        for &u in pending {
            let addr = self.address(&plan.units[u])?;
            match by_node.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, units)) => units.push(u),
                None => by_node.push((addr, vec![u])),
            }
        }
        Ok(by_node)
    }
}

/// `READONLY`: a replica's connection may serve reads of its primary's slots.
pub(super) fn readonly_cmd() -> redis::Cmd {
    redis::cmd("READONLY")
}

/// `WAIT replicas timeout_ms`.
pub(super) fn wait_cmd(replicas: u32, timeout: Duration) -> redis::Cmd {
    let mut c = redis::cmd("WAIT");
    c.arg(replicas)
        .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    c
}

/// `CLUSTER SLOTS`.
pub(super) fn slots_cmd() -> redis::Cmd {
    let mut c = redis::cmd("CLUSTER");
    c.arg("SLOTS");
    c
}
