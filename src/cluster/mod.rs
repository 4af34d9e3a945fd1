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
//!   redirected commands again (a redirected command was not executed); `ASK` sends
//!   them to the importing node after `ASKING`; `TRYAGAIN`/`CLUSTERDOWN` retry after a
//!   pause. After [`with_max_redirects`](ClusterConnection::with_max_redirects) rounds the
//!   redirection is returned as an [`Error::Redis`](crate::Error::Redis) of kind
//!   [`RedisErrorKind::Redirect`](crate::RedisErrorKind::Redirect) (or `Transient`).
//!
//! Replicas are not used (reads and writes go to primaries). A connection error
//! (a node restarted or unreachable) fails the call, drops that node's connection and
//! makes the next call refresh the slot map and reconnect; the failed call is not
//! retried because its writes may have been executed.

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
