//! Export: a Redis keyspace (one server or a cluster) to DynamoDB-importable parts, JSON
//! Lines or RESP. The CLI's `redstash export` is this module.

pub mod dynamo;
mod dynamo_number;
mod dynamo_schema;
mod value;

pub use self::dynamo::{DynamoMapping, DynamoOptions};
pub use self::value::{KeyRecord, RedisValue, StreamEntry};
