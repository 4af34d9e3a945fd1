//! The async (tokio) cluster connection.

use std::collections::HashMap;

use redis::{IntoConnectionInfo, Value};

use super::plan::Plan;
use super::round::{Outcome, Outgoing, Round, Rounds, conclude};
use super::router::{Router, readonly_cmd, slots_cmd};
use super::window::{Answers, Cut, Windows};
use crate::direct::{ConnectOptions, DirectAsyncConnection};
use crate::error::{Error, Result};
use crate::exec::{AsyncConnection, Delivered, Request, Requests};

/// [`ClusterConnection`](super::ClusterConnection) on tokio (feature `tokio`): one
/// [`DirectAsyncConnection`] per primary, the same routing (see the
/// [module docs](super)); an [`AsyncConnection`] for the stores' `*_async` operations.
///
/// ```no_run
/// use redstash::ArrayStore;
/// use redstash::cluster::ClusterAsyncConnection;
/// # async fn demo() -> redstash::Result<()> {
/// let mut con = ClusterAsyncConnection::open(["redis://127.0.0.1:7000"]).await?;
/// let store = ArrayStore::new("arrays");
/// store.put_async(&mut con, "a", &ndarray::arr1(&[1u8, 2, 3])).await?;
/// assert!(store.get_async(&mut con, "a").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ClusterAsyncConnection {
    router: Router,
    cons: HashMap<String, DirectAsyncConnection>,
}

impl ClusterAsyncConnection {
    /// Connect to a cluster through any of `seeds` (URLs such as `redis://host:port`,
    /// with `redis://user:password@host:port` for ACL/password auth, which every node
    /// gets; `rediss://host:port` for TLS, feature `tls`; or
    /// [`redis::ConnectionInfo`]s), and read its slot map. The node connections have
    /// the default [`ConnectOptions`]; see [`open_with`](Self::open_with).
    ///
    /// Fails if no seed is given, a seed is not a TCP address, the seeds mix `redis://`
    /// and `rediss://`, or no seed answers `CLUSTER SLOTS` (the error of the last one).
    pub async fn open<T: IntoConnectionInfo>(seeds: impl IntoIterator<Item = T>) -> Result<Self> {
        Self::open_with(seeds, ConnectOptions::default()).await
    }

    /// [`open`](Self::open) with every node connection (to the seeds, and to every
    /// primary and replica the slot map names) opened with `options`: connect and
    /// response timeouts and, feature `tls`, TLS settings, as
    /// [`ClusterConnection::open_with`](super::ClusterConnection::open_with) says (a
    /// `rediss://` seed makes every node connection TLS; the options' retry policy and
    /// reconnection are not used: the cluster connection retries under its own policy,
    /// [`with_retry`](Self::with_retry), and opens a new connection to a node whose
    /// connection broke).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); a failed TLS handshake is an error of kind
    /// [`Tls`](crate::RedisErrorKind::Tls), a seed that does not answer within the
    /// response timeout one of kind [`Timeout`](crate::RedisErrorKind::Timeout).
    pub async fn open_with<T: IntoConnectionInfo>(
        seeds: impl IntoIterator<Item = T>,
        options: ConnectOptions,
    ) -> Result<Self> {
        let mut con = ClusterAsyncConnection {
            router: Router::new(seeds, options)?,
            cons: HashMap::new(),
        };
        con.refresh().await?;
        Ok(con)
    }

    /// The options the node connections are opened with (those of
    /// [`open_with`](Self::open_with), without their retry policy, which the cluster
    /// connection does not use).
    pub fn options(&self) -> &ConnectOptions {
        &self.router.options
    }

    cluster_options!();

    /// The addresses (`host:port`) of the primaries, sorted (as of the last slot map).
    pub fn primaries(&self) -> &[String] {
        self.router.topology.primaries()
    }

    /// The address of the primary serving `slot` (as of the last slot map).
    pub fn slot_owner(&self, slot: u16) -> Option<&str> {
        self.router.slot_owner(slot)
    }

