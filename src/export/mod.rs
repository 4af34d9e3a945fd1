//! Export: a Redis keyspace (one server or a cluster) to DynamoDB-importable parts, JSON
//! Lines or RESP. The CLI's `redstash export` is this module.

pub mod dynamo;
mod dynamo_number;
mod dynamo_schema;
mod format;
mod read;
mod run;
mod value;

pub use self::dynamo::{DynamoMapping, DynamoOptions};
pub use self::format::{RESP_ELEMENTS_PER_COMMAND, json_line, resp_commands};
pub use self::read::{
    DEFAULT_MAX_VALUE_BYTES, DEFAULT_PAGE_ELEMENTS, PageRead, ReadOptions, read_keys,
};
pub use self::run::{
    Encode, ExportProgress, ExportReport, Exporter, ItemSink, MemorySink, SlotShard,
};
pub use self::value::{KeyRecord, RedisValue, StreamEntry};
