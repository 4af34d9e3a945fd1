//! The composite `SCAN` cursor of a cluster connection (sans-IO): a plan's plain `SCAN`
//! loop walks every primary, one after the other. The cursor a plan sees holds the index
//! of the primary being scanned in its high bits and that node's own cursor in the low
//! [`SCAN_CURSOR_BITS`]; it is 0 only after the last primary is done.

use redis::Value;

use crate::error::{Error, Result};

/// Bits of a composite SCAN cursor that hold the node's own cursor; the bits above
/// hold the index of the primary being scanned.
pub(crate) const SCAN_CURSOR_BITS: u32 = 50;
const SCAN_CURSOR_MASK: u64 = (1 << SCAN_CURSOR_BITS) - 1;

/// The primary a composite `cursor` points at, and that node's own cursor; an error when
/// the cursor does not belong to a cluster of `primaries` primaries.
pub(super) fn scan_start(cursor: u64, primaries: usize) -> Result<(usize, u64)> {
    let node = usize::try_from(cursor >> SCAN_CURSOR_BITS).unwrap_or(usize::MAX);
    if node >= primaries {
        return Err(Error::InvalidArgument(format!(
            "SCAN cursor {cursor} does not belong to this cluster of {primaries} primaries"
        )));
    }
    Ok((node, cursor & SCAN_CURSOR_MASK))
}

/// The reply of a `SCAN` sent to primary `node`, with its cursor made composite: the
/// node's next cursor, or the start of the next primary, or 0 after the last one.
pub(super) fn scan_reply(v: Value, node: usize, primaries: usize) -> Result<Value> {
    let Value::Array(mut items) = v else {
        return Ok(v);
    };
    let Some(first) = items.first() else {
        return Ok(Value::Array(items));
    };
    let cursor = match first {
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    let Some(cursor) = cursor else {
        return Ok(Value::Array(items));
    };
    let next = scan_next(node, cursor, primaries)?;
    items[0] = Value::BulkString(next.to_string().into_bytes());
    Ok(Value::Array(items))
}

/// The composite cursor after primary `node` replied `cursor`.
pub(crate) fn scan_next(node: usize, cursor: u64, primaries: usize) -> Result<u64> {
    if cursor > SCAN_CURSOR_MASK {
        return Err(Error::unexpected(
            format!("SCAN cursor {cursor} of a node is too large for a composite cursor"),
            None,
        ));
    }
    let node = if cursor != 0 {
        node
    } else if node + 1 < primaries {
        node + 1
    } else {
        return Ok(0);
    };
    Ok(((node as u64) << SCAN_CURSOR_BITS) | cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_scan_cursors() {
        assert_eq!(scan_next(0, 5, 3).unwrap(), 5);
        assert_eq!(scan_next(0, 0, 3).unwrap(), 1 << SCAN_CURSOR_BITS);
        assert_eq!(scan_next(1, 7, 3).unwrap(), (1 << SCAN_CURSOR_BITS) | 7);
        assert_eq!(scan_next(2, 0, 3).unwrap(), 0);
        assert!(scan_next(0, 1 << SCAN_CURSOR_BITS, 3).is_err());
    }

    #[test]
    fn composite_cursors_name_their_primary() {
        assert_eq!(scan_start(0, 3).unwrap(), (0, 0));
        assert_eq!(scan_start((2 << SCAN_CURSOR_BITS) | 9, 3).unwrap(), (2, 9));
        assert!(scan_start(3 << SCAN_CURSOR_BITS, 3).is_err());
        let reply = Value::Array(vec![Value::BulkString(b"0".to_vec()), Value::Array(vec![])]);
        let Value::Array(items) = scan_reply(reply, 0, 2).unwrap() else {
            panic!("not an array")
        };
        assert_eq!(
            items[0],
            Value::BulkString((1u64 << SCAN_CURSOR_BITS).to_string().into_bytes())
        );
    }
}
