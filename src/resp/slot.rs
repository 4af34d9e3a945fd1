//! The hash tag of a key, and its Redis Cluster hash slot: CRC16 (XMODEM) of the key, or
//! of its hash tag, modulo 16384. The one place the hash-tag rule is written: stores use
//! it to keep a value's keys in one slot, the cluster connection to route commands.

use std::ops::Range;

/// Number of hash slots of a Redis Cluster.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection, as Redis
/// Cluster uses it.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Where the hash tag of a key is: the content of the first `{...}` when it is not
/// empty.
fn tag_range(key: &[u8]) -> Option<Range<usize>> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| open + 1..open + 1 + len)
}

/// The hash tag of a key (the content of the first `{...}` when it is not empty), if
/// it has one: keys with the same tag share a hash slot.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    // `{` and `}` are ASCII, so the range is on character boundaries.
    tag_range(key.as_bytes()).and_then(|r| key.get(r))
}

/// The part of a key that is hashed: its hash tag, else the whole key.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
fn hashed_part(key: &[u8]) -> &[u8] {
    match tag_range(key) {
        Some(r) => &key[r],
        None => key,
    }
}

/// The hash slot of a key, as `CLUSTER KEYSLOT` computes it: keys with the same hash
/// tag (`{user1}:a`, `{user1}:b`) share a slot, so multi-key commands on them work on
/// a Redis Cluster.
///
/// ```
/// # #[cfg(feature = "cluster")] {
/// use redstash::cluster::key_slot;
/// assert_eq!(key_slot(b"foo"), 12182);
/// assert_eq!(key_slot(b"{user1}:a"), key_slot(b"{user1}:b"));
/// # }
/// ```
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_xmodem_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_of_known_keys() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
        assert_eq!(key_slot(b"foo{bar}{zap}"), crc16(b"bar") % SLOTS);
        assert_eq!(key_slot(b"{"), crc16(b"{") % SLOTS);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(hash_tag("a{b}c"), Some("b"));
        assert_eq!(hash_tag("a{}c"), None);
        assert_eq!(hash_tag("abc"), None);
        assert_eq!(hash_tag("{x}:{y}"), Some("x"));
        assert_eq!(hash_tag("é{ü}"), Some("ü"));
        assert_eq!(hashed_part(b"a{b}c"), b"b");
        assert_eq!(hashed_part(b"a{}c"), b"a{}c");
    }
}
