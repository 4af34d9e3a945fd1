//! Hostile table metadata and interrupted splits, against real redis-servers: what a
//! manifest or the batch keys declare is bounded before anything is built from it.
#![cfg(all(feature = "arrow", feature = "testkit", feature = "sync"))]

use redstash::arrowgen::GenSpec;
use redstash::store::table::ReadOptions;
use redstash::testkit::RedisServer;
use redstash::{Error, TableStore};
use redstash::{Origin, ValueProblem};

fn small_table(store: &TableStore, con: &mut redis::Connection, table: &str) {
    let input: Vec<_> = GenSpec {
        partitions: 2,
        batches: 2,
        rows: 20,
        ..GenSpec::default()
    }
    .iter()
    .collect::<redstash::Result<_>>()
    .unwrap();
    store.split(con, table, input.into_iter()).unwrap();
}

fn set(con: &mut redis::Connection, key: &str, value: &[u8]) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(con).unwrap();
}

fn get(con: &mut redis::Connection, key: &str) -> Vec<u8> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

/// Every read path fails fast with a typed error on `table`.
fn every_read_fails(store: &TableStore, srv: &RedisServer, table: &str) -> Vec<Error> {
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let mut cons: Vec<redis::Connection> =
        (0..2).map(|_| client.get_connection().unwrap()).collect();
    let opts = ReadOptions::all();
    let started = std::time::Instant::now();
    let errors = vec![
        store.read(&mut con, table, &opts).unwrap_err(),
        store
            .read_each(&mut cons, table, &opts, |_, _| Ok(()))
            .unwrap_err(),
        store.read_parallel(&mut cons, table, &opts).unwrap_err(),
    ];
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    errors
}

