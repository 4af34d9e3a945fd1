//! What the sync and async cluster connections share about the cluster (sans-IO): the
//! connection settings, the seeds, the slot map and which node a unit goes to.

use std::collections::HashSet;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};

use super::DEFAULT_MAX_REDIRECTS;
use super::plan::{Plan, Sink, Target, Unit};
use super::topology::Topology;
use crate::direct::ConnectOptions;
use crate::error::{Error, Result};
use crate::exec::RetryPolicy;

/// `host:port` of a TCP address, plain (`redis://`) or TLS (`rediss://`).
fn tcp_addr(info: &ConnectionInfo) -> Result<String> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Ok(format!("{host}:{port}"))
        }
        other => Err(Error::InvalidArgument(format!(
            "a Redis Cluster node must be a TCP address (redis:// or rediss://), not {other:?}"
        ))),
    }
}

/// How an address is connected to: `None` for plain TCP, `Some(insecure)` for TLS
/// (`insecure`: any certificate is accepted, a `rediss://...#insecure` URL).
fn scheme(addr: &ConnectionAddr) -> Option<bool> {
    match addr {
        ConnectionAddr::TcpTls { insecure, .. } => Some(*insecure),
        _ => None,
    }
}

/// A scheme as the message of a refusal says it.
fn scheme_name(scheme: Option<bool>) -> &'static str {
    match scheme {
        None => "redis://",
        Some(false) => "rediss://",
        Some(true) => "rediss://...#insecure",
    }
}

/// The options of the node connections: `options` without its retry policy, which the
/// cluster connection never uses (it drives each node connection's `begin`/`send`/
/// `recv` itself and retries under its own policy, `with_retry`), so that nothing is
/// ever sent again by both.
fn node_options(options: ConnectOptions) -> ConnectOptions {
    options.with_retry(RetryPolicy::none())
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
    /// Connection settings (auth, database, TLS or not) shared by every node; the
    /// address of the first seed.
    base: ConnectionInfo,
    /// How every node connection is opened (timeouts, TLS settings); its retry policy is
    /// [`RetryPolicy::none`]: see [`node_options`].
    pub(super) options: ConnectOptions,
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
    /// The router of a connection through `seeds`, whose node connections are opened
    /// with `options`. Every seed must be a TCP address of the same scheme: all
    /// `redis://`, or all `rediss://` (with the same `#insecure` or none); every node
    /// is then connected to with that scheme.
    pub(super) fn new<T: IntoConnectionInfo>(
        seeds: impl IntoIterator<Item = T>,
        options: ConnectOptions,
    ) -> Result<Self> {
        let infos = seeds
            .into_iter()
            .map(|s| {
                s.into_connection_info()
                    .map_err(|e| Error::from(crate::direct::needs_tls_feature(e)))
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(base) = infos.first().cloned() else {
            return Err(Error::InvalidArgument(
                "a cluster connection needs at least one seed node".into(),
            ));
        };
        let seeds = infos.iter().map(tcp_addr).collect::<Result<Vec<_>>>()?;
        let first = scheme(base.addr());
        if let Some((other, addr)) = infos
            .iter()
            .map(|i| scheme(i.addr()))
            .zip(&seeds)
            .find(|(s, _)| *s != first)
        {
            return Err(Error::InvalidArgument(format!(
                "the seeds of a cluster connection mix schemes: {} for {}, {} for {addr} \
                 (every node is connected to with the same one)",
                scheme_name(first),
                seeds[0],
                scheme_name(other),
            )));
        }
        Ok(Router {
            base,
            options: node_options(options),
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

    /// The connection info of the node at `addr`: the first seed's credentials and
    /// database, and its scheme (a TLS cluster is TLS to every node, the server name
    /// checked being the host the slot map gives).
    pub(super) fn node_info(&self, addr: &str) -> Result<ConnectionInfo> {
        let (host, port) = split_addr(addr)?;
        let host = host.to_owned();
        let addr = match self.base.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        Ok(self.base.clone().set_addr(addr))
    }

    /// Sets the response timeout of the node connections opened from now on.
    pub(super) fn set_response_timeout(&mut self, timeout: Option<Duration>) {
        self.options = self.options.clone().with_response_timeout(timeout);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `redis://` info with its address made TLS (as a `rediss://` URL gives, also
    /// without the feature `tls`).
    fn tls(host: &str, port: u16, insecure: bool) -> ConnectionInfo {
        "redis://:pw@127.0.0.1/2"
            .into_connection_info()
            .unwrap()
            .set_addr(ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure,
                tls_params: None,
            })
    }

    fn plain(port: u16) -> ConnectionInfo {
        format!("redis://127.0.0.1:{port}/")
            .into_connection_info()
            .unwrap()
    }

    #[test]
    fn tls_seeds_make_every_node_tls_with_the_seed_settings() {
        for insecure in [false, true] {
            let r = Router::new(
                [
                    tls("10.0.0.1", 7000, insecure),
                    tls("10.0.0.2", 7001, insecure),
                ],
                ConnectOptions::default(),
            )
            .unwrap();
            assert_eq!(r.seeds, ["10.0.0.1:7000", "10.0.0.2:7001"]);
            let info = r.node_info("10.0.0.9:7005").unwrap();
            match info.addr() {
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: i,
                    ..
                } => assert_eq!((host.as_str(), *port, *i), ("10.0.0.9", 7005, insecure)),
                other => panic!("{other:?}"),
            }
            assert_eq!(info.redis_settings().password(), Some("pw"));
            assert_eq!(info.redis_settings().db(), 2);
        }
    }

    #[test]
    fn plain_seeds_make_every_node_plain() {
        let r = Router::new([plain(7000)], ConnectOptions::default()).unwrap();
        assert_eq!(
            r.node_info("127.0.0.1:7002").unwrap().addr(),
            &ConnectionAddr::Tcp("127.0.0.1".into(), 7002)
        );
    }

    #[test]
    fn mixed_schemes_and_non_tcp_seeds_are_refused() {
        let mixed = [
            vec![plain(7000), tls("127.0.0.1", 7001, false)],
            vec![tls("127.0.0.1", 7001, false), plain(7000)],
            vec![tls("127.0.0.1", 7001, false), tls("127.0.0.1", 7002, true)],
        ];
        for seeds in mixed {
            let e = Router::new(seeds, ConnectOptions::default()).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidArgument(m) if m.contains("mix schemes")),
                "{e}"
            );
        }
        let unix = plain(7000).set_addr(ConnectionAddr::Unix("/tmp/redis.sock".into()));
        let e = Router::new([unix], ConnectOptions::default()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }

    /// The node connections never retry on their own: the cluster connection does,
    /// under its policy. The other options are kept.
    #[test]
    fn node_connections_have_the_options_but_no_retry_policy() {
        let options = ConnectOptions::default()
            .with_response_timeout(Some(Duration::from_millis(300)))
            .with_retry(RetryPolicy::default().with_max_retries(9));
        let mut r = Router::new([plain(7000)], options).unwrap();
        assert_eq!(r.options.retry(), &RetryPolicy::none());
        assert_eq!(
            r.options.response_timeout(),
            Some(Duration::from_millis(300))
        );
        assert_eq!(r.retry, RetryPolicy::failover());
        r.set_response_timeout(None);
        assert_eq!(r.options.response_timeout(), None);
    }
}