    /// Read the slot map again (`CLUSTER SLOTS`), from a known primary or a seed.
    pub async fn refresh(&mut self) -> Result<()> {
        let mut last = None;
        for addr in self.router.map_sources() {
            let reply = match self.connection(&addr).await {
                Ok(con) => con
                    .exec(&[slots_cmd()], false)
                    .await
                    .map(|mut r| r.pop())
                    .map_err(Error::from),
                Err(e) => Err(e),
            };
            match self.router.adopt_slots(&addr, reply) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.cons.remove(&addr);
                    last = Some(e);
                }
            }
        }
        Err(last
            .unwrap_or_else(|| Error::connection_lost("no cluster node to ask for the slot map")))
    }

    /// The connection to `addr`, opened if needed (again if it broke).
    async fn connection(&mut self, addr: &str) -> Result<&mut DirectAsyncConnection> {
        if !self
            .cons
            .get(addr)
            .is_some_and(DirectAsyncConnection::is_open)
        {
            let info = self.router.node_info(addr)?;
            let mut con =
                DirectAsyncConnection::open_with(info, self.router.options.clone()).await?;
            if self.router.replica_reads {
                // A replica serves reads of its primary's slots; a primary ignores it.
                con.exec(&[readonly_cmd()], false).await?;
            }
            self.cons.insert(addr.to_owned(), con);
        }
        self.cons
            .get_mut(addr)
            .ok_or_else(|| Error::connection_lost(format!("no connection to {addr}")))
    }

    /// Run requests (their replies, per request).
    async fn execute(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Vec<Value>>> {
        let plan = self.plan(reqs).await?;
        self.drive(plan, reqs)
            .await
            .map_err(|cut| cut.error)?
            .into_replies()
    }

    /// Route requests (reading the slot map first if it is stale); nothing is sent.
    async fn plan(&mut self, reqs: &[Request<'_>]) -> Result<Plan> {
        if self.router.stale {
            self.refresh().await?;
        }
        Plan::new(reqs, &self.router.topology)
    }

    /// Send routed requests, following redirections, and return their replies; on a
    /// failure, the error and what became of each request.
    async fn drive(
        &mut self,
        mut plan: Plan,
        reqs: &[Request<'_>],
    ) -> std::result::Result<Answers, Box<Cut>> {
        let mut out = plan.empty_replies();
        let result = self.rounds(&mut plan, reqs, &mut out).await;
        conclude(plan, out, result)
    }

    /// The rounds of a plan: until every unit is answered (or a failure).
    async fn rounds(
        &mut self,
        plan: &mut Plan,
        reqs: &[Request<'_>],
        out: &mut [Vec<Value>],
    ) -> Result<()> {
        let mut rounds = Rounds::new(plan);
        while let Some(pending) = rounds.pending() {
            let outcome = self.round(plan, reqs, pending, out).await?;
            if let Some(next) = rounds.after(&self.router, outcome)? {
                if let Some(d) = next.pause {
                    tokio::time::sleep(d).await;
                }
                if next.refresh {
                    self.refresh().await?;
                }
                self.router.follow_moved(&next.moved);
            }
        }
        Ok(())
    }

    /// Send the `pending` units (each node's share as one pipeline, written to every
    /// node before any reply is read) and deliver their replies.
    async fn round(
        &mut self,
        plan: &mut Plan,
        reqs: &[Request<'_>],
        pending: &[usize],
        out: &mut [Vec<Value>],
    ) -> Result<Outcome> {
        let mut round = Round::start(&self.router, plan, pending)?;
        let mut sent: Vec<Result<usize>> = Vec::with_capacity(round.nodes());
        for i in 0..round.nodes() {
            let mut writing = false;
            let result = match round.batches(plan, reqs, i) {
                Ok(batches) => self.send(round.address(i), &batches, &mut writing).await,
                Err(e) => Err(e),
            };
            round.written(plan, i, writing);
            sent.push(result);
        }
        for (i, n) in sent.into_iter().enumerate() {
            let raw = match (n, self.cons.get_mut(round.address(i))) {
                (Ok(n), Some(con)) => con.recv(n).await.map_err(Error::from),
                (Ok(_), None) => Err(Error::connection_lost("node connection lost")),
                (Err(e), _) => Err(e),
            };
            if !round.replied(&mut self.router, plan, reqs, i, raw, out)? {
                let addr = round.address(i).to_owned();
                self.cons.remove(&addr);
            }
        }
        round.end()
    }

    /// Write `batches` to the node at `addr`; the raw replies owed. `writing` is set
    /// once the first byte may have been written.
    async fn send(
        &mut self,
        addr: &str,
        batches: &[(Vec<Outgoing<'_>>, bool)],
        writing: &mut bool,
    ) -> Result<usize> {
        let con = self.connection(addr).await?;
        con.begin().await?;
        *writing = true;
        let mut owed = 0;
        for (frames, atomic) in batches {
            owed += con.send(frames, *atomic).await?;
        }
        Ok(owed)
    }
}

impl AsyncConnection for ClusterAsyncConnection {
    async fn run_request(&mut self, req: Request<'_>) -> Result<Vec<Value>> {
        let mut replies = self.execute(std::slice::from_ref(&req)).await?;
        replies
            .pop()
            .ok_or_else(|| Error::unexpected("no replies", req.key().map(str::to_owned)))
    }

    /// Routes and pipelines the requests together, a window of them at a time (about
    /// 20,000 commands), so memory stays bounded. When a window fails, its requests
    /// count as in flight (a node's replies are not told apart from another's yet), the
    /// windows before it as answered and those after it as not sent.
    async fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
        let mut windows = Windows::new(reqs);
        while let Some(window) = windows.next_window() {
            let result = match self.plan(&window).await {
                Ok(plan) => self.drive(plan, &window).await,
                Err(error) => Err(Cut::nothing_sent(error)),
            };
            windows.record(&window, result)?;
        }
        windows.finish()
    }
}
