//! The keys of a table: batch keys in ArrowRedis's layout, the manifest and the
//! split-in-progress marker.

use crate::store::batch::glob_escape;

/// Suffix of a table's manifest key: `{prefix}:__manifest__`.
pub const MANIFEST_SUFFIX: &str = "__manifest__";
/// Suffix of a table's split-in-progress marker, `{prefix}:__pending__`: written before
/// the first batch of a split, deleted with the manifest's write. ArrowRedis's discovery
/// pattern `{prefix}:{part=*}:batch=*` does not match it.
pub const PENDING_SUFFIX: &str = "__pending__";

pub(super) fn batch_key(prefix: &str, part: u32, batch: u32) -> String {
    format!("{prefix}:{{part={part:05}}}:batch={batch:05}")
}

pub(super) fn batch_pattern(prefix: &str) -> String {
    format!("{}:{{part=*}}:batch=*", glob_escape(prefix))
}

/// `(partition, batch)` of a batch key of the table at `prefix`.
pub(super) fn parse_batch_key(prefix: &str, key: &str) -> Option<(u32, u32)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{part=")?;
    let (p, rest) = rest.split_once("}:batch=")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(p) || !digits(rest) {
        return None;
    }
    Some((p.parse().ok()?, rest.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            batch_key("demo:v1", 3, 12),
            "demo:v1:{part=00003}:batch=00012"
        );
        assert_eq!(batch_key("p", 123456, 0), "p:{part=123456}:batch=00000");
        assert_eq!(
            parse_batch_key("demo:v1", "demo:v1:{part=00003}:batch=00012"),
            Some((3, 12))
        );
        assert_eq!(
            parse_batch_key("demo", "demo:v1:{part=00003}:batch=00012"),
            None
        );
        assert_eq!(
            parse_batch_key("demo:v1", "demo:v1:{part=0x}:batch=1"),
            None
        );
        assert_eq!(batch_pattern("a*b"), "a\\*b:{part=*}:batch=*");
    }
}
