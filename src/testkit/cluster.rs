//! A Redis Cluster of [`RedisServer`]s.

use std::io;
use std::time::{Duration, Instant};

use super::server::{RedisServer, RedisServerBuilder};

/// How long [`RedisCluster::start`] waits for `cluster_state:ok` on every node.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Number of hash slots in a Redis Cluster.
const CLUSTER_SLOTS: u16 = 16384;

/// A 3-primary Redis Cluster (no replicas) on 127.0.0.1, for tests.
///
/// Each node is a [`RedisServer`] with `cluster-enabled yes`, its own port
/// and directory. The slots are split evenly with `CLUSTER ADDSLOTS`, the
/// nodes are joined with `CLUSTER MEET`, and [`start`](Self::start) returns
/// once every node reports `cluster_state:ok` with all 16384 slots assigned.
/// All nodes are killed on drop.
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
    /// [password](RedisServerBuilder::password) and [arguments](RedisServerBuilder::arg).
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
        let servers = (0..Self::PRIMARIES)
            .map(|_| node.clone().cluster_node().start())
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = RedisCluster { servers };
        cluster
            .form()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot form Redis Cluster: {e}")))?;
        Ok(cluster)
    }

    fn form(&self) -> io::Result<()> {
        let n = self.servers.len();
        let mut cons = self
            .servers
            .iter()
            .map(|s| s.client()?.get_connection())
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(io::Error::other)?;
        for (i, con) in cons.iter_mut().enumerate() {
            let lo = usize::from(CLUSTER_SLOTS) * i / n;
            let hi = usize::from(CLUSTER_SLOTS) * (i + 1) / n;
            redis::cmd("CLUSTER")
                .arg("ADDSLOTS")
                .arg((lo..hi).collect::<Vec<_>>())
                .query::<()>(con)
                .map_err(io::Error::other)?;
            // Distinct epochs, as redis-cli does, so no collision handling is needed.
            redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query::<()>(con)
                .map_err(io::Error::other)?;
        }
        for s in &self.servers[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(s.port())
                .query::<()>(&mut cons[0])
                .map_err(io::Error::other)?;
        }
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let infos = cons
                .iter_mut()
                .map(|c| redis::cmd("CLUSTER").arg("INFO").query::<String>(c))
                .collect::<redis::RedisResult<Vec<_>>>()
                .map_err(io::Error::other)?;
            let ok = |info: &String| {
                let has = |line: String| info.lines().any(|l| l.trim() == line);
                has("cluster_state:ok".to_owned())
                    && has(format!("cluster_slots_assigned:{CLUSTER_SLOTS}"))
                    && has(format!("cluster_known_nodes:{n}"))
            };
            if infos.iter().all(ok) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cluster_state not ok on all nodes within {CLUSTER_TIMEOUT:?}: {infos:#?}"
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT/`, one per primary.
    pub fn nodes(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
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
