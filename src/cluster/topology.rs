//! The slot map of a Redis Cluster, parsed from `CLUSTER SLOTS` (sans-IO).

use redis::Value;

use crate::error::{Error, Result};
use crate::resp::slot::SLOTS;

/// Marks a slot no primary serves.
const UNSERVED: u16 = u16::MAX;

/// Which primary serves each hash slot.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// Addresses (`host:port`) of the primaries, sorted: a primary's index is stable
    /// while the set of primaries does not change (SCAN cursors carry it).
    primaries: Vec<String>,
    /// Per slot, the index of its primary in `primaries` (or [`UNSERVED`]).
    slots: Vec<u16>,
}

impl Topology {
    /// No primary (before the first `CLUSTER SLOTS`).
    pub(crate) fn empty() -> Self {
        Topology {
            primaries: Vec::new(),
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
            let Some(Value::Array(node)) = it.next() else {
                return Err(bad(format!("no primary for slots {start}-{end}")));
            };
            let mut node = node.into_iter();
            let host = match node.next() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(Value::SimpleString(s)) => s,
                other => return Err(bad(format!("node host {other:?}"))),
            };
            let port = match node.next() {
                Some(Value::Int(p)) => u16::try_from(p).map_err(|_| bad(format!("port {p}")))?,
                other => return Err(bad(format!("node port {other:?}"))),
            };
            let host = if host.is_empty() || host == "?" {
                default_host.to_owned()
            } else {
                host
            };
            if start > end {
                return Err(bad(format!("slot range {start}-{end}")));
            }
            owners.push((start, end, format!("{host}:{port}")));
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
        Ok(Topology { primaries, slots })
    }

    /// The primaries' addresses, sorted.
    pub(crate) fn primaries(&self) -> &[String] {
        &self.primaries
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
