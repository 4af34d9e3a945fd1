//! Tables: write a partitioned Arrow table to Redis (ArrowRedis layout), read two of
//! its partitions back, print rows/s; then an IPC file in and out, and a streamed read.
//!
//! Uses `REDIS_URL` when set, else starts a throwaway local redis-server (testkit).
//!
//! ```sh
//! cargo run --release --example tables --features arrow,testkit
//! ```

use std::time::Instant;

use redstash::TableStore;
use redstash::arrowgen::GenSpec;
use redstash::codec::arrow::IpcCompression;
use redstash::codec::arrow_file::{IpcFormat, IpcInput};
use redstash::direct::DirectConnection;
use redstash::store::table::ReadOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = redstash::testkit::url_or_start()?;
    // Four connections: split and read use them concurrently.
    let mut cons: Vec<DirectConnection> = (0..4)
        .map(|_| DirectConnection::open(url.as_str()))
        .collect::<Result<_, _>>()?;

    // 1. The ArrowRedis benchmark dataset, 8 partitions x 4 batches x 50,000 rows.
    let spec = GenSpec {
        partitions: 8,
        batches: 4,
        rows: 50_000,
        ..GenSpec::default()
    };
    let batches: Vec<_> = spec.iter_parallel(2).collect::<redstash::Result<_>>()?;

    // 2. Split it by its `partition` column: one zstd IPC stream per key
    //    `examples:trips:{part=XXXXX}:batch=YYYYY`, then a manifest.
    let store = TableStore::new("examples")
        .with_partition_by("partition")
        .with_compression(IpcCompression::Zstd);
    let t = Instant::now();
    let info = store.split_parallel(&mut cons, "trips", batches.into_iter())?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "split {} rows into {} partitions x {} batches ({:.1} MB stored) in {:.3} s: {:.0} rows/s",
        info.rows,
        info.partitions.len(),
        info.partitions[0].batches,
        info.bytes as f64 / 1e6,
        secs,
        info.rows as f64 / secs
    );

    // 3. Read partitions 2 and 5 back (pipelined MGETs, decoded on every core).
    let t = Instant::now();
    let table = store
        .read_parallel(
            &mut cons,
            "trips",
            &ReadOptions::all().with_partitions([2, 5]),
        )?
        .ok_or("the table vanished")?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read partitions 2 and 5: {} rows in {} batches in {:.3} s: {:.0} rows/s",
        table.num_rows(),
        table.batches.len(),
        secs,
        table.num_rows() as f64 / secs
    );

    // 4. Only two columns of one partition.
    let t = Instant::now();
    let slim = store
        .read(
            &mut cons[0],
            "trips",
            &ReadOptions::all()
                .with_partitions([0])
                .with_columns(["id64", "float64_c"]),
        )?
        .ok_or("the table vanished")?;
    println!(
        "read 2 columns of partition 0: {} rows in {:.3} s",
        slim.num_rows(),
        t.elapsed().as_secs_f64()
    );

    // 5. From an Arrow IPC file on disk: batches are stored as the file holds them.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("trips.arrow");
    spec.write_ipc(
        std::fs::File::create(&path)?,
        IpcFormat::File,
        IpcCompression::Zstd,
        2,
        |_, _| {},
    )?;
    let t = Instant::now();
    let info = store.split_ipc_parallel(
        &mut cons,
        "from_file",
        IpcInput::open(&path, Default::default())?,
    )?;
    println!(
        "split {} from an IPC file in {:.3} s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(info.rows, spec.total_rows());

    // 6. Back into a file, streamed: the stored zstd batches are copied, not decoded.
    let out = dir.path().join("back.arrow");
    let t = Instant::now();
    let (_, w) = store
        .read_ipc(
            &mut cons,
            "from_file",
            &ReadOptions::all(),
            std::io::BufWriter::new(std::fs::File::create(&out)?),
            IpcFormat::File,
            IpcCompression::Zstd,
        )?
        .ok_or("the table vanished")?;
    println!(
        "read {} rows into {} ({:.1} MB, copied: {}) in {:.3} s",
        w.rows,
        out.display(),
        w.written_bytes as f64 / 1e6,
        w.copied,
        t.elapsed().as_secs_f64()
    );

    // 7. Batch by batch, in bounded memory (e.g. to feed a training loop).
    let mut sum = 0f64;
    let r = store.read_each(
        &mut cons,
        "trips",
        &ReadOptions::all().with_columns(["float64_c"]),
        |_, batch| {
            let col = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::Float64Array>()
                .ok_or_else(|| redstash::Error::InvalidArgument("not f64".into()))?;
            sum += col.values().iter().sum::<f64>();
            Ok(())
        },
    )?;
    if let Some(r) = r {
        println!("streamed {} rows of float64_c: sum {sum:.1}", r.rows);
    }

    store.delete(&mut cons[0], "trips")?;
    store.delete(&mut cons[0], "from_file")?;
    Ok(())
}
