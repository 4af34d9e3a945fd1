//! The mapping: what commands a record becomes (its key and value, a TTL, index upkeep),
//! and the encoding of those commands as RESP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::json;
use super::record::{Record, Value};
use super::template::{KeyTemplate, MappingProblem};
use crate::error::{Error, Result};

/// How a record's value is stored at its key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMapping {
    /// `SET key <JSON object of the fields>`: real JSON, numbers as numbers.
    Json(FieldFilter),
    /// `HSET key field value ...`, one hash field per record field.
    Hash(FieldFilter),
    /// `SET key <the field's value>` (its bytes as they are).
    Raw(String),
    /// Nothing at the key: only the index operations run.
    None,
}

/// Which fields a [`ValueMapping::Json`] or [`ValueMapping::Hash`] keeps: `include`
/// (all when empty), minus `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldFilter {
    /// The fields to keep (all when empty).
    pub include: Vec<String>,
    /// The fields to drop.
    pub exclude: Vec<String>,
}

impl FieldFilter {
    /// Every field.
    pub fn all() -> Self {
        FieldFilter::default()
    }

    fn keeps(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|i| i == name))
            && !self.exclude.iter().any(|e| e == name)
    }
}

/// When a record's key expires.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ttl {
    /// The same TTL for every key, from the time it is written (in a mapping file:
    /// `{"fixed": 1.5}`, seconds).
    Fixed(#[serde(with = "seconds")] Duration),
    /// From a numeric field of the record.
    Field {
        /// The field.
        field: String,
        /// What its number means.
        kind: TtlField,
    },
}

/// What a TTL field's number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlField {
    /// Seconds from now (`EXPIRE`-like).
    Seconds,
    /// Milliseconds from now.
    Milliseconds,
    /// A Unix time in seconds (`EXPIREAT`-like).
    UnixSeconds,
    /// A Unix time in milliseconds.
    UnixMilliseconds,
}

/// One index operation per record, keeping a set, a lookup hash, a sorted set, a list
/// or a counter up to date. A template that is `None` means the record's key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IndexOp {
    /// `SADD set member`.
    Sadd {
        /// The set's key.
        set: KeyTemplate,
        /// The member (the record's key when `None`).
        member: Option<KeyTemplate>,
    },
    /// `HSET hash field value`: a lookup, e.g. `users:by_email` `{email}` -> the key.
    Hset {
        /// The hash's key.
        hash: KeyTemplate,
        /// The hash field.
        field: KeyTemplate,
        /// The value (the record's key when `None`).
        value: Option<KeyTemplate>,
    },
    /// `ZADD zset score member`, the score from a numeric field.
    Zadd {
        /// The sorted set's key.
        zset: KeyTemplate,
        /// The field that holds the score.
        score: String,
        /// The member (the record's key when `None`).
        member: Option<KeyTemplate>,
    },
    /// `RPUSH list value`: appends, so a replayed record appends twice (not
    /// idempotent: refused with a checkpoint).
    Rpush {
        /// The list's key.
        list: KeyTemplate,
        /// The value (the record's key when `None`).
        value: Option<KeyTemplate>,
    },
    /// `HINCRBY hash field by`: a counter (not idempotent: refused with a checkpoint).
    Hincrby {
        /// The hash's key.
        hash: KeyTemplate,
        /// The counter's field.
        field: KeyTemplate,
        /// The increment.
        by: i64,
    },
}

impl IndexOp {
    /// Whether running it twice leaves what running it once does.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, IndexOp::Rpush { .. } | IndexOp::Hincrby { .. })
    }

    /// The key it writes.
    fn target(&self) -> &KeyTemplate {
        match self {
            IndexOp::Sadd { set, .. } => set,
            IndexOp::Hset { hash, .. } | IndexOp::Hincrby { hash, .. } => hash,
            IndexOp::Zadd { zset, .. } => zset,
            IndexOp::Rpush { list, .. } => list,
        }
    }
}

/// How a record's commands are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Atomicity {
    /// Pipelined one after the other (the fastest).
    #[default]
    None,
    /// Each record in its own `MULTI`/`EXEC`.
    Multi,
    /// Each record as one call of a Lua script, loaded once and run with `EVALSHA`
    /// (`EVAL` after a `NOSCRIPT`).
    Lua,
}

