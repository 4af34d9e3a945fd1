//! Export: a Redis keyspace (one server or a cluster) to DynamoDB-importable parts, JSON
//! Lines or RESP. The CLI's `redstash export` is this module.

mod value;

pub use self::value::{KeyRecord, RedisValue, StreamEntry};
