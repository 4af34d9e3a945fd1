//! Export: a Redis keyspace (one server or a cluster) to DynamoDB-importable parts, JSON
//! Lines or RESP. The CLI's `redstash export` is this module.
//!
//! The output side ([`PartWriter`], [`verify`], [`merge`]) writes and checks an export
//! directory laid out like DynamoDB's export to S3: see [`manifest`] for the layout and
//! the manifests' fields.

pub mod dynamo;
mod dynamo_number;
mod dynamo_schema;
mod format;
pub mod manifest;
mod part_sink;
mod parts;
mod read;
mod restore;
mod run;
mod value;
mod verify;

pub use self::dynamo::{DynamoMapping, DynamoOptions};
pub use self::format::{RESP_ELEMENTS_PER_COMMAND, json_line, resp_commands};
pub use self::manifest::{ManifestFileEntry, ManifestSummary, Shard};
pub use self::part_sink::PartSink;
pub use self::parts::{
    Compression, DEFAULT_GZIP_LEVEL, DEFAULT_PART_SIZE, DEFAULT_ZSTD_LEVEL, ExportCounts,
    OutputFormat, PartInfo, PartWriter, PartWriterOptions,
};
pub use self::read::{
    DEFAULT_MAX_VALUE_BYTES, DEFAULT_PAGE_ELEMENTS, PageRead, ReadOptions, read_keys,
};
pub use self::restore::{RestoreReport, parse_json_line, restore};
pub use self::run::{
    Encode, ExportProgress, ExportReport, Exporter, ItemSink, MemorySink, SlotShard,
};
pub use self::value::{KeyRecord, RedisValue, StreamEntry};
pub use self::verify::{MergeReport, PartProblem, VerifyReport, merge, verify};
