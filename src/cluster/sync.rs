//! The blocking cluster connection.

use std::collections::HashMap;
use std::time::Duration;

use redis::{IntoConnectionInfo, Value};

use super::plan::Plan;
use super::round::{Outcome, Round, Rounds, conclude};
use super::router::{Router, readonly_cmd, slots_cmd};
use super::window::{Answers, Cut, Windows};
use crate::direct::{ConnectOptions, DirectConnection};
use crate::error::{Error, Result};
use crate::exec::{Delivered, Request, Requests, SyncConnection};

/// A connection to a Redis Cluster that runs any redstash plan (see the
/// [module docs](super) for how commands are routed).
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
    router: Router,
    cons: HashMap<String, DirectConnection>,
}

impl ClusterConnection {
    /// Connect to a cluster through any of `seeds` (URLs such as `redis://host:port`,
    /// with `redis://user:password@host:port` for ACL/password auth, which every node
    /// gets; `rediss://host:port` for TLS, feature `tls`; or
    /// [`redis::ConnectionInfo`]s), and read its slot map. The node connections have
    /// the default [`ConnectOptions`] (5 s connect timeout, 10 s response timeout, the
    /// system's root certificates for TLS); see [`open_with`](Self::open_with).
    ///
    /// Fails if no seed is given, a seed is not a TCP address, the seeds mix `redis://`
    /// and `rediss://`, or no seed answers `CLUSTER SLOTS` (the error of the last one).
    pub fn open<T: IntoConnectionInfo>(seeds: impl IntoIterator<Item = T>) -> Result<Self> {
        Self::open_with(seeds, ConnectOptions::default())
    }

    /// [`open`](Self::open) with every node connection (to the seeds, and to every
    /// primary and replica the slot map names) opened with `options`: its connect and
    /// response timeouts and, feature `tls`, its TLS settings
    /// ([`ConnectOptions::with_tls`]: trusted CAs, client certificate, insecure mode).
    ///
    /// The seeds' scheme is every node's: with `rediss://` seeds, every node is
    /// connected to with TLS (as servers with `tls-cluster yes` expect, which announce
    /// their TLS ports to TLS clients), the server name checked being the host the slot
    /// map gives (an IP address, usually: the nodes' certificates must be for it), and a
    /// `#insecure` seed makes every node connection insecure.
    ///
    /// The options' retry policy is not used: the cluster connection sends and
    /// retries itself, under its own policy ([`with_retry`](Self::with_retry), default
    /// [`RetryPolicy::failover`](crate::exec::RetryPolicy::failover)), so nothing is
    /// sent again twice over. Nor is reconnection: a node connection that broke is
    /// dropped, the slot map read again, and a new connection opened at the node's
    /// next use.
    ///
    /// ```no_run
    /// # #[cfg(feature = "tls")] {
    /// use std::time::Duration;
    /// use redstash::cluster::ClusterConnection;
    /// use redstash::direct::{ConnectOptions, TlsOptions};
    ///
    /// let options = ConnectOptions::default()
    ///     .with_response_timeout(Some(Duration::from_secs(2)))
    ///     .with_tls(TlsOptions::default().with_ca_file("ca.pem")?);
    /// let con = ClusterConnection::open_with(["rediss://10.0.0.1:6380", "rediss://10.0.0.2:6380"], options)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); a failed TLS handshake is an error of kind
    /// [`Tls`](crate::RedisErrorKind::Tls), a seed that does not answer within the
    /// response timeout one of kind [`Timeout`](crate::RedisErrorKind::Timeout).
    pub fn open_with<T: IntoConnectionInfo>(
        seeds: impl IntoIterator<Item = T>,
        options: ConnectOptions,
    ) -> Result<Self> {
        let mut con = ClusterConnection {
            router: Router::new(seeds, options)?,
            cons: HashMap::new(),
        };
        con.refresh()?;
        Ok(con)
    }

    cluster_options!();

    /// Sets (or clears, with `None`) the response timeout of every node connection, now
    /// and for those opened later (see
    /// [`ConnectOptions::with_response_timeout`]).
    pub fn set_timeout(&mut self, dur: Option<Duration>) -> Result<()> {
        self.router.set_response_timeout(dur);
        for con in self.cons.values_mut() {
            con.set_timeout(dur)?;
        }
        Ok(())
    }

    /// The options the node connections are opened with (those of
    /// [`open_with`](Self::open_with), without their retry policy, which the cluster
    /// connection does not use: see there).
    pub fn options(&self) -> &ConnectOptions {
        &self.router.options
    }

    /// The addresses (`host:port`) of the primaries, sorted (as of the last slot map).
    pub fn primaries(&self) -> &[String] {
        self.router.topology.primaries()
    }

