//! Running plans on a Redis Cluster (feature `cluster`).
//!
//! [`ClusterConnection`] is a [`SyncConnection`](crate::exec::SyncConnection) (and, with
//! the feature `tokio`, `ClusterAsyncConnection` an `AsyncConnection`): every store
//! operation runs on it unchanged, as it runs on a single server. It holds one redstash
//! [`DirectConnection`](crate::direct::DirectConnection) per node it talks to (the same fast, vectored, pipelining connection as
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
//!   the request fails with [`Error::CrossSlot`](crate::Error::CrossSlot);
//! * `SCAN` walks every primary: the cursor a plan sees is a composite one (the index
//!   of the primary in the high bits, that node's cursor in the low 50 bits), which
//!   is 0 only after the last primary is done, so a plan's `SCAN` loop finds every
//!   key of the cluster once (keys that move between primaries during the walk, in a
//!   resharding, may be missed or seen twice, as `SCAN` itself allows);
//! * `DBSIZE` (added), `KEYS` (concatenated), `FLUSHALL`/`FLUSHDB`, `SCRIPT LOAD`/`FLUSH`,
//!   `FUNCTION LOAD`/`FLUSH`/`DELETE`/`RESTORE` and `CONFIG SET`/`RESETSTAT` go to every
//!   primary; other keyless commands (`PING`, `INFO`, `TIME`, ...) go to one primary;
//! * a `MOVED` reply (a resharding or a failover) refreshes the slot map and sends the
//!   redirected commands again, to the node `MOVED` named (a redirected command was not
//!   executed); `ASK` sends them to the importing node after `ASKING`. After
//!   [`with_max_redirects`](ClusterConnection::with_max_redirects) such rounds (the
//!   second and later after a short pause) the redirection is returned as an
//!   [`Error::Redis`](crate::Error::Redis) of kind
//!   [`RedisErrorKind::Redirect`](crate::RedisErrorKind::Redirect);
//! * `TRYAGAIN`, `CLUSTERDOWN`, `LOADING` and `MASTERDOWN` (nothing ran) are sent again
//!   after a pause, with exponential backoff, as the [`RetryPolicy`](crate::exec::RetryPolicy) says (default:
//!   pauses from 20 ms up to 1 s, 5 s of pauses per call at most), then returned
//!   (kind `Transient`).
//!
//! # Connection options and TLS
//!
//! [`ClusterConnection::open_with`] (and `ClusterAsyncConnection::open_with`) opens
//! every node connection with the given [`ConnectOptions`](crate::direct::ConnectOptions):
//! connect and response timeouts (a node that stops answering fails a call with an
//! error of kind [`Timeout`](crate::RedisErrorKind::Timeout) after the response
//! timeout, and counts as failed: see below) and, feature `tls`, the TLS settings. The
//! seeds' scheme is every node's: with `rediss://` seeds every node, replicas
//! included, is connected to with TLS, as a cluster of servers with `tls-cluster yes`
//! expects (such a server names its nodes' TLS ports in `CLUSTER SLOTS` and `MOVED`
//! replies to TLS clients, their plain ports to plain ones); the TLS server name is the
//! host the slot map gives, usually an IP address, which the nodes' certificates must
//! then name. Seeds that mix `redis://` and `rediss://` are refused. The options'
//! retry policy is not used: the cluster connection retries under its own
//! ([`with_retry`](ClusterConnection::with_retry)).
//!
//! # Failover
//!
//! A connection error (a node killed, restarted or unreachable) drops that node's
//! connection and reads the slot map again, from any node the connection knows
//! (primaries, their replicas, then the seeds). What the failed node was sent is then
//! handled by what it is:
//!
//! * not written yet (the node could not be reached): sent again, after a pause, as the
//!   [`RetryPolicy`](crate::exec::RetryPolicy) says, so a call waits for the promotion of a dead primary's
//!   replica (as long as the retry budget lasts);
//! * only reads (`GET`, `MGET`, `HGETALL`, `EXISTS`, ...), or of a request marked
//!   [idempotent](crate::exec::Request::idempotent): sent again likewise;
//! * anything else (a write that may have run): not sent again. The call fails with
//!   an [`Error::Redis`](crate::Error::Redis) of kind `Connection`; in a `SendAll`, that
//!   request is [in flight](crate::exec::Delivery::InFlight) and every other one as it
//!   went (answered, refused, or not sent), so a bulk write reports it `unknown`. The
//!   next call reads the slot map again.
//!
//! A manual failover (`CLUSTER FAILOVER`) is followed through `MOVED`. Reads may go to
//! replicas with [`with_replica_reads`](ClusterConnection::with_replica_reads) (off by
//! default: every command goes to a primary).
//!
//! # Durability: when an acknowledged write can be lost
//!
//! Redis replicates asynchronously: a primary acknowledges a write once it ran in its
//! memory, and streams it to its replicas afterwards. A write acknowledged to this
//! connection is lost when its primary stops (a crash, a kill, a machine lost, or a
//! network partition that leaves it on the minority side, where it keeps acknowledging
//! writes for up to `cluster-node-timeout`) before the write reached the replica that
//! is then promoted in its place. A manual `CLUSTER FAILOVER` (without `FORCE` or
//! `TAKEOVER`) loses nothing: the replica catches up first. A primary restarted
//! without persistence loses everything it held, whatever its replicas have.
//!
//! [`with_wait(n, timeout)`](ClusterConnection::with_wait) follows the writes sent to
//! each node with `WAIT n timeout` in the same pipeline: a write is reported written
//! only once `n` replicas have it; otherwise it is an error of kind
//! [`NotReplicated`](crate::RedisErrorKind::NotReplicated) (in a `SendAll`, the request
//! is in flight: it ran on the primary, and may or may not survive a failover). With
//! `n` replicas acknowledging, a write survives the loss of its primary when one of
//! those replicas is promoted (Redis promotes the replica with the most data first,
//! but `WAIT` does not make a cluster strongly consistent: a replica that lags, alone
//! in a partition with the majority, may still win).