/// What a record becomes: a key from a template, a value, a TTL and index operations.
///
/// Replaying a record (after a resume from a checkpoint) gives the same keyspace when
/// every operation is idempotent: `SET`, `HSET`, `SADD`, `ZADD` and the TTLs (a fixed
/// TTL starts again from the replay); `RPUSH` and `HINCRBY` are not
/// ([`is_idempotent`](Self::is_idempotent)).
///
/// A mapping is also a JSON document ([`Mapping::from_json`], the CLI's `--mapping
/// FILE`):
///
/// ```
/// use redstash::load::Mapping;
/// let m = Mapping::from_json(r#"{
///     "key": "user:{id}",
///     "value": {"hash": {"exclude": ["password"]}},
///     "ttl": {"field": {"field": "expires_at", "kind": "unix_seconds"}},
///     "indexes": [
///         {"hset": {"hash": "users:by_email", "field": "{email}"}},
///         {"zadd": {"zset": "users:by_age", "score": "age"}}
///     ]
/// }"#)?;
/// assert_eq!(m.indexes().len(), 2);
/// # Ok::<(), redstash::Error>(())
/// ```
///
/// ```
/// use redstash::load::{FieldFilter, IndexOp, KeyTemplate, Mapping, ValueMapping};
/// let m = Mapping::new(KeyTemplate::parse("user:{id}")?)
///     .with_value(ValueMapping::Hash(FieldFilter::all()))
///     .with_index(IndexOp::Sadd { set: KeyTemplate::parse("users")?, member: None });
/// assert!(m.is_idempotent());
/// # Ok::<(), redstash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    key: KeyTemplate,
    #[serde(default = "json_value")]
    value: ValueMapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<Ttl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    indexes: Vec<IndexOp>,
    #[serde(default)]
    atomicity: Atomicity,
}

fn json_value() -> ValueMapping {
    ValueMapping::Json(FieldFilter::all())
}

/// A `Duration` as a number of seconds (a mapping file's fixed TTL).
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                serde::de::Error::custom(format!("a TTL of {secs} seconds: more than 0"))
            })
    }
}

/// The Lua script of [`Atomicity::Lua`]: `ARGV` holds the commands, each as its argument
/// count then its arguments; `KEYS` the keys they write (so that a cluster routes it).
pub(crate) const LUA_SCRIPT: &str = "local i = 1\n\
while i <= #ARGV do\n\
  local n = tonumber(ARGV[i])\n\
  redis.call(unpack(ARGV, i + 1, i + n))\n\
  i = i + n + 1\n\
end\n\
return redis.status_reply('OK')\n";

/// The SHA1 of [`LUA_SCRIPT`] (what `SCRIPT LOAD` returns and `EVALSHA` takes).
pub(crate) fn lua_sha() -> String {
    redis::Script::new(LUA_SCRIPT).get_hash().to_owned()
}

