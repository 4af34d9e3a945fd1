//! The `redstash` binary against a real redis-server.

mod common;

use std::process::Command;

use common::{sample, server};
use redstash::codec::{ArrayCodec, Npy};
use redstash::{DType, Order};

fn redstash(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .arg("--url")
        .arg(url)
        .args(args)
        .output()
        .expect("run redstash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn array_put_inspect_get_round_trip() {
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let a = sample(DType::F32, &[4, 5], Order::F);
    let input = dir.path().join("in.npy");
    std::fs::write(&input, Npy.encode(&a.as_array_ref()).unwrap()).unwrap();
    let url = srv.url();

    let (code, out, err) = redstash(
        &url,
        &[
            "array",
            "put",
            "a",
            input.to_str().unwrap(),
            "--codec",
            "zlib:1",
            "--ttl",
            "100",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = redstash(&url, &["--json", "inspect", "a"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["format"], "zlib+npy");
    assert_eq!(v["dtype"], "float32");
    assert_eq!(v["shape"], serde_json::json!([4, 5]));
    assert_eq!(v["order"], "F");
    assert!(v["ttl_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["stored_bytes"].as_u64().unwrap() < v["raw_bytes"].as_u64().unwrap());

    let output = dir.path().join("out.npy");
    let (code, _, err) = redstash(&url, &["array", "get", "a", "-o", output.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let back =
        redstash::codec::decode_array(std::fs::read(&output).unwrap().into(), &Default::default())
            .unwrap();
    assert_eq!(back, a);

    // Text output of inspect names the essentials.
    let (code, out, _) = redstash(&url, &["inspect", "a"]);
    assert_eq!(code, 0);
    assert!(out.contains("float32") && out.contains("[4, 5]"), "{out}");
}

#[test]
fn exit_codes_mean_something() {
    let srv = server();
    let url = srv.url();
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = redstash(&url, &["inspect", "missing"]);
    assert_eq!(code, 3, "{err}");
    let (code, out, _) = redstash(
        &url,
        &["--json", "array", "get", "missing", "-o", "/dev/null"],
    );
    assert_eq!(code, 3);
    assert!(out.contains("not found"));
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"not an npy file").unwrap();
    let (code, _, err) = redstash(&url, &["array", "put", "k", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown format"), "{err}");
    let (code, _, _) = redstash(
        &url,
        &[
            "array",
            "put",
            "k",
            bad.to_str().unwrap(),
            "--codec",
            "brotli",
        ],
    );
    assert_eq!(code, 1);
    let (code, _, _) = redstash(&url, &["frobnicate"]);
    assert_eq!(code, 2);
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let (code, _, err) = redstash(&url, &["inspect", "h"]);
    assert_eq!(code, 1);
    assert!(err.contains("hash"), "{err}");
    // Server down: a clear connection error.
    drop(srv);
    let (code, _, err) = redstash(&url, &["inspect", "a"]);
    assert_eq!(code, 1);
    assert!(!err.is_empty());
}
