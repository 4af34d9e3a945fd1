//! Key templates: `user:{id}`, `{tenant}:order:{id}`, `{{` and `}}` for literal braces.

use std::fmt;

use super::record::Record;
use crate::error::{Error, Result};

/// A template of literal text and `{field}` placeholders, filled from a record's fields
/// (see [`Value::write_arg`](super::Value::write_arg) for how a value is written).
///
/// ```
/// use redstash::load::{KeyTemplate, Position, Record, Value};
/// let t = KeyTemplate::parse("user:{id}")?;
/// let r = Record::new(Position::default(), [("id", Value::Int(7))]);
/// let mut key = Vec::new();
/// t.render(&r, &mut key).unwrap();
/// assert_eq!(key, b"user:7");
/// assert_eq!(t.fields().collect::<Vec<_>>(), ["id"]);
/// # Ok::<(), redstash::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Part {
    Literal(String),
    Field(String),
}

/// Why a record could not be mapped (reported with its position, never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingProblem {
    /// A field the mapping needs is absent from the record.
    MissingField(String),
    /// A field the mapping needs is null or empty.
    EmptyField(String),
    /// A field that must be a number (a score, a TTL) is not one.
    NotANumber {
        /// The field.
        field: String,
        /// Its value, shortened.
        value: String,
    },
    /// The mapping stores nothing for this record (a hash value with no field left
    /// after `include`/`exclude`, a raw value that is null).
    NothingToStore(String),
    /// A TTL field gives a time in the past or a non-positive TTL.
    ExpiredTtl(String),
}

impl fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MappingProblem::MissingField(n) => write!(f, "field {n:?} is missing"),
            MappingProblem::EmptyField(n) => write!(f, "field {n:?} is null or empty"),
            MappingProblem::NotANumber { field, value } => {
                write!(f, "field {field:?} is not a number: {value:?}")
            }
            MappingProblem::NothingToStore(why) => write!(f, "nothing to store: {why}"),
            MappingProblem::ExpiredTtl(why) => write!(f, "TTL not in the future: {why}"),
        }
    }
}

impl KeyTemplate {
    /// Parse a template. `{name}` is a field; `{{` and `}}` are literal braces; an
    /// unclosed `{`, an empty `{}` or a lone `}` is an [`Error::InvalidArgument`].
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidArgument(format!("key template {text:?}: {why}"));
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') => return Err(bad("`{` inside a field name")),
                            Some(c) => name.push(c),
                            None => return Err(bad("unclosed `{`")),
                        }
                    }
                    if name.is_empty() {
                        return Err(bad("empty `{}`"));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => return Err(bad("lone `}` (write `}}` for a brace)")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        if parts.is_empty() {
            return Err(bad("empty"));
        }
        Ok(KeyTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The fields it names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether the template has no field (a constant, e.g. an index set's name).
    pub fn is_constant(&self) -> bool {
        self.fields().next().is_none()
    }

    /// Append the template filled from `record` to `out`. A field that is missing, null
    /// or empty is a [`MappingProblem`] (and `out` is left as it was).
    pub fn render(
        &self,
        record: &Record,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), MappingProblem> {
        let start = out.len();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Field(name) => {
                    let Some(v) = record.get(name) else {
                        out.truncate(start);
                        return Err(MappingProblem::MissingField(name.clone()));
                    };
                    if v.is_blank() {
                        out.truncate(start);
                        return Err(MappingProblem::EmptyField(name.clone()));
                    }
                    v.write_arg(out);
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for KeyTemplate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for KeyTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        KeyTemplate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for KeyTemplate {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        KeyTemplate::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Position, Value};

    #[test]
    fn templates() {
        let r = Record::new(
            Position::default(),
            [
                ("id", Value::Untyped("12".into())),
                ("t", Value::Text("acme".into())),
                ("n", Value::Null),
                ("e", Value::Untyped(String::new())),
            ],
        );
        let render = |t: &str| {
            let mut out = b"x".to_vec();
            KeyTemplate::parse(t)
                .unwrap()
                .render(&r, &mut out)
                .map(|()| String::from_utf8(out).unwrap())
        };
        assert_eq!(render("{t}:user:{id}").unwrap(), "xacme:user:12");
        assert_eq!(render("{{lit}}:{id}").unwrap(), "x{lit}:12");
        assert_eq!(
            render("user:{nope}"),
            Err(MappingProblem::MissingField("nope".into()))
        );
        assert_eq!(
            render("user:{n}"),
            Err(MappingProblem::EmptyField("n".into()))
        );
        assert_eq!(
            render("user:{e}"),
            Err(MappingProblem::EmptyField("e".into()))
        );
        for bad in ["", "{", "a{b", "{}", "a}", "{a{b}}"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(KeyTemplate::parse("users").unwrap().is_constant());
    }
}
