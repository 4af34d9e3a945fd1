//! A key as the exporter read it: its name, its value by Redis type, its expiry.

/// One entry of a stream: its ID and its field/value pairs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry ID (`<ms>-<seq>`).
    pub id: String,
    /// The field/value pairs.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A Redis value, by type, binary-safe.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisValue {
    /// A string.
    String(Vec<u8>),
    /// A hash: field/value pairs (in the order Redis returned them).
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A list, in order.
    List(Vec<Vec<u8>>),
    /// A set's members (in the order Redis returned them).
    Set(Vec<Vec<u8>>),
    /// A sorted set's members with their scores, in score order.
    ZSet(Vec<(Vec<u8>, f64)>),
    /// A stream's entries, in ID order.
    Stream(Vec<StreamEntry>),
}

impl RedisValue {
    /// The Redis type name (`string`, `hash`, `list`, `set`, `zset`, `stream`).
    pub fn type_name(&self) -> &'static str {
        match self {
            RedisValue::String(_) => "string",
            RedisValue::Hash(_) => "hash",
            RedisValue::List(_) => "list",
            RedisValue::Set(_) => "set",
            RedisValue::ZSet(_) => "zset",
            RedisValue::Stream(_) => "stream",
        }
    }
}

/// A key read for export.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The key (binary-safe).
    pub key: Vec<u8>,
    /// Its value.
    pub value: RedisValue,
    /// When it expires, in Unix milliseconds (`None`: no expiry), from `PTTL` at read
    /// time.
    pub expire_at_ms: Option<u64>,
}
