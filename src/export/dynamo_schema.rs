//! Declared DynamoDB types per key pattern, for [`Inference::Schema`](super::dynamo::Inference).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A DynamoDB attribute type declared in a [`Schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclaredType {
    /// `S`: the value must be UTF-8.
    S,
    /// `N`: the value must be a number DynamoDB stores exactly.
    N,
    /// `B`: any bytes.
    B,
    /// `BOOL`: the value must be `true`, `false`, `1` or `0`.
    Bool,
    /// `SS`: a non-empty set or list of distinct UTF-8 strings.
    SS,
    /// `NS`: a non-empty set or list of distinct numbers.
    NS,
    /// `BS`: a non-empty set or list of distinct byte strings.
    BS,
    /// `L`: a list, set, sorted set or stream as a list (elements inferred).
    L,
    /// `M`: a hash, or a sorted set as member -> score.
    M,
}

impl DeclaredType {
    /// The DynamoDB name of the type (`S`, `N`, `B`, `BOOL`, `SS`, `NS`, `BS`, `L`, `M`).
    pub fn name(self) -> &'static str {
        match self {
            DeclaredType::S => "S",
            DeclaredType::N => "N",
            DeclaredType::B => "B",
            DeclaredType::Bool => "BOOL",
            DeclaredType::SS => "SS",
            DeclaredType::NS => "NS",
            DeclaredType::BS => "BS",
            DeclaredType::L => "L",
            DeclaredType::M => "M",
        }
    }
}

impl fmt::Display for DeclaredType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeclaredType {
    type Err = Error;

    /// Parse a DynamoDB type name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "S" => DeclaredType::S,
            "N" => DeclaredType::N,
            "B" => DeclaredType::B,
            "BOOL" => DeclaredType::Bool,
            "SS" => DeclaredType::SS,
            "NS" => DeclaredType::NS,
            "BS" => DeclaredType::BS,
            "L" => DeclaredType::L,
            "M" => DeclaredType::M,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown DynamoDB type {s:?} (S, N, B, BOOL, SS, NS, BS, L or M)"
                )));
            }
        })
    }
}

/// What to do with attributes a [`Schema`] does not declare (or keys no rule matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// As [`Inference::Off`](super::dynamo::Inference::Off): `S` or `B`.
    Off,
    /// As [`Inference::Auto`](super::dynamo::Inference::Auto) (the default).
    #[default]
    Auto,
}

/// The declared types of the keys matching one glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRule {
    /// A Redis-style glob over the key's bytes: `*` any run of bytes, `?` one byte, `\`
    /// makes the next byte literal. (Character classes `[...]` are not supported: `[`
    /// is a literal.)
    pub pattern: String,
    /// Attribute name -> declared type. Names are the value attribute
    /// ([`DynamoOptions::value_attribute`](super::dynamo::DynamoOptions::value_attribute)) and a
    /// hash's field names (inside its `M` or as top-level attributes).
    pub attributes: Vec<(String, DeclaredType)>,
}

/// Declared attribute types by key pattern: the first rule whose pattern matches the key
/// applies; attributes it does not declare, and keys no rule matches, follow
/// [`fallback`](Self::fallback).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    /// The rules, tried in order.
    pub rules: Vec<SchemaRule>,
    /// Inference for what no rule declares.
    pub fallback: Fallback,
}

impl Schema {
    /// An empty schema (every attribute follows the fallback, [`Fallback::Auto`]).
    pub fn new() -> Self {
        Schema::default()
    }

    /// Add a rule: keys matching `pattern` declare these attribute types.
    pub fn rule<N: Into<String>>(
        mut self,
        pattern: impl Into<String>,
        attributes: impl IntoIterator<Item = (N, DeclaredType)>,
    ) -> Self {
        self.rules.push(SchemaRule {
            pattern: pattern.into(),
            attributes: attributes.into_iter().map(|(n, t)| (n.into(), t)).collect(),
        });
        self
    }

    /// Set the fallback.
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The declared attributes of the first rule matching `key`.
    pub(crate) fn declared_for(&self, key: &[u8]) -> Option<&[(String, DeclaredType)]> {
        self.rules
            .iter()
            .find(|r| glob_match(r.pattern.as_bytes(), key))
            .map(|r| r.attributes.as_slice())
    }
}

/// Whether `text` matches the glob `pattern` (`*`, `?`, `\` escapes), without recursion.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: pattern position after it, text position.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(2),
            Some(&c) => (c == text[t]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                p += n;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("user:*", "user:1"));
        assert!(m("user:*", "user:"));
        assert!(!m("user:*", "users:1"));
        assert!(m("*", ""));
        assert!(m("*:*:x", "a:b:c:x"));
        assert!(!m("*:*:x", "a:b:c:y"));
        assert!(m("u?er", "user"));
        assert!(!m("u?er", "uer"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("**a", "bba"));
        assert!(!m("abc", "ab"));
        assert!(!m("ab", "abc"));
        assert!(m("[x]", "[x]"));
    }

    #[test]
    fn type_names() {
        for t in [
            DeclaredType::S,
            DeclaredType::N,
            DeclaredType::B,
            DeclaredType::Bool,
            DeclaredType::SS,
            DeclaredType::NS,
            DeclaredType::BS,
            DeclaredType::L,
            DeclaredType::M,
        ] {
            assert_eq!(t.name().parse::<DeclaredType>().unwrap(), t);
        }
        assert_eq!("bool".parse::<DeclaredType>().unwrap(), DeclaredType::Bool);
        assert!("X".parse::<DeclaredType>().is_err());
    }

    #[test]
    fn first_matching_rule_applies() {
        let s = Schema::new()
            .rule("user:*", [("age", DeclaredType::N)])
            .rule("*", [("age", DeclaredType::S)]);
        assert_eq!(s.declared_for(b"user:1").unwrap()[0].1, DeclaredType::N);
        assert_eq!(s.declared_for(b"x").unwrap()[0].1, DeclaredType::S);
        assert!(Schema::new().declared_for(b"x").is_none());
    }
}
