use super::*;
use crate::codec::{ArrayCodec, Compressed, Npy};
use crate::export::StreamEntry;

fn rec(key: &[u8], value: RedisValue) -> KeyRecord {
    KeyRecord {
        key: key.to_vec(),
        value,
        expire_at_ms: None,
    }
}

fn s(v: &str) -> RedisValue {
    RedisValue::String(v.as_bytes().to_vec())
}

fn mapping(o: DynamoOptions) -> DynamoMapping {
    DynamoMapping::new(o).unwrap()
}

fn line(m: &DynamoMapping, r: &KeyRecord) -> String {
    let mut out = Vec::new();
    m.to_item(r).unwrap().write_json(&mut out);
    String::from_utf8(out).unwrap()
}

fn reject(m: &DynamoMapping, r: &KeyRecord) -> String {
    m.to_item(r).unwrap_err().reason
}

fn value_json(m: &DynamoMapping, v: RedisValue) -> String {
    let r = rec(b"k", v);
    let item = m.to_item(&r).unwrap();
    let mut out = Vec::new();
    item.get(&m.options().value_attribute)
        .unwrap()
        .write_json(&mut out);
    String::from_utf8(out).unwrap()
}

fn auto() -> DynamoMapping {
    mapping(DynamoOptions::default())
}

fn off() -> DynamoMapping {
    mapping(DynamoOptions {
        inference: Inference::Off,
        ..DynamoOptions::default()
    })
}

