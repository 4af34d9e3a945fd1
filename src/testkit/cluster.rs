//! A Redis Cluster of [`RedisServer`]s, with or without replicas.

use std::io;
use std::time::{Duration, Instant};

use super::probe::ping;
use super::server::{BUS_PORT_OFFSET, RedisServer, RedisServerBuilder};
use crate::resp::slot::key_slot;

/// How long [`RedisCluster::start`] (and every wait of the failover helpers) waits for the
/// cluster to be ok.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Number of hash slots in a Redis Cluster.
const CLUSTER_SLOTS: u16 = 16384;
/// `cluster-node-timeout` of [`RedisCluster::start`]'s nodes (ms).
const NODE_TIMEOUT_MS: u64 = 5000;
/// Read timeout of the testkit's own connections to the nodes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two polls of the nodes.
const POLL: Duration = Duration::from_millis(50);

/// A Redis Cluster on 127.0.0.1, for tests: 3 primaries, and with
/// [`start_with_replicas`](Self::start_with_replicas) replicas of each.
///
/// Each node is a [`RedisServer`] with `cluster-enabled yes`, its own port
/// and directory. The slots are split evenly with `CLUSTER ADDSLOTS`, the
/// nodes are joined with `CLUSTER MEET`, and [`start`](Self::start) returns
/// once every node reports `cluster_state:ok` with all 16384 slots assigned.
/// All nodes are killed on drop.
///
/// Nodes are numbered in the order they were started ([`servers`](Self::servers)):
/// the 3 primaries first, then the replicas. The roles change after a failover, so
/// [`primaries`](Self::primaries) and [`replicas`](Self::replicas) ask the nodes.
///
/// ```no_run
/// # use redstash::testkit::RedisCluster;
/// let cluster = RedisCluster::start()?;
/// let urls = cluster.nodes(); // ["redis://127.0.0.1:PORT/", ...]
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Number of primaries started by [`start`](Self::start).
    pub const PRIMARIES: usize = 3;

    /// `cluster-node-timeout` of the nodes of
    /// [`start_with_replicas`](Self::start_with_replicas): a primary that stops answering
    /// is marked failed after about this long, and its replica promoted about a second
    /// later.
    pub const FAILOVER_NODE_TIMEOUT: Duration = Duration::from_millis(1500);

    /// Starts the 3 nodes, forms the cluster and waits (up to 30 s) for
    /// `cluster_state:ok` on every node.
    ///
    /// # Errors
    ///
    /// If a node cannot be started (see [`RedisServerBuilder::start`]), a
    /// cluster command fails, or the cluster is not ok in time (the message
    /// then includes each node's `CLUSTER INFO`).
    pub fn start() -> io::Result<Self> {
        Self::start_with(RedisServer::builder())
    }

    /// [`start`](Self::start) with every node configured by `node`: its
    /// [`maxmemory`](RedisServerBuilder::maxmemory), [ACL users](RedisServerBuilder::acl_user)
    /// (connect as one with [`nodes_for`](Self::nodes_for)),
    /// [password](RedisServerBuilder::password), [arguments](RedisServerBuilder::arg)
    /// and [TLS](RedisServerBuilder::tls).
    ///
    /// With [`tls`](RedisServerBuilder::tls), each node listens on a TLS port too, and
    /// the cluster bus and replication run over TLS (`tls-cluster yes`,
    /// `tls-replication yes`): the nodes' `CLUSTER SLOTS` and `MOVED` replies then name
    /// the TLS ports to TLS clients ([`tls_nodes`](Self::tls_nodes): a cluster
    /// connection through them is TLS to every node) and the plain ports to plain
    /// clients ([`nodes`](Self::nodes), which the testkit itself uses). The
    /// certificate must name `127.0.0.1` and be good for client authentication too
    /// (the nodes present it to each other).
    ///
    /// ```no_run
    /// # use redstash::testkit::{RedisCluster, RedisServer};
    /// let cluster = RedisCluster::start_with(
    ///     RedisServer::builder().maxmemory(4 << 20).acl_user("app", "pw", "~* +@all -flushall"),
    /// )?;
    /// let urls = cluster.nodes_for("app", "pw");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(node: RedisServerBuilder) -> io::Result<Self> {
        Self::launch(node.cluster_node(NODE_TIMEOUT_MS), 0)
    }

    /// Starts 3 primaries and `replicas_per_primary` replicas of each, for tests of
    /// failover: every node has a `cluster-node-timeout` of
    /// [`FAILOVER_NODE_TIMEOUT`](Self::FAILOVER_NODE_TIMEOUT) (so a killed primary's
    /// replica is promoted within a few seconds) and no replica migration. Returns once
    /// every node reports `cluster_state:ok`, every node sees the same slot map (with
    /// every replica), and every replica reports `master_link_status:up` with its
    /// replication offset caught up with its primary's.
    ///
    /// ```no_run
    /// # use redstash::testkit::RedisCluster;
    /// let mut cluster = RedisCluster::start_with_replicas(1)?;
    /// let primary = cluster.primaries()[0];
    /// let replica = cluster.replica_of(primary).expect("a replica");
    /// cluster.failover(replica)?; // the replica is now a primary
    /// cluster.kill(replica);      // ... and its replica (the old primary) takes over
    /// cluster.wait_until_ok()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or the replicas are not in sync in time.
    pub fn start_with_replicas(replicas_per_primary: usize) -> io::Result<Self> {
        Self::start_replicated_with(RedisServer::builder(), replicas_per_primary)
    }

    /// [`start_with_replicas`](Self::start_with_replicas) with every node configured by
    /// `node`, as [`start_with`](Self::start_with) says (e.g. a TLS cluster with
    /// replicas, replicating over TLS).
    ///
    /// # Errors
    ///
    /// As [`start_with_replicas`](Self::start_with_replicas).
    pub fn start_replicated_with(
        node: RedisServerBuilder,
        replicas_per_primary: usize,
    ) -> io::Result<Self> {
        let timeout = Self::FAILOVER_NODE_TIMEOUT.as_millis();
        let node = node
            .cluster_node(u64::try_from(timeout).unwrap_or(NODE_TIMEOUT_MS))
            .arg("--cluster-allow-replica-migration")
            .arg("no")
            .arg("--repl-diskless-sync-delay")
            .arg("0");
        Self::launch(node, replicas_per_primary)
    }

    fn launch(node: RedisServerBuilder, replicas: usize) -> io::Result<Self> {
        let n = Self::PRIMARIES * (1 + replicas);
        let servers = (0..n)
            .map(|_| node.clone().start())
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = RedisCluster { servers };
        cluster
            .form(replicas)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot form Redis Cluster: {e}")))?;
        Ok(cluster)
    }

    fn form(&self, replicas: usize) -> io::Result<()> {
        let n = self.servers.len();
        let mut cons = (0..n)
            .map(|i| self.con(i))
            .collect::<io::Result<Vec<_>>>()?;
        for (i, con) in cons.iter_mut().take(Self::PRIMARIES).enumerate() {
            let lo = usize::from(CLUSTER_SLOTS) * i / Self::PRIMARIES;
            let hi = usize::from(CLUSTER_SLOTS) * (i + 1) / Self::PRIMARIES;
            query::<()>(
                con,
                redis::cmd("CLUSTER")
                    .arg("ADDSLOTS")
                    .arg((lo..hi).collect::<Vec<_>>()),
            )?;
            // Distinct epochs, as redis-cli does, so no collision handling is needed.
            query::<()>(
                con,
                redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1),
            )?;
        }
        for s in &self.servers[1..] {
            let mut meet = redis::cmd("CLUSTER");
            meet.arg("MEET").arg("127.0.0.1");
            match s.tls_port() {
                // With `tls-cluster yes` a node's own port is its TLS port, and its bus
                // port is set apart (`--cluster-port`).
                Some(tls) => meet.arg(tls).arg(s.port().saturating_add(BUS_PORT_OFFSET)),
                None => meet.arg(s.port()),
            };
            query::<()>(&mut cons[0], &meet)?;
        }
        let known = |info: &str| has(info, &format!("cluster_known_nodes:{n}"));
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        if n > Self::PRIMARIES {
            // A replica can follow its primary once it knows it.
            poll(deadline, "every node to know every other", || {
                let infos = cons
                    .iter_mut()
                    .map(|c| query::<String>(c, redis::cmd("CLUSTER").arg("INFO")))
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(infos.iter().all(|i| known(i)).then_some(()).ok_or(infos))
            })?;
            let ids = cons
                .iter_mut()
                .take(Self::PRIMARIES)
                .map(|c| query::<String>(c, redis::cmd("CLUSTER").arg("MYID")))
                .collect::<io::Result<Vec<_>>>()?;
            for (i, con) in cons.iter_mut().enumerate().skip(Self::PRIMARIES) {
                let id = &ids[i % Self::PRIMARIES];
                query::<()>(con, redis::cmd("CLUSTER").arg("REPLICATE").arg(id))?;
            }
        }
        poll(deadline, "cluster_state:ok on all nodes", || {
            let infos = cons
                .iter_mut()
                .map(|c| query::<String>(c, redis::cmd("CLUSTER").arg("INFO")))
                .collect::<io::Result<Vec<_>>>()?;
            let ok = |info: &String| {
                has(info, "cluster_state:ok")
                    && has(info, &format!("cluster_slots_assigned:{CLUSTER_SLOTS}"))
                    && known(info)
            };
            Ok(infos.iter().all(ok).then_some(()).ok_or(infos))
        })?;
        if n > Self::PRIMARIES {
            // `CLUSTER SLOTS` lists a replica once its replication offset is not 0:
            // one write (and its undoing) on every primary.
            for (i, con) in cons.iter_mut().take(Self::PRIMARIES).enumerate() {
                let lo = CLUSTER_SLOTS as usize * i / Self::PRIMARIES;
                let hi = CLUSTER_SLOTS as usize * (i + 1) / Self::PRIMARIES;
                let key = (0u32..)
                    .map(|k| format!("redstash-testkit:{k}"))
                    .find(|k| (lo..hi).contains(&usize::from(key_slot(k.as_bytes()))))
                    .unwrap_or_default();
                query::<()>(con, redis::cmd("SET").arg(&key).arg(""))?;
                query::<()>(con, redis::cmd("DEL").arg(&key))?;
            }
            self.wait_until_synced()?;
            poll(deadline, "every node to list every replica", || {
                let mut maps = Vec::with_capacity(n);
                for i in 0..n {
                    maps.push(self.slot_map(i)?);
                }
                let listed = maps.iter().flatten().all(|r| r.3.len() == replicas);
                Ok(listed.then_some(()).ok_or(maps))
            })?;
            self.wait_until_ok()?;
        }
        Ok(())
    }

    /// A connection to node `i` (with a read timeout).
    fn con(&self, i: usize) -> io::Result<redis::Connection> {
        let server = self
            .servers
            .get(i)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no node {i}")))?;
        let con = server
            .client()
            .and_then(|c| c.get_connection_with_timeout(PROBE_TIMEOUT))
            .map_err(io::Error::other)?;
        con.set_read_timeout(Some(PROBE_TIMEOUT))
            .map_err(io::Error::other)?;
        Ok(con)
    }

    /// Whether node `i` answers (it was not killed, or was restarted).
    fn alive(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| ping(s.port()).is_ok())
    }

    /// The index of the node listening on `port` (its plain or its TLS port: a replica
    /// of a TLS cluster names its primary's TLS port).
    fn index_of(&self, port: u16) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.port() == port || s.tls_port() == Some(port))
    }

    /// The role of node `i` (`ROLE`): `Some(None)` for a primary, `Some(Some(port))`
    /// for a replica of the primary at `port`; `None` when it does not answer.
    fn role(&self, i: usize) -> Option<Option<u16>> {
        if !self.alive(i) {
            return None;
        }
        let mut con = self.con(i).ok()?;
        let role: redis::Value = query(&mut con, &redis::cmd("ROLE")).ok()?;
        let redis::Value::Array(items) = role else {
            return None;
        };
        match items.first().map(text).as_deref() {
            Some("master") => Some(None),
            Some("slave") => items
                .get(2)
                .and_then(int)
                .and_then(|p| u16::try_from(p).ok())
                .map(Some),
            _ => None,
        }
    }

    /// The live nodes that are primaries now (indices into [`servers`](Self::servers)),
    /// as each node's `ROLE` says.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| self.role(i) == Some(None))
            .collect()
    }

    /// The live nodes that are replicas now (indices into [`servers`](Self::servers)),
    /// as each node's `ROLE` says.
    pub fn replicas(&self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| matches!(self.role(i), Some(Some(_))))
            .collect()
    }

    /// A live replica of node `primary` (the first by index), if it has one.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        self.servers.get(primary)?;
        (0..self.servers.len()).find(
            |&i| matches!(self.role(i), Some(Some(port)) if self.index_of(port) == Some(primary)),
        )
    }

    /// The node serving hash `slot` as its primary, as the first live node's
    /// `CLUSTER SLOTS` says.
    ///
    /// # Errors
    ///
    /// If no node answers `CLUSTER SLOTS`.
    pub fn primary_of_slot(&self, slot: u16) -> io::Result<Option<usize>> {
        let map = (0..self.servers.len())
            .filter(|&i| self.alive(i))
            .find_map(|i| self.slot_map(i).ok())
            .ok_or_else(|| io::Error::other("no node answers CLUSTER SLOTS"))?;
        Ok(map
            .iter()
            .find(|r| (r.0..=r.1).contains(&slot))
            .and_then(|r| self.index_of(r.2)))
    }

    /// Node `i`'s `CLUSTER SLOTS`: per range, the first and last slot, the primary's
    /// port and its replicas' ports (sorted).
    fn slot_map(&self, i: usize) -> io::Result<Vec<SlotRange>> {
        let mut con = self.con(i)?;
        let v: redis::Value = query(&mut con, redis::cmd("CLUSTER").arg("SLOTS"))?;
        let bad = || io::Error::other(format!("unexpected CLUSTER SLOTS reply from node {i}"));
        let redis::Value::Array(ranges) = v else {
            return Err(bad());
        };
        let port = |node: &redis::Value| match node {
            redis::Value::Array(n) => n.get(1).and_then(int).and_then(|p| u16::try_from(p).ok()),
            _ => None,
        };
        let mut map = Vec::with_capacity(ranges.len());
        for r in &ranges {
            let redis::Value::Array(items) = r else {
                return Err(bad());
            };
            let bound = |k: usize| {
                items
                    .get(k)
                    .and_then(int)
                    .and_then(|s| u16::try_from(s).ok())
            };
            let (Some(lo), Some(hi), Some(primary)) =
                (bound(0), bound(1), items.get(2).and_then(port))
            else {
                return Err(bad());
            };
            let mut replicas: Vec<u16> = items.iter().skip(3).filter_map(port).collect();
            replicas.sort_unstable();
            map.push((lo, hi, primary, replicas));
        }
        map.sort_unstable();
        Ok(map)
    }

    /// Waits (up to 30 s) until the cluster is ok again: every live node reports
    /// `cluster_state:ok`, and every live node's `CLUSTER SLOTS` is the same map,
    /// covering all 16384 slots, naming only live nodes (primaries and replicas). After
    /// a [`kill`](Self::kill) of a primary this is the promotion of its replica.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] with what the nodes last said.
    pub fn wait_until_ok(&self) -> io::Result<()> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        poll(deadline, "the cluster to be ok on every live node", || {
            let live: Vec<usize> = (0..self.servers.len()).filter(|&i| self.alive(i)).collect();
            let live_ports: Vec<u16> = live.iter().map(|&i| self.servers[i].port()).collect();
            let mut maps = Vec::with_capacity(live.len());
            for &i in &live {
                let mut con = self.con(i)?;
                let info: String = query(&mut con, redis::cmd("CLUSTER").arg("INFO"))?;
                if !has(&info, "cluster_state:ok") {
                    return Ok(Err(format!("node {i}: {info}")));
                }
                maps.push(self.slot_map(i)?);
            }
            let Some(first) = maps.first() else {
                return Ok(Err("no live node".to_owned()));
            };
            let covered: usize = first.iter().map(|r| usize::from(r.1 - r.0) + 1).sum();
            let live_only = first
                .iter()
                .all(|r| live_ports.contains(&r.2) && r.3.iter().all(|p| live_ports.contains(p)));
            if covered == usize::from(CLUSTER_SLOTS) && live_only && maps.iter().all(|m| m == first)
            {
                Ok(Ok(()))
            } else {
                Ok(Err(format!(
                    "slot maps (live ports {live_ports:?}): {maps:?}"
                )))
            }
        })
    }

    /// Waits (up to 30 s) until every live replica reports `master_link_status:up` and
    /// its replication offset reached its primary's (as read at the start of the wait).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] with the replicas' `INFO replication`.
    pub fn wait_until_synced(&self) -> io::Result<()> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let mut targets: Vec<(usize, Option<i64>)> = Vec::new();
        for r in self.replicas() {
            let primary = self.role(r).flatten().and_then(|p| self.index_of(p));
            let offset = match primary {
                Some(p) => Some(info_field(&self.replication(p)?, "master_repl_offset")?),
                None => None,
            };
            targets.push((r, offset));
        }
        poll(deadline, "every replica to be in sync", || {
            for &(r, target) in &targets {
                let info = self.replication(r)?;
                let synced = has(&info, "master_link_status:up")
                    && match target {
                        Some(t) => info_field(&info, "slave_repl_offset")? >= t,
                        None => false,
                    };
                if !synced {
                    return Ok(Err(format!(
                        "replica {r} (target offset {target:?}): {info}"
                    )));
                }
            }
            Ok(Ok(()))
        })
    }

    /// Node `i`'s `INFO replication`.
    fn replication(&self, i: usize) -> io::Result<String> {
        query(&mut self.con(i)?, redis::cmd("INFO").arg("replication"))
    }

    /// A manual failover: `CLUSTER FAILOVER` on node `replica`, then waits (up to 30 s)
    /// until it is a primary, the cluster is [ok](Self::wait_until_ok) and the replicas
    /// (the old primary among them) are [in sync](Self::wait_until_synced). No write
    /// acknowledged by the old primary is lost (the replica catches up first).
    ///
    /// # Errors
    ///
    /// If `replica` is not a replica, refuses the failover, or the waits time out.
    pub fn failover(&self, replica: usize) -> io::Result<()> {
        query::<()>(
            &mut self.con(replica)?,
            redis::cmd("CLUSTER").arg("FAILOVER"),
        )?;
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        poll(deadline, "the replica to be promoted", || {
            Ok(match self.role(replica) {
                Some(None) => Ok(()),
                other => Err(format!("role of node {replica}: {other:?}")),
            })
        })?;
        self.wait_until_ok()?;
        self.wait_until_synced()
    }

    /// Kills node `node` with `SIGKILL` ([`RedisServer::kill`]): a crash. Returns at
    /// once (the port is closed); the cluster notices after about the node timeout, and
    /// when `node` was a primary with a replica, the replica is promoted
    /// ([`wait_until_ok`](Self::wait_until_ok) waits for that). Nothing happens for a
    /// node index out of range.
    pub fn kill(&mut self, node: usize) {
        if let Some(s) = self.servers.get_mut(node) {
            s.kill();
        }
    }

    /// Starts a [killed](Self::kill) node again (same port, same cluster identity, no
    /// data: it runs without persistence), then waits until the cluster is
    /// [ok](Self::wait_until_ok) and the replicas [in sync](Self::wait_until_synced). A
    /// primary whose slots were taken over meanwhile comes back as a replica of the
    /// node that took them.
    ///
    /// # Errors
    ///
    /// If the node cannot be started, or the waits time out.
    pub fn restart(&mut self, node: usize) -> io::Result<()> {
        self.servers
            .get_mut(node)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no node {node}")))?
            .restart()?;
        self.wait_until_ok()?;
        // A returning primary learns it lost its slots, then follows the new owner.
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        poll(deadline, "the restarted node to take its role", || {
            let role = self.role(node);
            let serves = self
                .slot_map(node)?
                .iter()
                .any(|r| self.servers.get(node).is_some_and(|s| s.port() == r.2));
            Ok(match role {
                Some(Some(_)) => Ok(()),
                Some(None) if serves => Ok(()),
                other => Err(format!("role of node {node}: {other:?}")),
            })
        })?;
        self.wait_until_ok()?;
        self.wait_until_synced()
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT/`, one per node (primaries first, then
    /// replicas, in the order they were started).
    pub fn nodes(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The URLs of the nodes' TLS ports, `rediss://127.0.0.1:TLS_PORT/` (with the
    /// [password](RedisServerBuilder::password), if one was set), one per node in the
    /// order of [`nodes`](Self::nodes), when the cluster was started with
    /// [`tls`](RedisServerBuilder::tls) (else `None`). The client must trust the CA
    /// that signed the nodes' certificate.
    ///
    /// ```no_run
    /// # use redstash::testkit::{RedisCluster, RedisServer, TlsFiles};
    /// # fn files() -> TlsFiles { unimplemented!() }
    /// let cluster = RedisCluster::start_with(RedisServer::builder().tls(files()))?;
    /// let seeds = cluster.tls_nodes().expect("a TLS cluster"); // ["rediss://127.0.0.1:PORT/", ...]
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls_nodes(&self) -> Option<Vec<String>> {
        self.servers.iter().map(RedisServer::tls_url).collect()
    }

    /// The nodes' URLs for an [ACL user](RedisServerBuilder::acl_user) of
    /// [`start_with`](Self::start_with): `redis://USER:PW@127.0.0.1:PORT/`.
    pub fn nodes_for(&self, user: &str, pw: &str) -> Vec<String> {
        self.servers.iter().map(|s| s.url_for(user, pw)).collect()
    }

    /// The nodes themselves, e.g. to [`stop`](RedisServer::stop) one of them.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Mutable access to the nodes, e.g. to stop a single one.
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// Kills all nodes and waits for them. Idempotent.
    pub fn stop(&mut self) {
        self.servers.iter_mut().for_each(RedisServer::stop);
    }
}

