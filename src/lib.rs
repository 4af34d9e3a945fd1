//! # redstash
//!
//! Keep numerical data in Redis, fast and in standard formats.
//!
//! * Arrays are stored as NumPy `.npy` values (optionally inside an lz4, zlib or zstd
//!   frame), so `numpy.load(io.BytesIO(value))` reads what Rust wrote and the other way
//!   round. No pickle, no private framing.
//! * [`ArrayStore`] puts and gets arrays (`ndarray` or [`RawArray`]) with TTLs, pipelined
//!   batches (`put_many`/`get_many`), and transparent chunking of arrays larger than
//!   Redis's bulk limit.
//! * Every operation is written once as a plan and a parse ([`exec`]); it runs on any
//!   synchronous `redis::ConnectionLike`, any async `redis::aio::ConnectionLike` (feature
//!   `tokio`), or on redstash's [`direct`] connections, a narrow fast path for large
//!   values.
//! * Everything works on a Redis Cluster (feature `cluster`): `cluster::ClusterConnection`
//!   routes each command of a plan to its primary by hash slot, splits cross-slot
//!   multi-key commands, and runs `SCAN` over every primary.
//!
//! ```no_run
//! use ndarray::Array2;
//! use redstash::ArrayStore;
//!
//! # fn main() -> redstash::Result<()> {
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let mut con = client.get_connection()?;
//! let store = ArrayStore::new("emb");
//! let a = Array2::<f32>::ones((1000, 128));
//! store.put(&mut con, "user:42", &a)?;
//! let back: Option<Array2<f32>> = store.get_as(&mut con, "user:42")?;
//! assert_eq!(back.unwrap(), a);
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `sync` (default) | the blocking API on `redis::ConnectionLike` |
//! | `ndarray` (default) | conversions to and from `ndarray` arrays |
//! | `tokio` | `*_async` operations on `redis::aio::ConnectionLike`, [`direct::DirectAsyncConnection`] |
//! | `zstd` | zstd compression |
//! | `arrow` | `TableStore`: partitioned Arrow tables (ArrowRedis layout); `arrowgen`: its benchmark dataset; includes `zstd` |
//! | `testkit` | [`testkit`]: start real `redis-server`s for tests |
//! | `tls` | `rediss://` (TLS, rustls with ring) on the [`direct`] connections (`direct::TlsOptions`) and on redis-rs's |
//! | `cli` | the `redstash` command-line tool |
//! | `fuzzing` | entry points for the fuzz targets in `fuzz/`; not a stable API |

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]

pub mod array;
#[cfg(feature = "arrow")]
pub mod arrowgen;
pub mod buffers;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod codec;
pub mod direct;
pub mod dtype;
pub mod error;
pub mod exec;
#[cfg(feature = "export")]
#[cfg_attr(docsrs, doc(cfg(feature = "export")))]
pub mod export;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "load")]
#[cfg_attr(docsrs, doc(cfg(feature = "load")))]
pub mod load;
pub(crate) mod resp;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

/// The `ndarray` crate redstash is built with (0.17): use it (`redstash::ndarray::Array2`)
/// so that your arrays are the ones [`AsArray`] is implemented for.
#[cfg(feature = "ndarray")]
pub use ndarray;
/// The `redis` crate redstash is built with (1.8): its connections are what the stores
/// take.
pub use redis;

pub use array::{ArrayRef, AsArray, Order, RawArray};
pub use codec::{ArrayCodec, Compressed, Compression, Limits, Npy};
pub use dtype::{ByteOrder, DType, Element};
pub use error::{Error, Origin, RedisErrorKind, Result, Retry, ValueProblem};
pub use store::array::ArrayStore;
pub use store::batch::{Batch, BatchStore, NamedArrays};
pub use store::data_meta::DataMetaStore;
#[cfg(feature = "ndarray")]
pub use store::feature::{FeatureStore, Layout, Rows, View};
#[cfg(feature = "arrow")]
pub use store::table::TableStore;