    /// The address of the primary serving `slot` (as of the last slot map).
    pub fn slot_owner(&self, slot: u16) -> Option<&str> {
        self.router.slot_owner(slot)
    }

    /// Read the slot map again (`CLUSTER SLOTS`), from a known primary or a seed.
    pub fn refresh(&mut self) -> Result<()> {
        let mut last = None;
        for addr in self.router.map_sources() {
            let reply = self
                .connection(&addr)
                .and_then(|con| Ok(con.exec(&[slots_cmd()], false)?.pop()));
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
    fn connection(&mut self, addr: &str) -> Result<&mut DirectConnection> {
        if !self.cons.get(addr).is_some_and(DirectConnection::is_open) {
            let info = self.router.node_info(addr)?;
            let mut con = DirectConnection::open_with(info, self.router.options.clone())?;
            if self.router.replica_reads {
                // A replica serves reads of its primary's slots; a primary ignores it.
                con.exec(&[readonly_cmd()], false)?;
            }
            self.cons.insert(addr.to_owned(), con);
        }
        self.cons
            .get_mut(addr)
            .ok_or_else(|| Error::connection_lost(format!("no connection to {addr}")))
    }

    /// Run requests (their replies, per request).
    fn execute(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Vec<Value>>> {
        let plan = self.plan(reqs)?;
        self.drive(plan, reqs)
            .map_err(|cut| cut.error)?
            .into_replies()
    }

    /// Route requests (reading the slot map first if it is stale); nothing is sent.
    fn plan(&mut self, reqs: &[Request<'_>]) -> Result<Plan> {
        if self.router.stale {
            self.refresh()?;
        }
        Plan::new(reqs, &self.router.topology)
    }

    /// Send routed requests, following redirections, and return their replies; on a
    /// failure, the error and what became of each request.
    fn drive(
        &mut self,
        mut plan: Plan,
        reqs: &[Request<'_>],
    ) -> std::result::Result<Answers, Box<Cut>> {
        let mut out = plan.empty_replies();
        let result = self.rounds(&mut plan, reqs, &mut out);
        conclude(plan, out, result)
    }

    /// The rounds of a plan: until every unit is answered (or a failure).
    fn rounds(
        &mut self,
        plan: &mut Plan,
        reqs: &[Request<'_>],
        out: &mut [Vec<Value>],
    ) -> Result<()> {
        let mut rounds = Rounds::new(plan);
        while let Some(pending) = rounds.pending() {
            let outcome = self.round(plan, reqs, pending, out)?;
            if let Some(next) = rounds.after(&self.router, outcome)? {
                if let Some(d) = next.pause {
                    std::thread::sleep(d);
                }
                if next.refresh {
                    self.refresh()?;
                }
                self.router.follow_moved(&next.moved);
            }
        }
        Ok(())
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
        let mut round = Round::start(&self.router, plan, pending)?;
        let mut sent: Vec<Result<usize>> = Vec::with_capacity(round.nodes());
        for i in 0..round.nodes() {
            let mut writing = false;
            let result = round.batches(plan, reqs, i).and_then(|batches| {
                let con = self.connection(round.address(i))?;
                con.begin()?;
                writing = true;
                let mut owed = 0;
                for (frames, atomic) in &batches {
                    owed += con.send(frames, *atomic)?;
                }
                Ok(owed)
            });
            round.written(plan, i, writing);
            sent.push(result);
        }
        for (i, n) in sent.into_iter().enumerate() {
            let addr = round.address(i);
            let raw = n.and_then(|n| match self.cons.get_mut(addr) {
                Some(con) => con.recv(n).map_err(Error::from),
                None => Err(Error::connection_lost("node connection lost")),
            });
            if !round.replied(&mut self.router, plan, reqs, i, raw, out)? {
                let addr = round.address(i).to_owned();
                self.cons.remove(&addr);
            }
        }
        round.end()
    }
}

impl SyncConnection for ClusterConnection {
    fn run_request(&mut self, req: &Request<'_>) -> Result<Vec<Value>> {
        let mut replies = self.execute(std::slice::from_ref(req))?;
        replies
            .pop()
            .ok_or_else(|| Error::unexpected("no replies", req.key().map(str::to_owned)))
    }

    /// Routes and pipelines the requests together, a window of them at a time (about
    /// 20,000 commands), so memory stays bounded. When a window fails, its requests
    /// count as in flight (a node's replies are not told apart from another's yet), the
    /// windows before it as answered and those after it as not sent.
    fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
        let mut windows = Windows::new(reqs);
        while let Some(window) = windows.next_window() {
            let result = match self.plan(&window) {
                Ok(plan) => self.drive(plan, &window),
                Err(error) => Err(Cut::nothing_sent(error)),
            };
            windows.record(&window, result)?;
        }
        windows.finish()
    }
}
