//! DynamoDB import lines read back by boto3's `TypeDeserializer`: every Redis type,
//! binary keys and values, empty strings, unicode, the number edges, TTLs, empty sets,
//! sorted set scores, decoded arrays. Needs the venv that `scripts/setup` creates, with
//! boto3 (`REDSTASH_PYTHON`, or `.venv/bin/python`).
#![cfg(feature = "export")]

use redstash::RawArray;
use redstash::codec::{ArrayCodec, Npy};
use redstash::export::dynamo::{
    HashLayout, Inference, Occurrence, RedstashValues, SortKey, ZSetLayout,
};
use redstash::export::{DynamoMapping, DynamoOptions, KeyRecord, RedisValue, StreamEntry};
use serde_json::{Value, json};

fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("REDSTASH_PYTHON") {
        return p.into();
    }
    let venv = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "this test needs boto3 in a venv: run scripts/setup (or set REDSTASH_PYTHON)"
    );
    venv
}

fn n(s: &str) -> Value {
    json!({ "$n": s })
}

fn b(bytes: &[u8]) -> Value {
    use base64::Engine;
    json!({ "$b": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

fn s(v: &str) -> RedisValue {
    RedisValue::String(v.as_bytes().to_vec())
}

fn strs(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn rec(key: &[u8], value: RedisValue) -> KeyRecord {
    KeyRecord {
        key: key.to_vec(),
        value,
        expire_at_ms: None,
    }
}

#[test]
fn boto3_reads_the_items() {
    let auto = DynamoMapping::new(DynamoOptions::default()).unwrap();
    let typed = DynamoMapping::new(DynamoOptions {
        type_attribute: Some("type".into()),
        sort_key: Some(SortKey {
            attribute: "sk".into(),
            separator: b"#".to_vec(),
            occurrence: Occurrence::Last,
        }),
        ..DynamoOptions::default()
    })
    .unwrap();
    let top = DynamoMapping::new(DynamoOptions {
        hash_layout: HashLayout::TopLevel,
        zset_layout: ZSetLayout::Map,
        ..DynamoOptions::default()
    })
    .unwrap();
    let off = DynamoMapping::new(DynamoOptions {
        inference: Inference::Off,
        ..DynamoOptions::default()
    })
    .unwrap();
    let decode = DynamoMapping::new(DynamoOptions {
        redstash_values: RedstashValues::Decode,
        ..DynamoOptions::default()
    })
    .unwrap();

    let d38 = "12345678901234567890123456789012345678";
    let d39 = "123456789012345678901234567890123456789";
    let npy = Npy
        .encode(
            &RawArray::from_vec(vec![3], vec![0.1f32, -2.5, 1e30])
                .unwrap()
                .as_array_ref(),
        )
        .unwrap()
        .to_vec();
    let npy2d = Npy
        .encode(
            &RawArray::from_vec(vec![2, 1], vec![7i64, -8])
                .unwrap()
                .as_array_ref(),
        )
        .unwrap()
        .to_vec();

    let mut cases: Vec<(&DynamoMapping, KeyRecord, Value)> = vec![
        (
            &auto,
            rec(b"plain", s("hello")),
            json!({"pk": "plain", "value": "hello"}),
        ),
        (
            &auto,
            rec(b"empty", s("")),
            json!({"pk": "empty", "value": ""}),
        ),
        (
            &auto,
            rec(
                "ключ:😀".as_bytes(),
                s("naïve \"quoted\" \\ \n\t\u{7f}\u{2028}"),
            ),
            json!({"pk": "ключ:😀", "value": "naïve \"quoted\" \\ \n\t\u{7f}\u{2028}"}),
        ),
        (
            &auto,
            rec(
                &[0xff, 0x00, b'k'],
                RedisValue::String(vec![0, 159, 146, 150]),
            ),
            json!({"pk": b(&[0xff, 0x00, b'k']), "value": b(&[0, 159, 146, 150])}),
        ),
        (
            &auto,
            KeyRecord {
                key: b"ttl".to_vec(),
                value: s("x"),
                expire_at_ms: Some(1_893_456_000_500),
            },
            json!({"pk": "ttl", "value": "x", "ttl": n("1893456001")}),
        ),
        (
            &auto,
            rec(
                b"hash",
                RedisValue::Hash(vec![
                    (b"name".to_vec(), b"Ada".to_vec()),
                    (b"age".to_vec(), b"36".to_vec()),
                    (b"zip".to_vec(), b"007".to_vec()),
                    (b"blob".to_vec(), vec![0xc3, 0x28]),
                    (b"empty".to_vec(), Vec::new()),
                    ("città".as_bytes().to_vec(), b"-0.5".to_vec()),
                ]),
            ),
            json!({"pk": "hash", "value": {
                "name": "Ada", "age": n("36"), "zip": "007", "blob": b(&[0xc3, 0x28]),
                "empty": "", "città": n("-0.5")}}),
        ),
        (
            &top,
            rec(
                b"hash",
                RedisValue::Hash(vec![
                    (b"name".to_vec(), b"Ada".to_vec()),
                    (b"score".to_vec(), b"1.50".to_vec()),
                ]),
            ),
            json!({"pk": "hash", "name": "Ada", "score": n("1.50")}),
        ),
        (
            &auto,
            rec(b"list", RedisValue::List(strs(&["a", "1", "a", "", "1e5"]))),
            json!({"pk": "list", "value": ["a", n("1"), "a", "", n("1e5")]}),
        ),
        (
            &auto,
            rec(b"ss", RedisValue::Set(strs(&["x", "y", ""]))),
            json!({"pk": "ss", "value": {"$ss": ["x", "y", ""]}}),
        ),
        (
            &auto,
            rec(b"ns", RedisValue::Set(strs(&["1", "-2.5", "1E-130", d38]))),
            json!({"pk": "ns", "value": {"$ns": ["1", "-2.5", "1E-130", d38]}}),
        ),
        (
            &auto,
            rec(b"bs", RedisValue::Set(vec![vec![0xff], vec![0xfe, 0]])),
            json!({"pk": "bs", "value": {"$bs": ["/w==", "/gA="]}}),
        ),
        (
            &auto,
            rec(
                b"mixed",
                RedisValue::Set(vec![b"1".to_vec(), b"a".to_vec(), vec![0xff]]),
            ),
            json!({"pk": "mixed", "value": [n("1"), "a", b(&[0xff])]}),
        ),
        (
            &auto,
            rec(b"sameno", RedisValue::Set(strs(&["1.5", "1.50"]))),
            json!({"pk": "sameno", "value": [n("1.5"), n("1.50")]}),
        ),
        (
            &auto,
            rec(b"emptyset", RedisValue::Set(vec![])),
            json!({"pk": "emptyset", "value": []}),
        ),
        (
            &off,
            rec(b"offset", RedisValue::Set(strs(&["1", "2"]))),
            json!({"pk": "offset", "value": {"$ss": ["1", "2"]}}),
        ),
        (
            &auto,
            rec(
                b"zset",
                RedisValue::ZSet(vec![
                    (b"lo".to_vec(), f64::NEG_INFINITY),
                    (b"zero".to_vec(), -0.0),
                    (b"frac".to_vec(), 0.1),
                    (b"3".to_vec(), 2.5e-8),
                    (b"big".to_vec(), 1.2345678901234566e125),
                    (b"huge".to_vec(), 1e300),
                    (vec![0xff], 123456789.125),
                    (b"hi".to_vec(), f64::INFINITY),
                ]),
            ),
            json!({"pk": "zset", "value": [
                {"member": "lo", "score": "-inf"},
                {"member": "zero", "score": n("0")},
                {"member": "frac", "score": n("0.1")},
                {"member": n("3"), "score": n("2.5e-8")},
                {"member": "big", "score": n("1.2345678901234566e125")},
                {"member": "huge", "score": "1e300"},
                {"member": b(&[0xff]), "score": n("123456789.125")},
                {"member": "hi", "score": "inf"},
            ]}),
        ),
        (
            &top,
            rec(
                b"zmap",
                RedisValue::ZSet(vec![(b"a".to_vec(), 1.0), (b"b".to_vec(), 0.3)]),
            ),
            json!({"pk": "zmap", "value": {"a": n("1"), "b": n("0.3")}}),
        ),
        (
            &typed,
            rec(
                b"events#2024",
                RedisValue::Stream(vec![
                    StreamEntry {
                        id: "1700000000000-0".into(),
                        fields: vec![
                            (b"t".to_vec(), b"21.5".to_vec()),
                            (b"raw".to_vec(), vec![0x80]),
                        ],
                    },
                    StreamEntry {
                        id: "1700000000000-1".into(),
                        fields: vec![],
                    },
                ]),
            ),
            json!({"pk": "events", "sk": "2024", "type": "stream", "value": [
                {"id": "1700000000000-0", "fields": {"t": n("21.5"), "raw": b(&[0x80])}},
                {"id": "1700000000000-1", "fields": {}},
            ]}),
        ),
        (
            &typed,
            rec(b"a#b#\xfe", s("v")),
            json!({"pk": "a#b", "sk": b(&[0xfe]), "type": "string", "value": "v"}),
        ),
        (
            &auto,
            rec(b"npy", RedisValue::String(npy.clone())),
            json!({"pk": "npy", "value": b(&npy)}),
        ),
        (
            &decode,
            rec(b"npy", RedisValue::String(npy)),
            json!({"pk": "npy", "value": [n("0.1"), n("-2.5"), n("1e30")]}),
        ),
        (
            &decode,
            rec(b"npy2d", RedisValue::String(npy2d)),
            json!({"pk": "npy2d", "value": {
                "dtype": "int64", "shape": [n("2"), n("1")], "data": [n("7"), n("-8")]}}),
        ),
    ];
    // The number edges, each as a string value under Auto.
    for (text, number) in [
        (d38, true),
        (d39, false),
        ("1E125", true),
        ("9.9999999999999999999999999999999999999E+125", true),
        ("1E126", false),
        ("-1E-130", true),
        ("1E-131", false),
        ("007", false),
        ("1.50", true),
        ("-0", false),
        ("0", true),
        ("0.5", true),
        ("-0.5", true),
        ("1e5", true),
        (" 42", false),
        ("NaN", false),
        ("+1", false),
        ("1.", false),
    ] {
        let key = format!("num:{text}");
        let want = if number { n(text) } else { json!(text) };
        cases.push((
            &auto,
            rec(key.as_bytes(), s(text)),
            json!({"pk": key, "value": want}),
        ));
    }

    let dir = tempfile::tempdir().unwrap();
    let (items_path, expected_path) = (dir.path().join("items"), dir.path().join("expected"));
    let (mut items, mut expected) = (Vec::new(), Vec::new());
    for (m, r, want) in &cases {
        let item = m
            .to_item(r)
            .unwrap_or_else(|e| panic!("{:?}: {}", String::from_utf8_lossy(&r.key), e));
        item.write_json(&mut items);
        items.push(b'\n');
        serde_json::to_writer(&mut expected, want).unwrap();
        expected.push(b'\n');
    }
    std::fs::write(&items_path, &items).unwrap();
    std::fs::write(&expected_path, &expected).unwrap();

    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/export_dynamo.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&items_path)
        .arg(&expected_path)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "export_dynamo.py failed:\n{text}");
    println!("{text}");
}