/// A range of `CLUSTER SLOTS`: first and last slot, the primary's port, its replicas'
/// ports (sorted).
type SlotRange = (u16, u16, u16, Vec<u16>);

/// Run `cmd` on `con`.
fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, cmd: &redis::Cmd) -> io::Result<T> {
    cmd.query(con).map_err(io::Error::other)
}

/// Whether `info` has the line `line`.
fn has(info: &str, line: &str) -> bool {
    info.lines().any(|l| l.trim() == line)
}

/// The integer field `name` of an `INFO` reply.
fn info_field(info: &str, name: &str) -> io::Result<i64> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {name} in {info}")))
}

fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    }
}

/// Polls `check` every 50 ms until it is `Ok(Ok(_))` or `deadline` passes (then a
/// `TimedOut` error waiting for `what`, with the last `Err` it gave). An I/O error of
/// `check` is retried too (a node may be busy), and reported if it is the last word.
fn poll<T, E: std::fmt::Debug>(
    deadline: Instant,
    what: &str,
    mut check: impl FnMut() -> io::Result<Result<T, E>>,
) -> io::Result<T> {
    loop {
        let last = match check() {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => format!("{e:#?}"),
            Err(e) => format!("{e}"),
        };
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out waiting for {what}: {last}"),
            ));
        }
        std::thread::sleep(POLL);
    }
}
