//! The slot map of a Redis Cluster, parsed from `CLUSTER SLOTS` (sans-IO).

use redis::Value;

use crate::error::{Error, Result};
use crate::resp::slot::SLOTS;

/// Marks a slot no primary serves.
const UNSERVED: u16 = u16::MAX;

/// Which primary serves each hash slot, and the replicas of each primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Addresses (`host:port`) of the primaries, sorted: a primary's index is stable
    /// while the set of primaries does not change (SCAN cursors carry it).
    primaries: Vec<String>,
    /// Per primary (same index), the addresses of its replicas, sorted.
    replicas: Vec<Vec<String>>,
    /// Per slot, the index of its primary in `primaries` (or [`UNSERVED`]).
    slots: Vec<u16>,
}

/// `host:port` of a node entry of `CLUSTER SLOTS` (`[host, port, id, ...]`); a node
/// that announces no host (empty or `?`) is at `default_host`.
fn node_addr(node: Value, default_host: &str) -> std::result::Result<String, String> {
    let Value::Array(node) = node else {
        return Err(format!("node {node:?}"));
    };
    let mut node = node.into_iter();
    let host = match node.next() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Some(Value::SimpleString(s)) => s,
        other => return Err(format!("node host {other:?}")),
    };
    let port = match node.next() {
        Some(Value::Int(p)) => u16::try_from(p).map_err(|_| format!("port {p}"))?,
        other => return Err(format!("node port {other:?}")),
    };
    let host = if host.is_empty() || host == "?" {
        default_host.to_owned()
    } else {
        host
    };
    Ok(format!("{host}:{port}"))
}

impl Topology {
    /// No primary (before the first `CLUSTER SLOTS`).
    pub(crate) fn empty() -> Self {
        Topology {
            primaries: Vec::new(),
            replicas: Vec::new(),
            slots: vec![UNSERVED; usize::from(SLOTS)],
        }
    }

    /// Parse a `CLUSTER SLOTS` reply. Nodes that announce no host (an empty host or
    /// `?`) are reached at `default_host`, the host the reply came from.
    pub(crate) fn parse(reply: Value, default_host: &str) -> Result<Self> {
        let bad = |what: String| Error::unexpected(format!("CLUSTER SLOTS: {what}"), None);
        let Value::Array(ranges) = reply else {
            return Err(bad(format!("replied {reply:?}")));
        };
        let mut owners: Vec<(u16, u16, String)> = Vec::with_capacity(ranges.len());
        let mut followers: Vec<(String, String)> = Vec::new();
        for range in ranges {
            let Value::Array(items) = range else {
                return Err(bad(format!("range {range:?}")));
            };
            let mut it = items.into_iter();
            let int = |v: Option<Value>| match v {
                Some(Value::Int(i)) => u16::try_from(i).ok().filter(|&s| s < SLOTS),
                _ => None,
            };
            let (Some(start), Some(end)) = (int(it.next()), int(it.next())) else {
                return Err(bad("slot range bounds".into()));
            };
            let Some(node) = it.next() else {
                return Err(bad(format!("no primary for slots {start}-{end}")));
            };
            let primary = node_addr(node, default_host).map_err(bad)?;
            if start > end {
                return Err(bad(format!("slot range {start}-{end}")));
            }
            for replica in it {
                followers.push((
                    primary.clone(),
                    node_addr(replica, default_host).map_err(bad)?,
                ));
            }
            owners.push((start, end, primary));
        }
        let mut primaries: Vec<String> = owners.iter().map(|o| o.2.clone()).collect();
        primaries.sort();
        primaries.dedup();
        let mut slots = vec![UNSERVED; usize::from(SLOTS)];
        for (start, end, addr) in &owners {
            let idx = primaries
                .binary_search(addr)
                .map_err(|_| bad(format!("unknown node {addr}")))?;
            let idx = u16::try_from(idx).map_err(|_| bad("too many primaries".into()))?;
            slots[usize::from(*start)..=usize::from(*end)].fill(idx);
        }
        if primaries.is_empty() {
            return Err(bad("no slot is served".into()));
        }
        let mut replicas = vec![Vec::new(); primaries.len()];
        for (primary, replica) in followers {
            if let Ok(i) = primaries.binary_search(&primary) {
                replicas[i].push(replica);
            }
        }
        for r in &mut replicas {
            r.sort();
            r.dedup();
        }
        Ok(Topology {
            primaries,
            replicas,
            slots,
        })
    }

