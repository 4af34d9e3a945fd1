//! FeatureStore / BatchStore interop with Python (numpy + redis-py, the common Python recipe),
//! both ways, through a real redis-server. Needs the venv that `scripts/setup` creates
//! (`REDSTASH_PYTHON`, or `.venv/bin/python`).
#![cfg(all(feature = "testkit", feature = "sync", feature = "ndarray"))]

mod common;

use std::time::{Duration, SystemTime};

use common::{run_py, sample, server};
use redstash::dtype::ALL_DTYPES;
use redstash::{BatchStore, DType, FeatureStore, Layout, Order, View};

const N: usize = 6;
const DIM: usize = 5;

fn ids() -> Vec<String> {
    (0..N).map(|i| i.to_string()).collect()
}

#[test]
fn python_reads_what_redstash_wrote() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let native = FeatureStore::new("rsfeat");
    let compat = FeatureStore::new("");
    for dtype in ALL_DTYPES {
        let values = sample(dtype, &[N, DIM], Order::C);
        let v = View::new(dtype.name(), dtype, DIM).with_ttl(Duration::from_secs(3600));
        native.register_view(&mut con, &v).unwrap();
        let eids: Vec<String> = (0..N).map(|i| format!("e{i}")).collect();
        assert_eq!(
            native
                .write_many(&mut con, dtype.name(), &eids, &values)
                .unwrap(),
            N
        );
        let name = format!("rscompat_{dtype}");
        let v = View::new(&name, dtype, DIM).with_layout(Layout::Hash);
        compat.register_view(&mut con, &v).unwrap();
        compat.write_many(&mut con, &name, &ids(), &values).unwrap();
    }
    let batches = BatchStore::new("rsbatch");
    let x = sample(DType::F64, &[4, 3], Order::C);
    let y = sample(DType::I64, &[4], Order::C);
    batches
        .put(&mut con, "b1", &[("features", &x), ("labels", &y)])
        .unwrap();
    run_py("features.py", "check", &srv.url());
}

#[test]
fn redstash_reads_what_python_wrote() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    run_py("features.py", "write", &srv.url());
    // The recipe's keys are `{name}:{entity}`: a store without prefix, one view per name.
    let store = FeatureStore::new("");
    let views: Vec<String> = ALL_DTYPES.iter().map(|d| format!("pyfeat_{d}")).collect();
    for (dtype, name) in ALL_DTYPES.iter().zip(&views) {
        let v = View::new(name, *dtype, DIM).with_layout(Layout::Hash);
        store.register_view(&mut con, &v).unwrap();
    }
    let mut ask = ids();
    ask.push("missing".into());
    let rows = store.read_views(&mut con, &ask, &views).unwrap();
    for (dtype, r) in ALL_DTYPES.iter().zip(rows) {
        let mut want_present = vec![true; N];
        want_present.push(false);
        assert_eq!(r.present, want_present, "{dtype}");
        let want = sample(*dtype, &[N, DIM], Order::C);
        let size = dtype.size();
        let got = &r.values.data()[..N * DIM * size];
        match dtype {
            // numpy builds `0 + 1j * -0.0` as +0.0j: compare complex values, not bytes.
            DType::C64 | DType::C128 => {
                let as_f64 = |b: &[u8]| -> Vec<f64> {
                    if *dtype == DType::C64 {
                        b.chunks(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                            .collect()
                    } else {
                        b.chunks(8)
                            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                            .collect()
                    }
                };
                assert_eq!(as_f64(got), as_f64(&want.data()[..]), "{dtype}");
            }
            _ => assert_eq!(got, &want.data()[..], "{dtype}"),
        }
        let age = SystemTime::now()
            .duration_since(r.written_at[0].expect("updated_at"))
            .unwrap();
        assert!(age < Duration::from_secs(600), "{dtype}: {age:?}");
    }
    // Typed, with the recipe's TTL kept.
    let f = store
        .read::<f32, _>(&mut con, "pyfeat_float32", "2")
        .unwrap()
        .expect("present");
    let want: ndarray::Array2<f32> = sample(DType::F32, &[N, DIM], Order::C)
        .to_ndarray()
        .unwrap();
    assert_eq!(f.values, want.row(2));
    // Written by Rust in the same layout, read by Python's recipe in the other test.
    let dtype_field: String = redis::cmd("HGET")
        .arg("pyfeat_float32:2")
        .arg("dtype")
        .query(&mut con)
        .unwrap();
    assert_eq!(dtype_field, "float32");
}