#[test]
fn manifest_declaring_billions_of_batches_is_refused() {
    let srv = RedisServer::start().unwrap();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let store = TableStore::new("hostile");
    small_table(&store, &mut con, "t");
    let mkey = store.manifest_key("t");
    let manifest = String::from_utf8(get(&mut con, &mkey)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    json["partitions"][0]["batches"] = 4_000_000_000u32.into();
    set(&mut con, &mkey, &serde_json::to_vec(&json).unwrap());
    for e in every_read_fails(&store, &srv, "t") {
        assert!(
            matches!(&e, Error::InvalidValue { problem: ValueProblem::Corrupt { reason, .. }, .. } if reason.contains("max_table_batches")),
            "{e}"
        );
    }
    assert!(store.info(&mut con, "t").is_err());

    // Totals that are not the partitions' sum.
    json["partitions"][0]["batches"] = 1.into();
    json["rows"] = u64::MAX.into();
    set(&mut con, &mkey, &serde_json::to_vec(&json).unwrap());
    let e = store.read(&mut con, "t", &ReadOptions::all()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidValue {
                problem: ValueProblem::Corrupt { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn batch_keys_numbered_in_the_billions_are_refused() {
    let srv = RedisServer::start().unwrap();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let store = TableStore::new("hostile");
    small_table(&store, &mut con, "t");
    let _: i64 = redis::cmd("DEL")
        .arg(store.manifest_key("t"))
        .query(&mut con)
        .unwrap();
    let value = get(&mut con, &store.batch_key("t", 0, 0));
    set(&mut con, &store.batch_key("t", 0, 4_000_000_000), &value);
    for e in every_read_fails(&store, &srv, "t") {
        assert!(
            matches!(&e, Error::InvalidValue { problem: ValueProblem::Corrupt { reason, .. }, .. } if reason.contains("max_table_batches")),
            "{e}"
        );
    }
}

/// Batches of the generator, then one of another schema: a split of them stops with
/// `SchemaMismatch` after the first batches are stored, as a killed split leaves them.
fn interrupted_input() -> Vec<arrow_array::RecordBatch> {
    let mut input: Vec<_> = GenSpec {
        partitions: 1,
        batches: 4,
        rows: 20,
        ..GenSpec::default()
    }
    .iter()
    .collect::<redstash::Result<_>>()
    .unwrap();
    let other = arrow_array::RecordBatch::try_from_iter([(
        "x",
        std::sync::Arc::new(arrow_array::Int32Array::from(vec![1, 2])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    input.push(other);
    input
}

#[test]
fn interrupted_first_split_is_an_incomplete_table() {
    let srv = RedisServer::start().unwrap();
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let store = TableStore::new("hostile").with_pipeline_batches(1);
    let e = store
        .split(&mut con, "t", interrupted_input().into_iter())
        .unwrap_err();
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
    // Batches were stored, no manifest was.
    let present: bool = redis::cmd("EXISTS")
        .arg(store.batch_key("t", 0, 0))
        .query(&mut con)
        .unwrap();
    assert!(present);
    for e in every_read_fails(&store, &srv, "t") {
        assert!(matches!(e, Error::IncompleteTable { .. }), "{e}");
    }
    let e = store.info(&mut con, "t").unwrap_err();
    assert!(matches!(e, Error::IncompleteTable { .. }), "{e}");
    // split_parallel leaves the same state.
    let mut cons: Vec<redis::Connection> =
        (0..2).map(|_| client.get_connection().unwrap()).collect();
    let e = store
        .split_parallel(&mut cons, "p", interrupted_input().into_iter())
        .unwrap_err();
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
    let e = store.read(&mut con, "p", &ReadOptions::all()).unwrap_err();
    assert!(matches!(e, Error::IncompleteTable { .. }), "{e}");

    // Listed, so that it can be found; deleted with its marker; split again it reads.
    assert_eq!(store.list(&mut con).unwrap(), vec!["p", "t"]);
    assert!(store.delete(&mut con, "t").unwrap() > 0);
    assert!(
        store
            .read(&mut con, "t", &ReadOptions::all())
            .unwrap()
            .is_none()
    );
    assert!(
        !redis::cmd("EXISTS")
            .arg(store.pending_key("t"))
            .query::<bool>(&mut con)
            .unwrap()
    );
    assert_eq!(store.list(&mut con).unwrap(), vec!["p"]);
    let mut good = interrupted_input();
    good.pop();
    store.split(&mut con, "p", good.into_iter()).unwrap();
    let t = store
        .read(&mut con, "p", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(t.num_rows(), 80);
    assert!(
        !redis::cmd("EXISTS")
            .arg(store.pending_key("p"))
            .query::<bool>(&mut con)
            .unwrap()
    );
}

#[test]
fn interrupted_resplit_says_split_again() {
    let srv = RedisServer::start().unwrap();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let store = TableStore::new("hostile").with_pipeline_batches(1);
    let mut good = interrupted_input();
    good.pop();
    store.split(&mut con, "t", good.into_iter()).unwrap();
    store
        .split(&mut con, "t", interrupted_input().into_iter())
        .unwrap_err();
    for e in every_read_fails(&store, &srv, "t") {
        match e {
            Error::ResplitInterrupted { table, generation } => {
                assert_eq!((table.as_str(), generation), ("hostile:t", 1));
                let msg = Error::ResplitInterrupted { table, generation }.to_string();
                assert!(msg.contains("split again"), "{msg}");
            }
            other => panic!("{other}"),
        }
    }
    // The old manifest is still there for info; a new split repairs the table.
    assert_eq!(store.info(&mut con, "t").unwrap().unwrap().generation, 1);
    let mut good = interrupted_input();
    good.pop();
    let info = store.split(&mut con, "t", good.into_iter()).unwrap();
    assert_eq!(info.generation, 2);
    let t = store
        .read(&mut con, "t", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(t.num_rows(), 80);
}

#[test]
fn corrupted_stored_batch_is_a_checksum_error_on_every_read_path() {
    let srv = RedisServer::start().unwrap();
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let store = TableStore::new("hostile");
    small_table(&store, &mut con, "t");
    let key = store.batch_key("t", 0, 1);
    let mut value = get(&mut con, &key);
    let i = value.len() * 2 / 3;
    value[i] ^= 0x01;
    set(&mut con, &key, &value);
    for e in every_read_fails(&store, &srv, "t") {
        match e {
            Error::InvalidValue {
                origin: Origin::Key(k),
                problem: ValueProblem::ChecksumMismatch { .. },
            } => assert_eq!(k, key),
            other => panic!("{other}"),
        }
    }
    // The copy of stored batches into a file checks them before copying.
    let mut cons: Vec<redis::Connection> =
        (0..2).map(|_| client.get_connection().unwrap()).collect();
    let info = store.info(&mut con, "t").unwrap().unwrap();
    let e = store
        .read_ipc(
            &mut cons,
            "t",
            &ReadOptions::all(),
            Vec::new(),
            redstash::codec::arrow_file::IpcFormat::File,
            info.compression,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidValue {
                problem: ValueProblem::ChecksumMismatch { .. },
                ..
            }
        ),
        "{e}"
    );
}

/// `redstash read --out` in copy mode (the stored compression): a corrupt batch is a
/// failure (non-zero exit) and leaves neither the file nor its partial.
#[cfg(feature = "cli")]
#[test]
fn cli_copy_of_a_corrupted_table_fails_and_leaves_no_file() {
    let srv = RedisServer::start().unwrap();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let store = TableStore::new("");
    small_table(&store, &mut con, "cli:t");
    let key = store.batch_key("cli:t", 0, 0);
    let mut value = get(&mut con, &key);
    let i = value.len() / 2;
    value[i] ^= 0x10;
    set(&mut con, &key, &value);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.arrow");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_redstash"))
        .args(["read", "--url"])
        .arg(srv.url())
        .args(["--prefix", "cli:t", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("checksum"), "{stderr}");
    assert!(!out.exists());
    assert!(!dir.path().join("t.arrow.partial").exists());
}

/// `split_ipc` of a file with a corrupted batch body (re-framed batches, not decoded to
/// be stored) is an error at split time, and writes no manifest.
#[test]
fn split_ipc_of_a_corrupt_file_is_an_error() {
    use redstash::codec::arrow::IpcCompression;
    use redstash::codec::arrow_file::{IpcFormat, IpcInput};
    let srv = RedisServer::start().unwrap();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.arrow");
    let spec = GenSpec {
        partitions: 1,
        batches: 2,
        rows: 2000,
        ..GenSpec::default()
    };
    let f = std::fs::File::create(&path).unwrap();
    spec.write_ipc(f, IpcFormat::File, IpcCompression::Zstd, 1, |_, _| {})
        .unwrap();
    let good = std::fs::read(&path).unwrap();
    // The first corruption (8 bytes flipped, from the middle on) that arrow-rs rejects
    // when it decodes the batches: a byte of raw (incompressible) data is undetectable,
    // a byte of a compressed buffer is not.
    let rejected = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        IpcInput::open(&path, redstash::Limits::default()).is_ok_and(|input| {
            input.into_iter().any(|b| {
                b.and_then(|e| e.decode(None, &redstash::Limits::default()))
                    .is_err()
            })
        })
    };
    let corrupt = (good.len() / 2..good.len() - 64)
        .step_by(97)
        .map(|i| {
            let mut bytes = good.clone();
            for b in &mut bytes[i..i + 8] {
                *b ^= 0xA5;
            }
            bytes
        })
        .find(|b| rejected(b))
        .expect("a corruption arrow-rs rejects");
    std::fs::write(&path, &corrupt).unwrap();
    let store = TableStore::new("hostile");
    let r = IpcInput::open(&path, redstash::Limits::default())
        .and_then(|input| store.split_ipc(&mut con, "f", input));
    assert!(r.is_err(), "{:?}", r.map(|i| i.rows));
    assert!(matches!(
        store.info(&mut con, "f"),
        Err(Error::IncompleteTable { .. }) | Ok(None)
    ));
    // Without the verification (trusted inputs), the corrupt batch is stored, and reading
    // it fails: it is never returned as other data.
    let trusting = TableStore::new("hostile").with_verify_input(false);
    let input = IpcInput::open(&path, redstash::Limits::default()).unwrap();
    trusting.split_ipc(&mut con, "g", input).unwrap();
    let r = trusting.read(&mut con, "g", &ReadOptions::all());
    assert!(
        r.is_err(),
        "a corrupt stored batch read as {:?}",
        r.map(|t| t.is_some())
    );
}

#[test]
fn table_reads_over_the_call_budget_are_too_large() {
    let srv = RedisServer::start().unwrap();
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let store = TableStore::new("budget");
    small_table(&store, &mut con, "t");
    let stored = store.info(&mut con, "t").unwrap().unwrap().bytes;
    let opts = ReadOptions::all();
    assert_eq!(
        store
            .read(&mut con, "t", &opts)
            .unwrap()
            .unwrap()
            .batches
            .len(),
        4
    );
    // A budget of half the table's stored bytes: the in-memory reads stop.
    let tight = TableStore::new("budget").with_limits(redstash::Limits {
        max_call_bytes: stored / 2,
        ..Default::default()
    });
    let mut cons: Vec<redis::Connection> =
        (0..2).map(|_| client.get_connection().unwrap()).collect();
    for e in [
        tight.read(&mut con, "t", &opts).unwrap_err(),
        tight.read_parallel(&mut cons, "t", &opts).unwrap_err(),
    ] {
        assert!(
            matches!(e, Error::InvalidValue { problem: ValueProblem::TooLarge { cap, .. }, .. } if cap == stored / 2),
            "{e}"
        );
    }
    // A streamed read holds one batch at a time: not bounded by the call budget.
    let mut rows = 0;
    tight
        .read_each(&mut cons, "t", &opts, |_, b| {
            rows += b.num_rows();
            Ok(())
        })
        .unwrap();
    assert_eq!(rows, 80);
}
