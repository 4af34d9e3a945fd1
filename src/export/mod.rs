//! Export: a Redis keyspace (one server or a cluster) to DynamoDB-importable parts, JSON
//! Lines or RESP. The CLI's `redstash export` is this module.
//!
//! The output side ([`PartWriter`], [`verify`], [`merge`]) writes and checks an export
//! directory laid out like DynamoDB's export to S3: see [`manifest`] for the layout and
//! the manifests' fields.

pub mod manifest;
mod parts;
mod value;
mod verify;

pub use self::manifest::{ManifestFileEntry, ManifestSummary, Shard};
pub use self::parts::{
    Compression, DEFAULT_GZIP_LEVEL, DEFAULT_PART_SIZE, DEFAULT_ZSTD_LEVEL, ExportCounts,
    OutputFormat, PartInfo, PartWriter, PartWriterOptions,
};
pub use self::value::{KeyRecord, RedisValue, StreamEntry};
pub use self::verify::{MergeReport, PartProblem, VerifyReport, merge, verify};
