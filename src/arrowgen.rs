//! The ArrowRedis benchmark dataset (feature `arrow`), for like-for-like benchmarks and
//! tests.
//!
//! Same schema and value distributions as ArrowRedis's `gen` command: `id64` int64
//! (global row number), `partition` int32, `int32_c` int32 in `[-1e6, 1e6)`, `float64_c`
//! and `float32_c` normal(0, 1), `bool_c` (p = 0.5), `ts_ns` timestamp\[ns\] within 30
//! days after 2023-11-14, `dec_18_4` decimal128(18, 4) in `[-1e6, 1e6)`, `str_c`
//! dictionary\<int32, utf8\> over a vocabulary of pronounceable words (or plain utf8), and
//! `list_ints` list\<int32\> of 0 to 5 values in `[0, 1000)`.
//!
//! Generation is deterministic in the seed and each batch depends only on `(seed,
//! partition, batch)`, so batches can be generated in any order or in parallel. The
//! random numbers are not numpy's: values are not identical to ArrowRedis's, only the
//! schema, sizes and distributions are.
//!
//! ```
//! use redstash::arrowgen::GenSpec;
//! let spec = GenSpec { partitions: 2, batches: 3, rows: 100, ..GenSpec::default() };
//! let batches: Vec<_> = spec.iter().collect::<redstash::Result<_>>().unwrap();
//! assert_eq!(batches.len(), 6);
//! assert_eq!(batches[0].num_columns(), 10);
//! ```

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, DictionaryArray, Float32Array, Float64Array,
    Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::codec::arrow::IpcCompression;
use crate::codec::arrow_file::{IpcFormat, write_ipc};
use crate::error::{Error, Result};

/// What to generate: `partitions` x `batches` (per partition) x `rows` (per batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    /// Number of partitions.
    pub partitions: u32,
    /// Batches per partition.
    pub batches: u32,
    /// Rows per batch.
    pub rows: usize,
    /// Seed of the random values.
    pub seed: u64,
    /// `str_c` as dictionary\<int32, utf8\> (ArrowRedis `--dict-strings`) or plain utf8.
    pub dict_strings: bool,
    /// Number of distinct strings in `str_c`.
    pub string_cardinality: usize,
}

impl Default for GenSpec {
    /// ArrowRedis's benchmark settings (seed 42, dictionary strings over 5000 words) on
    /// a small table: 4 partitions x 8 batches x 10 000 rows.
    fn default() -> Self {
        GenSpec {
            partitions: 4,
            batches: 8,
            rows: 10_000,
            seed: 42,
            dict_strings: true,
            string_cardinality: 5000,
        }
    }
}

/// The dataset's schema (every field nullable, as pyarrow builds it).
pub fn schema(dict_strings: bool) -> SchemaRef {
    let str_type = if dict_strings {
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
    } else {
        DataType::Utf8
    };
    Arc::new(Schema::new(vec![
        Field::new("id64", DataType::Int64, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("int32_c", DataType::Int32, true),
        Field::new("float64_c", DataType::Float64, true),
        Field::new("float32_c", DataType::Float32, true),
        Field::new("bool_c", DataType::Boolean, true),
        Field::new(
            "ts_ns",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ),
        Field::new("dec_18_4", DataType::Decimal128(18, 4), true),
        Field::new("str_c", str_type, true),
        Field::new(
            "list_ints",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
            true,
        ),
    ]))
}

/// SplitMix64: small, fast, good enough for benchmark data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo.wrapping_add(self.below(hi.wrapping_sub(lo) as u64) as i64)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn vocab(card: usize, seed: u64) -> Vec<String> {
    const V: &[u8] = b"aeiou";
    const C: &[u8] = b"bcdfghjklmnpqrstvwxyz";
    let mut rng = Rng::new(seed ^ 0x766F_6361_6221);
    (0..card)
        .map(|_| {
            let syllables = rng.range(2, 5);
            let mut s = String::with_capacity(8);
            for _ in 0..syllables {
                s.push(C[rng.below(C.len() as u64) as usize] as char);
                s.push(V[rng.below(V.len() as u64) as usize] as char);
            }
            s
        })
        .collect()
}

impl GenSpec {
    /// Total number of batches.
    pub fn total_batches(&self) -> u64 {
        self.partitions as u64 * self.batches as u64
    }

    /// Total number of rows.
    pub fn total_rows(&self) -> u64 {
        self.total_batches() * self.rows as u64
    }