/// The options both cluster connections take (their `router` holds them), written once.
macro_rules! cluster_options {
    () => {
        /// Fail a call after `n` rounds of redirections (`MOVED`, `ASK`, `TRYAGAIN`,
        /// `CLUSTERDOWN`) instead of [`DEFAULT_MAX_REDIRECTS`](super::DEFAULT_MAX_REDIRECTS).
        pub fn with_max_redirects(mut self, n: usize) -> Self {
            self.router.max_redirects = n;
            self
        }

        /// Retry what may be sent again after a connection failure or a `TRYAGAIN` /
        /// `CLUSTERDOWN` / `LOADING` / `MASTERDOWN` reply, with exponential backoff, as
        /// `retry` says (default [`RetryPolicy::failover()`](crate::exec::RetryPolicy::failover):
        /// pauses from 20 ms doubling up to 1 s, at most 5 s of pauses per call;
        /// [`RetryPolicy::none()`](crate::exec::RetryPolicy::none) turns it off). This is what lets a connection ride out a failover: the node
        /// that is gone makes the slot map be read again from any other known node, until
        /// its replica is promoted. Only units that are not written yet, that only read, or
        /// whose request is [idempotent](crate::exec::Request::idempotent) are sent again;
        /// a write in flight to a node that failed fails the call with a `Connection` error
        /// (in a `SendAll`, that request is in flight, the others as they went).
        pub fn with_retry(mut self, retry: crate::exec::RetryPolicy) -> Self {
            self.router.retry = retry;
            self
        }

        /// Send read-only commands (`GET`, `MGET`, `HGET`, `HGETALL`, `EXISTS`, `GETRANGE`,
        /// `STRLEN`, ...: the commands that only read) of a slot to a replica of the slot's
        /// primary, after `READONLY` on that replica's connection (default: off, every
        /// command goes to the primary). Writes, transactions, keyless commands and `SCAN`
        /// still go to the primaries. A replica is chosen by slot among those of the
        /// primary; a replica whose connection failed is left out until the slot map
        /// changes. Replication is asynchronous: a read from a replica may not see a write
        /// the primary already acknowledged.
        pub fn with_replica_reads(mut self, on: bool) -> Self {
            self.router.replica_reads = on;
            self
        }

        /// Follow the writes sent to each node in a round with `WAIT replicas timeout` on
        /// the same connection, in the same pipeline (default: no `WAIT`). When fewer than
        /// `replicas` replicas acknowledged the writes within `timeout` (at least 1 ms),
        /// the writes ran on the primary but are not proven replicated: a single request
        /// fails with an [`Error::Redis`](crate::Error::Redis) of kind
        /// [`NotReplicated`](crate::RedisErrorKind::NotReplicated), and in a `SendAll` such
        /// requests are in flight ([`Delivery::InFlight`](crate::exec::Delivery::InFlight),
        /// so a bulk write reports their items `unknown`, not `written`). See the
        /// [module docs](super) for when an acknowledged write can be lost without it.
        /// `replicas = 0` turns it off.
        pub fn with_wait(mut self, replicas: u32, timeout: std::time::Duration) -> Self {
            self.router.wait = (replicas > 0)
                .then(|| (replicas, timeout.max(std::time::Duration::from_millis(1))));
            self
        }
    };
}

mod classify;
mod merge;
mod plan;
mod round;
mod router;
mod scan;
mod sync;
#[cfg(feature = "tokio")]
mod tokio;
mod topology;
mod window;

pub use self::sync::ClusterConnection;
#[cfg(feature = "tokio")]
pub use self::tokio::ClusterAsyncConnection;
pub use crate::resp::slot::{SLOTS, key_slot};

/// Default number of redirection rounds before a call fails.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