fn strs(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn a_string_key() {
    let m = auto();
    assert_eq!(
        line(&m, &rec(b"user:1", s("Ada"))),
        r#"{"Item":{"pk":{"S":"user:1"},"value":{"S":"Ada"}}}"#
    );
}

#[test]
fn the_number_edge_list_under_auto() {
    let m = auto();
    let d38 = "12345678901234567890123456789012345678";
    let d39 = "123456789012345678901234567890123456789";
    for (text, n) in [
        (d38, true),
        (d39, false),
        ("1E125", true),
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
        ("Infinity", false),
    ] {
        let want = if n {
            format!(r#"{{"N":"{text}"}}"#)
        } else {
            format!(r#"{{"S":{}}}"#, serde_json::to_string(text).unwrap())
        };
        assert_eq!(value_json(&m, s(text)), want, "{text}");
    }
    // Off: everything S.
    assert_eq!(value_json(&off(), s("42")), r#"{"S":"42"}"#);
}

#[test]
fn binary_empty_and_unicode_strings() {
    let m = auto();
    assert_eq!(
        value_json(&m, RedisValue::String(vec![0xff, 0x00, 0x01])),
        r#"{"B":"/wAB"}"#
    );
    assert_eq!(value_json(&m, s("")), r#"{"S":""}"#);
    assert_eq!(
        value_json(&m, s("é\"\\\n\u{1}😀")),
        r#"{"S":"é\"\\\n\u0001😀"}"#
    );
    // Binary keys are B.
    assert_eq!(
        line(&m, &rec(&[0xfe, 0x01], s("x"))),
        r#"{"Item":{"pk":{"B":"/gE="},"value":{"S":"x"}}}"#
    );
}

#[test]
fn key_rules() {
    let m = auto();
    assert!(reject(&m, &rec(b"", s("x"))).contains("empty partition key"));
    let long = vec![b'a'; MAX_PARTITION_KEY + 1];
    let r = reject(&m, &rec(&long, s("x")));
    assert!(r.contains("2049 bytes") && r.contains("2048"), "{r}");
    assert!(m.to_item(&rec(&long[1..], s("x"))).is_ok());

    let strict = mapping(DynamoOptions {
        key_type: KeyType::String,
        ..DynamoOptions::default()
    });
    assert!(reject(&strict, &rec(&[0xff], s("x"))).contains("not UTF-8"));
    let binary = mapping(DynamoOptions {
        key_type: KeyType::Binary,
        ..DynamoOptions::default()
    });
    assert!(line(&binary, &rec(b"ab", s("x"))).starts_with(r#"{"Item":{"pk":{"B":"YWI="}"#));
}

fn split(occurrence: Occurrence) -> DynamoMapping {
    mapping(DynamoOptions {
        sort_key: Some(SortKey {
            attribute: "sk".into(),
            separator: b"::".to_vec(),
            occurrence,
        }),
        ..DynamoOptions::default()
    })
}

#[test]
fn sort_key_split() {
    let first = split(Occurrence::First);
    let last = split(Occurrence::Last);
    let r = rec(b"a::b::c", s("v"));
    assert_eq!(
        line(&first, &r),
        r#"{"Item":{"pk":{"S":"a"},"sk":{"S":"b::c"},"value":{"S":"v"}}}"#
    );
    assert_eq!(
        line(&last, &r),
        r#"{"Item":{"pk":{"S":"a::b"},"sk":{"S":"c"},"value":{"S":"v"}}}"#
    );
    assert!(reject(&first, &rec(b"abc", s("v"))).contains("no separator"));
    assert!(reject(&first, &rec(b"::b", s("v"))).contains("empty partition key"));
    assert!(reject(&first, &rec(b"a::", s("v"))).contains("empty sort key"));
    let mut k = b"a::".to_vec();
    k.extend(std::iter::repeat_n(b'x', MAX_SORT_KEY + 1));
    let r = reject(&first, &rec(&k, s("v")));
    assert!(
        r.contains("sort key of 1025 bytes") && r.contains("1024"),
        "{r}"
    );
    // Key parts of a binary key: each S or B on its own.
    assert_eq!(
        line(&first, &rec(b"a::\xff", s("v"))),
        r#"{"Item":{"pk":{"S":"a"},"sk":{"B":"/w=="},"value":{"S":"v"}}}"#
    );
}

#[test]
fn invalid_options_are_errors() {
    let bad = |o: DynamoOptions| DynamoMapping::new(o).is_err();
    assert!(bad(DynamoOptions {
        partition_key: String::new(),
        ..DynamoOptions::default()
    }));
    assert!(bad(DynamoOptions {
        value_attribute: "pk".into(),
        ..DynamoOptions::default()
    }));
    assert!(bad(DynamoOptions {
        ttl_attribute: Some("value".into()),
        ..DynamoOptions::default()
    }));
    assert!(bad(DynamoOptions {
        partition_key: "p".repeat(256),
        ..DynamoOptions::default()
    }));
    assert!(bad(DynamoOptions {
        sort_key: Some(SortKey {
            attribute: "sk".into(),
            separator: Vec::new(),
            occurrence: Occurrence::First,
        }),
        ..DynamoOptions::default()
    }));
}

#[test]
fn ttl_and_type() {
    let m = mapping(DynamoOptions {
        type_attribute: Some("type".into()),
        ..DynamoOptions::default()
    });
    let mut r = rec(b"k", s("v"));
    r.expire_at_ms = Some(1_700_000_000_001);
    assert_eq!(
        line(&m, &r),
        r#"{"Item":{"pk":{"S":"k"},"value":{"S":"v"},"ttl":{"N":"1700000001"},"type":{"S":"string"}}}"#
    );
    r.expire_at_ms = Some(1_700_000_000_000);
    assert!(line(&m, &r).contains(r#""ttl":{"N":"1700000000"}"#));
    let no_ttl = mapping(DynamoOptions {
        ttl_attribute: None,
        ..DynamoOptions::default()
    });
    assert!(!line(&no_ttl, &r).contains("ttl"));
}

#[test]
fn hashes_as_a_map_and_top_level() {
    let fields = vec![
        (b"name".to_vec(), b"Ada".to_vec()),
        (b"age".to_vec(), b"36".to_vec()),
        (b"zip".to_vec(), b"007".to_vec()),
        (b"blob".to_vec(), vec![0xff]),
        (b"empty".to_vec(), Vec::new()),
    ];
    let m = auto();
    assert_eq!(
        value_json(&m, RedisValue::Hash(fields.clone())),
        r#"{"M":{"name":{"S":"Ada"},"age":{"N":"36"},"zip":{"S":"007"},"blob":{"B":"/w=="},"empty":{"S":""}}}"#
    );
    let top = mapping(DynamoOptions {
        hash_layout: HashLayout::TopLevel,
        ..DynamoOptions::default()
    });
    assert_eq!(
        line(&top, &rec(b"h", RedisValue::Hash(fields))),
        r#"{"Item":{"pk":{"S":"h"},"name":{"S":"Ada"},"age":{"N":"36"},"zip":{"S":"007"},"blob":{"B":"/w=="},"empty":{"S":""}}}"#
    );
    for bad in ["pk", "ttl"] {
        let r = rec(b"h", RedisValue::Hash(vec![(bad.into(), b"x".to_vec())]));
        assert!(reject(&top, &r).contains("collides"), "{bad}");
    }
    // "value" is no key attribute: fine as a top-level field.
    assert!(
        top.to_item(&rec(
            b"h",
            RedisValue::Hash(vec![(b"value".to_vec(), b"x".to_vec())])
        ))
        .is_ok()
    );
    for m in [&m, &top] {
        let r = rec(b"h", RedisValue::Hash(vec![(vec![0xff], b"x".to_vec())]));
        assert!(reject(m, &r).contains("not UTF-8"));
        let r = rec(b"h", RedisValue::Hash(vec![(Vec::new(), b"x".to_vec())]));
        assert!(reject(m, &r).contains("empty hash field"));
    }
}

#[test]
fn lists() {
    assert_eq!(
        value_json(&auto(), RedisValue::List(strs(&["a", "1", "a", ""]))),
        r#"{"L":[{"S":"a"},{"N":"1"},{"S":"a"},{"S":""}]}"#
    );
    assert_eq!(value_json(&auto(), RedisValue::List(vec![])), r#"{"L":[]}"#);
}

#[test]
fn sets() {
    let m = auto();
    let set = |v: &[&str]| RedisValue::Set(strs(v));
    assert_eq!(value_json(&m, set(&["a", "b"])), r#"{"SS":["a","b"]}"#);
    assert_eq!(value_json(&m, set(&["1", "2.5"])), r#"{"NS":["1","2.5"]}"#);
    // Mixed numbers and strings: L.
    assert_eq!(
        value_json(&m, set(&["1", "a"])),
        r#"{"L":[{"N":"1"},{"S":"a"}]}"#
    );
    // The same number twice cannot be an NS.
    assert_eq!(
        value_json(&m, set(&["1.5", "1.50"])),
        r#"{"L":[{"N":"1.5"},{"N":"1.50"}]}"#
    );
    assert_eq!(
        value_json(&m, RedisValue::Set(vec![vec![0xff], vec![0xfe]])),
        r#"{"BS":["/w==","/g=="]}"#
    );
    assert_eq!(
        value_json(&m, RedisValue::Set(vec![vec![0xff], b"a".to_vec()])),
        r#"{"L":[{"B":"/w=="},{"S":"a"}]}"#
    );
    // Empty sets: an empty L.
    assert_eq!(value_json(&m, RedisValue::Set(vec![])), r#"{"L":[]}"#);
    // Off: numbers are strings.
    assert_eq!(value_json(&off(), set(&["1", "a"])), r#"{"SS":["1","a"]}"#);
    assert_eq!(value_json(&m, set(&["", "a"])), r#"{"SS":["","a"]}"#);
}

#[test]
fn sorted_sets() {
    let z = RedisValue::ZSet(vec![
        (b"a".to_vec(), f64::NEG_INFINITY),
        (b"b".to_vec(), -0.0),
        (b"c".to_vec(), 0.1),
        (b"7".to_vec(), 1.5),
        (b"d".to_vec(), 1e300),
        (b"e".to_vec(), f64::INFINITY),
    ]);
    assert_eq!(
        value_json(&auto(), z.clone()),
        concat!(
            r#"{"L":[{"M":{"member":{"S":"a"},"score":{"S":"-inf"}}},"#,
            r#"{"M":{"member":{"S":"b"},"score":{"N":"0"}}},"#,
            r#"{"M":{"member":{"S":"c"},"score":{"N":"0.1"}}},"#,
            r#"{"M":{"member":{"N":"7"},"score":{"N":"1.5"}}},"#,
            r#"{"M":{"member":{"S":"d"},"score":{"S":"1e300"}}},"#,
            r#"{"M":{"member":{"S":"e"},"score":{"S":"inf"}}}]}"#
        )
    );
    let map = mapping(DynamoOptions {
        zset_layout: ZSetLayout::Map,
        ..DynamoOptions::default()
    });
    assert_eq!(
        value_json(&map, z),
        r#"{"M":{"a":{"S":"-inf"},"b":{"N":"0"},"c":{"N":"0.1"},"7":{"N":"1.5"},"d":{"S":"1e300"},"e":{"S":"inf"}}}"#
    );
    let r = rec(b"z", RedisValue::ZSet(vec![(vec![0xff], 1.0)]));
    assert!(reject(&map, &r).contains("not UTF-8"));
}

#[test]
fn streams() {
    let st = RedisValue::Stream(vec![
        StreamEntry {
            id: "1-0".into(),
            fields: vec![
                (b"t".to_vec(), b"21.5".to_vec()),
                (b"u".to_vec(), b"C".to_vec()),
            ],
        },
        StreamEntry {
            id: "2-0".into(),
            fields: vec![],
        },
    ]);
    assert_eq!(
        value_json(&auto(), st),
        r#"{"L":[{"M":{"id":{"S":"1-0"},"fields":{"M":{"t":{"N":"21.5"},"u":{"S":"C"}}}}},{"M":{"id":{"S":"2-0"},"fields":{"M":{}}}}]}"#
    );
    let dup = RedisValue::Stream(vec![StreamEntry {
        id: "1-0".into(),
        fields: vec![
            (b"t".to_vec(), b"1".to_vec()),
            (b"t".to_vec(), b"2".to_vec()),
        ],
    }]);
    assert!(reject(&auto(), &rec(b"s", dup)).contains("twice"));
}

#[test]
fn item_size_and_limit() {
    let m = auto();
    // pk(2) + "k"(1) + value(5) + "abc"(3)
    assert_eq!(m.to_item(&rec(b"k", s("abc"))).unwrap().size(), 11);
    // N: 12345 has 5 significant digits: 3 + 1 bytes.
    assert_eq!(m.to_item(&rec(b"k", s("12345"))).unwrap().size(), 3 + 5 + 4);
    // L of two: 3 + (1 + 1) + (1 + 2).
    let l = RedisValue::List(strs(&["a", "bc"]));
    assert_eq!(m.to_item(&rec(b"k", l)).unwrap().size(), 3 + 5 + 8);
    // M {"ab": "c"}: 3 + 2 + 1 + 1.
    let h = RedisValue::Hash(vec![(b"ab".to_vec(), b"c".to_vec())]);
    assert_eq!(m.to_item(&rec(b"k", h)).unwrap().size(), 3 + 5 + 7);
    // SS: the sum of the strings.
    let set = RedisValue::Set(strs(&["ab", "c"]));
    assert_eq!(m.to_item(&rec(b"k", set)).unwrap().size(), 3 + 5 + 3);
    // Exactly at the limit, then one over.
    let fit = MAX_ITEM_SIZE - 3 - 5;
    assert!(m.to_item(&rec(b"k", s(&"x".repeat(fit)))).is_ok());
    let r = reject(&m, &rec(b"k", s(&"x".repeat(fit + 1))));
    assert!(r.contains("409601") && r.contains("400 KB"), "{r}");
    // Binary counts raw bytes, not base64.
    assert!(
        m.to_item(&rec(b"k", RedisValue::String(vec![0xff; fit])))
            .is_ok()
    );
}

#[test]
fn nesting_depth_is_counted() {
    let mut v = AttrValue::S(Cow::Borrowed("x"));
    for _ in 0..33 {
        v = AttrValue::L(vec![v]);
    }
    assert_eq!(v.size_and_depth().1, 33);
    assert_eq!(AttrValue::M(vec![]).size_and_depth(), (3, 1));
}

fn schema(rules: Schema) -> DynamoMapping {
    mapping(DynamoOptions {
        inference: Inference::Schema(rules),
        ..DynamoOptions::default()
    })
}

#[test]
fn schema_declared_types() {
    let m = schema(
        Schema::new()
            .rule(
                "user:*",
                [
                    ("age", DeclaredType::N),
                    ("zip", DeclaredType::S),
                    ("admin", DeclaredType::Bool),
                    ("avatar", DeclaredType::B),
                ],
            )
            .rule("tags:*", [("value", DeclaredType::SS)])
            .rule("nums:*", [("value", DeclaredType::NS)])
            .rule("count:*", [("value", DeclaredType::N)])
            .fallback(Fallback::Off),
    );
    let user = |age: &str, admin: &str| {
        rec(
            b"user:1",
            RedisValue::Hash(vec![
                (b"age".to_vec(), age.as_bytes().to_vec()),
                (b"zip".to_vec(), b"00501".to_vec()),
                (b"admin".to_vec(), admin.as_bytes().to_vec()),
                (b"avatar".to_vec(), b"png".to_vec()),
                (b"other".to_vec(), b"5".to_vec()),
            ]),
        )
    };
    assert_eq!(
        line(&m, &user("36", "true")),
        r#"{"Item":{"pk":{"S":"user:1"},"value":{"M":{"age":{"N":"36"},"zip":{"S":"00501"},"admin":{"BOOL":true},"avatar":{"B":"cG5n"},"other":{"S":"5"}}}}}"#
    );
    let r = reject(&m, &user("thirty", "true"));
    assert!(
        r.contains("\"age\" is declared N") && r.contains("thirty"),
        "{r}"
    );
    assert!(reject(&m, &user("36", "yes")).contains("declared BOOL"));
    // No rule matches "k": the fallback (Off) applies.
    assert_eq!(
        value_json(&m, RedisValue::Set(strs(&["1", "a"]))),
        r#"{"SS":["1","a"]}"#
    );
    assert_eq!(value_json(&m, s("12")), r#"{"S":"12"}"#);
    let tags = rec(b"tags:1", RedisValue::Set(strs(&["1", "a"])));
    assert!(line(&m, &tags).contains(r#"{"SS":["1","a"]}"#));
    let tags = rec(b"tags:1", RedisValue::List(strs(&["a", "a"])));
    assert!(reject(&m, &tags).contains("duplicates"));
    let tags = rec(b"tags:1", RedisValue::Set(vec![]));
    assert!(reject(&m, &tags).contains("empty"));
    let nums = rec(b"nums:1", RedisValue::List(strs(&["1", "2"])));
    assert!(line(&m, &nums).contains(r#"{"NS":["1","2"]}"#));
    let nums = rec(b"nums:1", RedisValue::Set(strs(&["1", "1.0"])));
    assert!(reject(&m, &nums).contains("same number"));
    let nums = rec(b"nums:1", RedisValue::Set(strs(&["1", "x"])));
    assert!(reject(&m, &nums).contains("\"x\" is not a number"));
    let count = rec(b"count:1", RedisValue::List(vec![]));
    assert!(reject(&m, &count).contains("is a Redis list"));
    assert!(line(&m, &rec(b"count:1", s("12"))).contains(r#"{"N":"12"}"#));
}

fn npy(a: &RawArray) -> Vec<u8> {
    Npy.encode(&a.as_array_ref()).unwrap().to_vec()
}

fn decode() -> DynamoMapping {
    mapping(DynamoOptions {
        redstash_values: RedstashValues::Decode,
        ..DynamoOptions::default()
    })
}

#[test]
fn redstash_values_binary_by_default() {
    let a = RawArray::from_vec(vec![3], vec![1.5f32, -2.0, 0.1]).unwrap();
    let bytes = npy(&a);
    let got = value_json(&auto(), RedisValue::String(bytes.clone()));
    assert!(got.starts_with(r#"{"B":"k05VTVBZ"#), "{got}");
    // lz4 magic and ARROW1 are B even when the bytes are UTF-8.
    let lz4ish = b"\x04\x22\x4d\x18abc".to_vec();
    assert!(value_json(&auto(), RedisValue::String(lz4ish)).starts_with(r#"{"B":"#));
    assert!(value_json(&auto(), s("ARROW1 text")).starts_with(r#"{"B":"#));
    // Text that only looks like a zlib header stays S.
    assert_eq!(value_json(&auto(), s("x^2")), r#"{"S":"x^2"}"#);
    assert_eq!(value_json(&decode(), s("x^2")), r#"{"S":"x^2"}"#);
}

#[test]
fn redstash_values_decoded() {
    let m = decode();
    let a = RawArray::from_vec(vec![3], vec![1.5f32, -2.0, 0.1]).unwrap();
    assert_eq!(
        value_json(&m, RedisValue::String(npy(&a))),
        r#"{"L":[{"N":"1.5"},{"N":"-2"},{"N":"0.1"}]}"#
    );
    let lz4 = Compressed::lz4()
        .encode(&a.as_array_ref())
        .unwrap()
        .to_vec();
    assert_eq!(
        value_json(&m, RedisValue::String(lz4)),
        r#"{"L":[{"N":"1.5"},{"N":"-2"},{"N":"0.1"}]}"#
    );
    let z = Compressed::zlib(6)
        .encode(&a.as_array_ref())
        .unwrap()
        .to_vec();
    assert_eq!(
        value_json(&m, RedisValue::String(z)),
        r#"{"L":[{"N":"1.5"},{"N":"-2"},{"N":"0.1"}]}"#
    );
    let a = RawArray::from_vec(vec![4], vec![f64::NAN, f64::INFINITY, 1e300, 2.0]).unwrap();
    assert_eq!(
        value_json(&m, RedisValue::String(npy(&a))),
        r#"{"L":[{"S":"nan"},{"S":"inf"},{"S":"1e300"},{"N":"2"}]}"#
    );
    let a = RawArray::from_vec(vec![2], vec![u64::MAX, 0]).unwrap();
    assert_eq!(
        value_json(&m, RedisValue::String(npy(&a))),
        r#"{"L":[{"N":"18446744073709551615"},{"N":"0"}]}"#
    );
    let a = RawArray::from_vec(vec![2], vec![true, false]).unwrap();
    assert_eq!(
        value_json(&m, RedisValue::String(npy(&a))),
        r#"{"L":[{"BOOL":true},{"BOOL":false}]}"#
    );
    let a = RawArray::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
    assert_eq!(
        value_json(&m, RedisValue::String(npy(&a))),
        r#"{"M":{"dtype":{"S":"int32"},"shape":{"L":[{"N":"2"},{"N":"2"}]},"data":{"L":[{"N":"1"},{"N":"2"},{"N":"3"},{"N":"4"}]}}}"#
    );
    let a = RawArray::from_vec(vec![1], vec![num_complex::Complex::new(1.0f64, -0.5)]).unwrap();
    assert_eq!(
        value_json(&m, RedisValue::String(npy(&a))),
        r#"{"M":{"dtype":{"S":"complex128"},"shape":{"L":[{"N":"1"}]},"data":{"L":[{"N":"1"},{"N":"-0.5"}]}}}"#
    );
    // Too many elements: a reject naming the limit.
    let a = RawArray::from_vec(vec![300_000], vec![0u8; 300_000]).unwrap();
    let r = reject(&m, &rec(b"k", RedisValue::String(npy(&a))));
    assert!(r.contains("300000 elements") && r.contains("400 KB"), "{r}");
    // Big enough to decode but over 400 KB as an item.
    let a = RawArray::from_vec(vec![100_000], vec![123456.5f64; 100_000]).unwrap();
    let r = reject(&m, &rec(b"k", RedisValue::String(npy(&a))));
    assert!(r.contains("item limit"), "{r}");
    // A corrupt .npy stays B.
    let mut bad = npy(&RawArray::from_vec(vec![3], vec![1u8, 2, 3]).unwrap());
    bad.truncate(bad.len() - 1);
    assert!(value_json(&m, RedisValue::String(bad)).starts_with(r#"{"B":"#));
}

#[test]
fn no_panics_on_odd_input() {
    let m = decode();
    for v in [
        vec![0x93],
        b"\x93NUMPY".to_vec(),
        b"\x93NUMPY\x01\x00\xff\xff".to_vec(),
        vec![0x28, 0xB5, 0x2F, 0xFD],
        vec![0x04, 0x22, 0x4D, 0x18, 0xff],
        vec![0x78, 0x9c, 0x00],
        vec![0xff; 8],
        b"\x93RSTASH\x01".to_vec(),
    ] {
        let r = rec(b"k", RedisValue::String(v));
        let _ = m.to_item(&r).map(|i| i.write_json(&mut Vec::new()));
    }
}

#[test]
fn throughput_of_a_five_field_hash() {
    let m = mapping(DynamoOptions {
        hash_layout: HashLayout::TopLevel,
        ..DynamoOptions::default()
    });
    let recs: Vec<KeyRecord> = (0..20_000)
        .map(|i| KeyRecord {
            key: format!("user:{i}").into_bytes(),
            value: RedisValue::Hash(vec![
                (b"name".to_vec(), format!("User Number {i}").into_bytes()),
                (b"age".to_vec(), (18 + i % 60).to_string().into_bytes()),
                (
                    b"longitude".to_vec(),
                    format!("{:.6}", -122.0 + i as f64 * 1e-4).into_bytes(),
                ),
                (
                    b"email".to_vec(),
                    format!("user{i}@example.com").into_bytes(),
                ),
                (b"city".to_vec(), b"San Francisco".to_vec()),
            ]),
            expire_at_ms: Some(1_700_000_000_000 + i),
        })
        .collect();
    let mut out = Vec::with_capacity(1 << 20);
    let start = std::time::Instant::now();
    let mut n = 0usize;
    for _ in 0..5 {
        for r in &recs {
            out.clear();
            m.to_item(r).unwrap().write_json(&mut out);
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "to_item + write_json, 5-field hash: {:.0} items/s ({} bytes/line)",
        n as f64 / secs,
        out.len()
    );
}