    /// The batches in partition-major order (all batches of partition 0, then 1, ...).
    pub fn iter(&self) -> impl Iterator<Item = Result<RecordBatch>> + Send + 'static {
        let spec = self.clone();
        let schema = schema(self.dict_strings);
        let words = Arc::new(StringArray::from_iter_values(vocab(
            self.string_cardinality.max(1),
            self.seed,
        )));
        (0..self.partitions).flat_map(move |p| {
            let (spec, schema, words) = (spec.clone(), schema.clone(), words.clone());
            (0..spec.batches).map(move |b| spec.make(&schema, &words, p, b))
        })
    }

    /// The same batches, in the same order, generated ahead on `threads` threads (at
    /// most two batches ahead per thread, so memory stays bounded). Dropping the
    /// iterator stops the threads.
    pub fn iter_parallel(
        &self,
        threads: usize,
    ) -> impl Iterator<Item = Result<RecordBatch>> + Send + 'static {
        let threads = threads.max(1);
        let total = self.total_batches();
        let shared = Arc::new((
            self.clone(),
            schema(self.dict_strings),
            StringArray::from_iter_values(vocab(self.string_cardinality.max(1), self.seed)),
        ));
        let batches = self.batches.max(1) as u64;
        let receivers: Vec<_> = (0..threads as u64)
            .map(|w| {
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let (spec, schema, words) = &*shared;
                    let mut i = w;
                    while i < total {
                        let (p, b) = ((i / batches) as u32, (i % batches) as u32);
                        if tx.send(spec.make(schema, words, p, b)).is_err() {
                            return;
                        }
                        i += threads as u64;
                    }
                });
                rx
            })
            .collect();
        (0..total).map_while(move |i| receivers[(i % threads as u64) as usize].recv().ok())
    }

    /// Write the dataset as an Arrow IPC file (`format` [`IpcFormat::File`], what
    /// ArrowRedis's `gen` writes) or stream, with IPC body compression, generating on
    /// `threads` threads; `progress` is called after each batch with (batches written,
    /// bytes written). Returns the bytes written.
    pub fn write_ipc<W: Write>(
        &self,
        out: W,
        format: IpcFormat,
        compression: IpcCompression,
        threads: usize,
        progress: impl FnMut(u64, u64),
    ) -> Result<u64> {
        write_ipc(
            out,
            &schema(self.dict_strings),
            self.iter_parallel(threads),
            format,
            compression,
            progress,
        )
    }

    /// Batch `batch` of partition `partition`.
    pub fn batch(&self, partition: u32, batch: u32) -> Result<RecordBatch> {
        let words = StringArray::from_iter_values(vocab(self.string_cardinality.max(1), self.seed));
        self.make(&schema(self.dict_strings), &words, partition, batch)
    }

    fn make(
        &self,
        schema: &SchemaRef,
        words: &StringArray,
        partition: u32,
        batch: u32,
    ) -> Result<RecordBatch> {
        let rows = self.rows;
        let global = partition as u64 * self.batches as u64 + batch as u64;
        let mut rng = Rng::new(
            self.seed
                .wrapping_mul(0x2545_F491_4F6C_DD1D)
                .wrapping_add(global.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        let start = (global * rows as u64) as i64;
        let id64 = Int64Array::from_iter_values(start..start + rows as i64);
        let part = Int32Array::from_iter_values(std::iter::repeat_n(partition as i32, rows));
        let i32c = Int32Array::from_iter_values(
            (0..rows).map(|_| rng.range(-1_000_000, 1_000_000) as i32),
        );
        let f64c = Float64Array::from_iter_values((0..rows).map(|_| rng.normal()));
        let f32c = Float32Array::from_iter_values((0..rows).map(|_| rng.normal() as f32));
        let boolc: BooleanArray = (0..rows).map(|_| Some(rng.unit() < 0.5)).collect();
        const BASE_NS: i64 = 1_700_000_000_000_000_000;
        const SPAN_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;
        let ts = TimestampNanosecondArray::from_iter_values(
            (0..rows).map(|_| BASE_NS + rng.range(0, SPAN_NS)),
        );
        let dec = Decimal128Array::from_iter_values(
            (0..rows).map(|_| rng.range(-10_000_000_000, 10_000_000_000) as i128),
        )
        .with_precision_and_scale(18, 4)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let card = words.len() as u64;
        let keys = Int32Array::from_iter_values((0..rows).map(|_| rng.below(card) as i32));
        let strc: ArrayRef = if self.dict_strings {
            Arc::new(
                DictionaryArray::<Int32Type>::try_new(keys, Arc::new(words.clone()))
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?,
            )
        } else {
            Arc::new(StringArray::from_iter_values(
                keys.values().iter().map(|&k| words.value(k as usize)),
            ))
        };
        let mut lists = ListBuilder::with_capacity(Int32Builder::with_capacity(rows * 3), rows);
        for _ in 0..rows {
            let n = rng.below(6);
            for _ in 0..n {
                lists.values().append_value(rng.below(1000) as i32);
            }
            lists.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id64),
            Arc::new(part),
            Arc::new(i32c),
            Arc::new(f64c),
            Arc::new(f32c),
            Arc::new(boolc),
            Arc::new(ts),
            Arc::new(dec),
            strc,
            Arc::new(lists.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::InvalidArgument(format!("generated batch: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let spec = GenSpec {
            partitions: 2,
            batches: 2,
            rows: 50,
            ..GenSpec::default()
        };
        let a: Vec<_> = spec.iter().collect::<Result<_>>().unwrap();
        let b: Vec<_> = spec.iter().collect::<Result<_>>().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        assert_eq!(a[3], spec.batch(1, 1).unwrap());
        let par: Vec<_> = spec.iter_parallel(3).collect::<Result<_>>().unwrap();
        assert_eq!(a, par);
        assert_ne!(a[0].column(2), a[1].column(2));
        assert_eq!(a[0].schema(), schema(true));
        let plain = GenSpec {
            dict_strings: false,
            ..spec
        };
        assert_eq!(plain.batch(0, 0).unwrap().schema(), schema(false));
    }
}