    /// The replicas of primary `i` (as `CLUSTER SLOTS` lists them: failed ones are
    /// left out by the server once it marks them failed).
    pub(crate) fn replicas(&self, i: usize) -> &[String] {
        self.replicas.get(i).map_or(&[], Vec::as_slice)
    }

    /// Every node: the primaries, then the replicas.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &String> {
        self.primaries.iter().chain(self.replicas.iter().flatten())
    }

    /// The primaries' addresses, sorted.
    pub(crate) fn primaries(&self) -> &[String] {
        &self.primaries
    }

    /// `slot` is served by the primary at `addr` (as a `MOVED` reply said), when it is a
    /// known primary; returns whether it is.
    pub(crate) fn set_owner(&mut self, slot: u16, addr: &str) -> bool {
        let Ok(i) = self.primaries.binary_search_by(|p| p.as_str().cmp(addr)) else {
            return false;
        };
        match (u16::try_from(i), self.slots.get_mut(usize::from(slot))) {
            (Ok(i), Some(s)) => {
                *s = i;
                true
            }
            _ => false,
        }
    }

    /// Index (into [`primaries`](Self::primaries)) of the primary serving `slot`.
    pub(crate) fn owner(&self, slot: u16) -> Option<usize> {
        match self.slots.get(usize::from(slot)) {
            Some(&i) if i != UNSERVED => Some(usize::from(i)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ]),
        ])
    }

    #[test]
    fn parses_slot_ranges() {
        let t = Topology::parse(
            Value::Array(vec![
                range(0, 99, "10.0.0.2", 7000),
                range(100, 16383, "", 7001),
                range(5000, 5000, "10.0.0.2", 7000),
            ]),
            "seed",
        )
        .unwrap();
        assert_eq!(t.primaries(), ["10.0.0.2:7000", "seed:7001"]);
        assert_eq!(t.owner(0), Some(0));
        assert_eq!(t.owner(99), Some(0));
        assert_eq!(t.owner(100), Some(1));
        assert_eq!(t.owner(5000), Some(0));
        assert_eq!(t.owner(16383), Some(1));
        assert_eq!(t.owner(16384), None);
        assert!(t.replicas(0).is_empty());
    }

    #[test]
    fn keeps_the_replicas_of_each_primary() {
        let mut r = range(0, 99, "h", 7000);
        if let Value::Array(items) = &mut r {
            items.push(Value::Array(vec![
                Value::BulkString(b"h".to_vec()),
                Value::Int(7003),
                Value::BulkString(b"id3".to_vec()),
            ]));
            items.push(Value::Array(vec![
                Value::BulkString(b"".to_vec()),
                Value::Int(7004),
            ]));
        }
        let t = Topology::parse(Value::Array(vec![r, range(100, 16383, "h", 7001)]), "d").unwrap();
        assert_eq!(t.replicas(0), ["d:7004", "h:7003"]);
        assert!(t.replicas(1).is_empty());
        assert_eq!(t.nodes().count(), 4);
    }

    #[test]
    fn unserved_slots_and_bad_replies() {
        let t = Topology::parse(Value::Array(vec![range(0, 10, "h", 1)]), "x").unwrap();
        assert_eq!(t.owner(11), None);
        assert!(Topology::parse(Value::Array(vec![]), "x").is_err());
        assert!(Topology::parse(Value::Array(vec![range(0, 16384, "h", 1)]), "x").is_err());
        assert!(Topology::parse(Value::Array(vec![range(9, 1, "h", 1)]), "x").is_err());
        assert!(Topology::parse(Value::Okay, "x").is_err());
    }
}