impl Mapping {
    /// A mapping from its JSON form (see the type's docs); an unknown field, a bad
    /// template or a TTL of 0 is an [`Error::InvalidArgument`].
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("mapping: {e}")))
    }

    /// The mapping as JSON (what [`from_json`](Self::from_json) reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Records stored at `key`, as JSON of every field, no TTL, no index.
    pub fn new(key: KeyTemplate) -> Self {
        Mapping {
            key,
            value: ValueMapping::Json(FieldFilter::all()),
            ttl: None,
            indexes: Vec::new(),
            atomicity: Atomicity::None,
        }
    }

    /// How the value is stored.
    pub fn with_value(mut self, value: ValueMapping) -> Self {
        self.value = value;
        self
    }

    /// A TTL for the key.
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// One more index operation.
    pub fn with_index(mut self, op: IndexOp) -> Self {
        self.indexes.push(op);
        self
    }

    /// How a record's commands are applied.
    pub fn with_atomicity(mut self, atomicity: Atomicity) -> Self {
        self.atomicity = atomicity;
        self
    }

    /// The key template.
    pub fn key(&self) -> &KeyTemplate {
        &self.key
    }

    /// The value mapping.
    pub fn value(&self) -> &ValueMapping {
        &self.value
    }

    /// The TTL, if any.
    pub fn ttl(&self) -> Option<&Ttl> {
        self.ttl.as_ref()
    }

    /// The index operations.
    pub fn indexes(&self) -> &[IndexOp] {
        &self.indexes
    }

    /// The atomicity.
    pub fn atomicity(&self) -> Atomicity {
        self.atomicity
    }

    /// Whether replaying records is harmless (see the type's docs); a checkpoint needs it.
    pub fn is_idempotent(&self) -> bool {
        self.indexes.iter().all(IndexOp::is_idempotent)
    }

    /// Check the mapping as a whole: something to store, and on a cluster in an atomic
    /// mode, every key template with the same literal hash tag (`{{...}}` in a template
    /// is a literal brace), since a record's keys must share a slot.
    pub fn validate(&self, cluster: bool) -> Result<()> {
        if self.value == ValueMapping::None && self.indexes.is_empty() {
            return Err(Error::InvalidArgument(
                "the mapping stores nothing: no value and no index operation".into(),
            ));
        }
        if cluster && self.atomicity != Atomicity::None {
            let keys: Vec<&KeyTemplate> = std::iter::once(&self.key)
                .filter(|_| self.value != ValueMapping::None)
                .chain(self.indexes.iter().map(IndexOp::target))
                .collect();
            let tags: Vec<Option<String>> = keys.iter().map(|k| literal_hash_tag(k)).collect();
            let same = tags.windows(2).all(|w| w[0] == w[1]);
            if keys.len() > 1 && (!same || tags[0].is_none()) {
                return Err(Error::InvalidArgument(format!(
                    "atomic mode on a Redis Cluster needs all the keys of a record in one hash slot: \
                     give every key template the same hash tag (a `{{...}}` part, written with doubled \
                     braces in a template, e.g. `user:{{{{{{id}}}}}}`); templates: {}",
                    keys.iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// The hash tag a template's rendered keys start with, when it is the same for every
/// record (the text between the first literal `{` and the next `}` of its text with
/// fields left as written): `Some("{id}")` for `user:{{{id}}}`.
fn literal_hash_tag(t: &KeyTemplate) -> Option<String> {
    let s = t.as_str();
    let open = s.find("{{")?;
    let rest = &s[open + 2..];
    let close = rest.find("}}")?;
    Some(rest[..close].to_owned())
}

/// Scratch space for encoding one record's commands before they are written as RESP
/// (plain, or as the arguments of the Lua script).
#[derive(Default)]
pub(crate) struct Encoder {
    /// The arguments' bytes, back to back.
    bytes: Vec<u8>,
    /// Each argument's end in `bytes`.
    ends: Vec<usize>,
    /// Each command's argument count.
    commands: Vec<usize>,
    /// The keys written (argument indices), for the Lua script and the slot check.
    keys: Vec<usize>,
    key_scratch: Vec<u8>,
    now_ms: u64,
}

/// One record's commands, encoded.
pub(crate) struct Encoded<'e> {
    enc: &'e Encoder,
}

impl Encoder {
    fn arg(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len());
    }

    fn arg_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    fn render_arg(
        &mut self,
        t: &KeyTemplate,
        record: &Record,
    ) -> std::result::Result<(), MappingProblem> {
        t.render(record, &mut self.bytes)?;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    fn command(&mut self, nargs: usize) {
        self.commands.push(nargs);
    }

    fn mark_key(&mut self) {
        self.keys.push(self.ends.len() - 1);
    }

    /// The record key, rendered once per record in `key_scratch`.
    fn push_record_key(&mut self) {
        let k = std::mem::take(&mut self.key_scratch);
        self.arg(&k);
        self.key_scratch = k;
    }

    /// Encode `record`'s commands under `mapping`; a record that cannot be mapped is a
    /// [`MappingProblem`] and nothing is kept of it.
    pub(crate) fn encode(
        &mut self,
        mapping: &Mapping,
        record: &Record,
    ) -> std::result::Result<Encoded<'_>, MappingProblem> {
        self.bytes.clear();
        self.ends.clear();
        self.commands.clear();
        self.keys.clear();
        self.key_scratch.clear();
        mapping.key.render(record, &mut self.key_scratch)?;
        let ttl = match &mapping.ttl {
            None => None,
            Some(t) => Some(self.ttl_of(t, record)?),
        };
        match &mapping.value {
            ValueMapping::Json(filter) => {
                self.arg(b"SET");
                self.push_record_key();
                self.mark_key();
                self.arg_with(|out| {
                    json::write_object(
                        out,
                        record
                            .fields
                            .iter()
                            .filter(|(n, _)| filter.keeps(n))
                            .map(|(n, v)| (&**n, v)),
                    )
                });
                self.set_ttl_args(ttl, 3);
            }
            ValueMapping::Raw(field) => {
                let v = record
                    .get(field)
                    .ok_or_else(|| MappingProblem::MissingField(field.clone()))?;
                if matches!(v, Value::Null) {
                    return Err(MappingProblem::NothingToStore(format!(
                        "field {field:?} is null"
                    )));
                }
                self.arg(b"SET");
                self.push_record_key();
                self.mark_key();
                self.arg_with(|out| {
                    v.write_arg(out);
                });
                self.set_ttl_args(ttl, 3);
            }
            ValueMapping::Hash(filter) => {
                self.arg(b"HSET");
                self.push_record_key();
                self.mark_key();
                let mut n = 2;
                for (name, v) in record.fields.iter().filter(|(n, _)| filter.keeps(n)) {
                    // A null field is left out of the hash (Redis has no null).
                    if matches!(v, Value::Null) {
                        continue;
                    }
                    self.arg(name.as_bytes());
                    self.arg_with(|out| {
                        v.write_arg(out);
                    });
                    n += 2;
                }
                if n == 2 {
                    return Err(MappingProblem::NothingToStore("no hash field left".into()));
                }
                self.command(n);
                if let Some((at, ms)) = ttl {
                    self.arg(if at { b"PEXPIREAT" } else { b"PEXPIRE" });
                    self.push_record_key();
                    self.arg_with(|out| push_u64(out, ms));
                    self.command(3);
                }
            }
            ValueMapping::None => {}
        }
        for op in &mapping.indexes {
            self.index(op, record)?;
        }
        Ok(Encoded { enc: self })
    }

    /// The TTL of a record: `(absolute, milliseconds)`.
    fn ttl_of(
        &mut self,
        ttl: &Ttl,
        record: &Record,
    ) -> std::result::Result<(bool, u64), MappingProblem> {
        match ttl {
            Ttl::Fixed(d) => Ok((false, (d.as_millis() as u64).max(1))),
            Ttl::Field { field, kind } => {
                let v = record
                    .get(field)
                    .ok_or_else(|| MappingProblem::MissingField(field.clone()))?;
                let f = v.as_f64().ok_or_else(|| MappingProblem::NotANumber {
                    field: field.clone(),
                    value: shorten(v),
                })?;
                let ms = match kind {
                    TtlField::Seconds | TtlField::UnixSeconds => f * 1000.0,
                    TtlField::Milliseconds | TtlField::UnixMilliseconds => f,
                };
                if !(1.0..9.0e15).contains(&ms) {
                    return Err(MappingProblem::ExpiredTtl(format!(
                        "{field} = {}",
                        shorten(v)
                    )));
                }
                let absolute = matches!(kind, TtlField::UnixSeconds | TtlField::UnixMilliseconds);
                if absolute {
                    if self.now_ms == 0 {
                        self.now_ms = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0);
                    }
                    if (ms as u64) <= self.now_ms {
                        return Err(MappingProblem::ExpiredTtl(format!(
                            "{field} = {} is in the past",
                            shorten(v)
                        )));
                    }
                }
                Ok((absolute, ms as u64))
            }
        }
    }

    /// `PX ms` / `PXAT ms` after a `SET` of `nargs` arguments, and the command.
    fn set_ttl_args(&mut self, ttl: Option<(bool, u64)>, nargs: usize) {
        match ttl {
            None => self.command(nargs),
            Some((at, ms)) => {
                self.arg(if at { b"PXAT" } else { b"PX" });
                self.arg_with(|out| push_u64(out, ms));
                self.command(nargs + 2);
            }
        }
    }

    fn key_or(
        &mut self,
        t: &Option<KeyTemplate>,
        record: &Record,
    ) -> std::result::Result<(), MappingProblem> {
        match t {
            Some(t) => self.render_arg(t, record),
            None => {
                self.push_record_key();
                Ok(())
            }
        }
    }

    fn index(&mut self, op: &IndexOp, record: &Record) -> std::result::Result<(), MappingProblem> {
        match op {
            IndexOp::Sadd { set, member } => {
                self.arg(b"SADD");
                self.render_arg(set, record)?;
                self.mark_key();
                self.key_or(member, record)?;
                self.command(3);
            }
            IndexOp::Hset { hash, field, value } => {
                self.arg(b"HSET");
                self.render_arg(hash, record)?;
                self.mark_key();
                self.render_arg(field, record)?;
                self.key_or(value, record)?;
                self.command(4);
            }
            IndexOp::Zadd {
                zset,
                score,
                member,
            } => {
                let v = record
                    .get(score)
                    .ok_or_else(|| MappingProblem::MissingField(score.clone()))?;
                let s = v.as_f64().ok_or_else(|| MappingProblem::NotANumber {
                    field: score.clone(),
                    value: shorten(v),
                })?;
                self.arg(b"ZADD");
                self.render_arg(zset, record)?;
                self.mark_key();
                self.arg(super::record::format_float(s).as_bytes());
                self.key_or(member, record)?;
                self.command(4);
            }
            IndexOp::Rpush { list, value } => {
                self.arg(b"RPUSH");
                self.render_arg(list, record)?;
                self.mark_key();
                self.key_or(value, record)?;
                self.command(3);
            }
            IndexOp::Hincrby { hash, field, by } => {
                self.arg(b"HINCRBY");
                self.render_arg(hash, record)?;
                self.mark_key();
                self.render_arg(field, record)?;
                self.arg(by.to_string().as_bytes());
                self.command(4);
            }
        }
        Ok(())
    }
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(v.to_string().as_bytes());
}

/// A value for an error message: at most 64 bytes of its text.
fn shorten(v: &Value) -> String {
    let mut out = Vec::new();
    if v.write_arg(&mut out).is_none() {
        return "null".into();
    }
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if s.len() > 64 {
        let mut cut = 64;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl Encoded<'_> {
    /// Number of commands.
    pub(crate) fn commands(&self) -> usize {
        self.enc.commands.len()
    }

    /// Each command's arguments.
    pub(crate) fn each_command(&self, mut f: impl FnMut(&[&[u8]])) {
        let mut args: Vec<&[u8]> = Vec::with_capacity(8);
        let mut i = 0;
        let mut start = 0;
        for &n in &self.enc.commands {
            args.clear();
            for _ in 0..n {
                let end = self.enc.ends[i];
                args.push(&self.enc.bytes[start..end]);
                start = end;
                i += 1;
            }
            f(&args);
        }
    }

    /// The keys the commands write.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.enc.keys.iter().map(|&i| {
            let start = if i == 0 { 0 } else { self.enc.ends[i - 1] };
            &self.enc.bytes[start..self.enc.ends[i]]
        })
    }

    /// Whether every key is in one hash slot.
    pub(crate) fn one_slot(&self) -> bool {
        let mut slots = self.keys().map(crate::resp::slot::key_slot);
        match slots.next() {
            None => true,
            Some(first) => slots.all(|s| s == first),
        }
    }

    /// Append the commands to `out` as RESP: plain, or (`lua_sha` given) as one
    /// `EVALSHA` of [`LUA_SCRIPT`]. Returns the number of commands written.
    pub(crate) fn write_resp(&self, out: &mut crate::resp::Packed, lua_sha: Option<&str>) -> usize {
        match lua_sha {
            None => {
                self.each_command(|args| {
                    out.command(args.len());
                    for a in args {
                        out.arg(a);
                    }
                });
                self.commands()
            }
            Some(sha) => {
                let nkeys = self.enc.keys.len();
                let argv: usize = self.enc.commands.iter().map(|n| n + 1).sum();
                out.command(3 + nkeys + argv);
                out.arg(b"EVALSHA");
                out.arg(sha.as_bytes());
                out.arg(nkeys.to_string().as_bytes());
                for k in self.keys() {
                    out.arg(k);
                }
                self.each_command(|args| {
                    out.arg(args.len().to_string().as_bytes());
                    for a in args {
                        out.arg(a);
                    }
                });
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Position;

    fn t(s: &str) -> KeyTemplate {
        KeyTemplate::parse(s).unwrap()
    }

    fn commands(m: &Mapping, r: &Record) -> std::result::Result<Vec<Vec<String>>, MappingProblem> {
        let mut enc = Encoder::default();
        let e = enc.encode(m, r)?;
        let mut out = Vec::new();
        e.each_command(|args| {
            out.push(
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            )
        });
        Ok(out)
    }

    fn rec() -> Record {
        Record::new(
            Position { record: 0, line: 2 },
            [
                ("id", Value::Untyped("7".into())),
                ("email", Value::Untyped("a@b.c".into())),
                ("age", Value::Untyped("41".into())),
                ("ttl", Value::Untyped("60".into())),
                ("nick", Value::Null),
            ],
        )
    }

    #[test]
    fn json_hash_raw_and_indexes() {
        let m = Mapping::new(t("user:{id}"))
            .with_ttl(Ttl::Field {
                field: "ttl".into(),
                kind: TtlField::Seconds,
            })
            .with_index(IndexOp::Sadd {
                set: t("users"),
                member: None,
            })
            .with_index(IndexOp::Hset {
                hash: t("by_email"),
                field: t("{email}"),
                value: None,
            })
            .with_index(IndexOp::Zadd {
                zset: t("by_age"),
                score: "age".into(),
                member: Some(t("{id}")),
            });
        let c = commands(&m, &rec()).unwrap();
        assert_eq!(
            c[0][..3],
            [
                "SET",
                "user:7",
                r#"{"id":7,"email":"a@b.c","age":41,"ttl":60,"nick":null}"#
            ]
        );
        assert_eq!(c[0][3..], ["PX", "60000"]);
        assert_eq!(c[1], ["SADD", "users", "user:7"]);
        assert_eq!(c[2], ["HSET", "by_email", "a@b.c", "user:7"]);
        assert_eq!(c[3], ["ZADD", "by_age", "41", "7"]);

        let m = Mapping::new(t("user:{id}"))
            .with_value(ValueMapping::Hash(FieldFilter {
                include: vec![],
                exclude: vec!["ttl".into()],
            }))
            .with_ttl(Ttl::Fixed(Duration::from_secs(5)));
        let c = commands(&m, &rec()).unwrap();
        assert_eq!(
            c[0],
            ["HSET", "user:7", "id", "7", "email", "a@b.c", "age", "41"]
        );
        assert_eq!(c[1], ["PEXPIRE", "user:7", "5000"]);

        let m = Mapping::new(t("email:{id}")).with_value(ValueMapping::Raw("email".into()));
        assert_eq!(commands(&m, &rec()).unwrap(), [["SET", "email:7", "a@b.c"]]);
    }

    #[test]
    fn record_errors_are_reported_not_stored() {
        let m = Mapping::new(t("user:{nick}"));
        assert_eq!(
            commands(&m, &rec()),
            Err(MappingProblem::EmptyField("nick".into()))
        );
        let m = Mapping::new(t("user:{id}")).with_index(IndexOp::Zadd {
            zset: t("z"),
            score: "email".into(),
            member: None,
        });
        assert!(matches!(
            commands(&m, &rec()),
            Err(MappingProblem::NotANumber { .. })
        ));
        let m = Mapping::new(t("user:{id}")).with_ttl(Ttl::Field {
            field: "age".into(),
            kind: TtlField::UnixSeconds,
        });
        assert!(matches!(
            commands(&m, &rec()),
            Err(MappingProblem::ExpiredTtl(_))
        ));
    }

    #[test]
    fn mappings_are_json_documents() {
        let m = Mapping::new(t("user:{id}"))
            .with_value(ValueMapping::Hash(FieldFilter {
                include: vec![],
                exclude: vec!["pw".into()],
            }))
            .with_ttl(Ttl::Fixed(Duration::from_millis(1500)))
            .with_index(IndexOp::Sadd {
                set: t("users"),
                member: None,
            })
            .with_index(IndexOp::Zadd {
                zset: t("z"),
                score: "age".into(),
                member: Some(t("{id}")),
            })
            .with_index(IndexOp::Hincrby {
                hash: t("c"),
                field: t("{country}"),
                by: 2,
            })
            .with_atomicity(Atomicity::Lua);
        assert_eq!(Mapping::from_json(&m.to_json()).unwrap(), m);
        let minimal = Mapping::from_json(r#"{"key": "k:{id}"}"#).unwrap();
        assert_eq!(minimal, Mapping::new(t("k:{id}")));
        for bad in [
            r#"{"key": "k:{id"}"#,
            r#"{"key": "k", "colour": 1}"#,
            r#"{"key": "k", "ttl": {"fixed": 0}}"#,
            r#"{"key": "k", "indexes": [{"sadd": {"set": "s", "extra": 1}}]}"#,
            r#"{"key": "k", "value": "yaml"}"#,
        ] {
            assert!(Mapping::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_atomic_needs_one_hash_tag() {
        let m = Mapping::new(t("user:{{{id}}}"))
            .with_atomicity(Atomicity::Multi)
            .with_index(IndexOp::Sadd {
                set: t("users"),
                member: None,
            });
        assert!(m.validate(true).is_err());
        assert!(m.validate(false).is_ok());
        let m = Mapping::new(t("user:{{{id}}}"))
            .with_atomicity(Atomicity::Lua)
            .with_index(IndexOp::Sadd {
                set: t("tags:{{{id}}}"),
                member: None,
            });
        assert!(m.validate(true).is_ok());
        let mut enc = Encoder::default();
        assert!(enc.encode(&m, &rec()).unwrap().one_slot());
    }
}
