//! One Redis key as one DynamoDB item, in the JSON Lines format of DynamoDB's import from
//! S3 (`{"Item":{"pk":{"S":"..."},...}}`). Pure: no I/O, no Redis.
//!
//! [`DynamoMapping::to_item`] maps a [`KeyRecord`] to an [`Item`] (or a [`Reject`] saying
//! why the key cannot be a DynamoDB item); [`Item::write_json`] writes its line.
//!
//! # Rules
//!
//! * **Key.** The Redis key is the partition key attribute (default `pk`), or, with a
//!   [`SortKey`], is split at the first or last occurrence of a separator into the
//!   partition and sort key. A key part is `S` when it is UTF-8, else `B` (see
//!   [`KeyType`]). An empty key or key part, a key without the separator, a partition key
//!   over 2048 bytes or a sort key over 1024 bytes is a reject.
//! * **Strings.** `S` when UTF-8, else `B` (base64 in the JSON). Under
//!   [`Inference::Auto`] a string is `N` when DynamoDB stores it exactly (below), written
//!   as its original text. Empty strings are `S` `""` (allowed for non-key attributes).
//! * **Numbers** (under `Auto`): `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` with at
//!   most 38 significant digits, and zero or a magnitude from 1E-130 to
//!   9.9999999999999999999999999999999999999E+125. So `007`, `+1`, ` 42`, `1.`, `.5`,
//!   `NaN`, `Infinity` stay `S`. The rule preserves the value, not the text: `1.50` is
//!   `N` (DynamoDB returns it as `1.5`), and trailing zeros are not significant. A
//!   negative zero (`-0`, `-0.0`) stays `S`: DynamoDB would store it as `0` and lose
//!   the sign.
//! * **Hash.** One `M` attribute named [`value_attribute`](DynamoOptions::value_attribute)
//!   (default), each field's value inferred as a string; or, with
//!   [`HashLayout::TopLevel`], one top-level attribute per field, where a field named
//!   like a key, TTL or type attribute is a reject. Field names must be non-empty UTF-8,
//!   else the key is a reject.
//! * **List.** `L` of its elements inferred as strings.
//! * **Set.** Under `Auto`: `NS` when every member is a number and no two are the same
//!   number (`1.5` and `1.50` are; then `L`); `SS` when every member is UTF-8 and none is
//!   a number; `BS` when no member is UTF-8; otherwise (mixed) `L` of the members
//!   inferred. Under `Off` the same without `NS`. An empty set (DynamoDB has none)
//!   becomes an empty `L`.
//! * **Sorted set.** `L` of `M {"member": <inferred>, "score": N}` in score order, or
//!   with [`ZSetLayout::Map`] one `M` member -> score (members must be non-empty UTF-8).
//!   A score is written as the shortest decimal that reads back as the same `f64` (`0.1`,
//!   `1e300`), `-0` as `0`; a score DynamoDB cannot store exactly (`inf`, `-inf`, or a
//!   finite score beyond DynamoDB's range such as `1e300`) is an `S` with that text.
//! * **Stream.** `L` of `M {"id": S, "fields": M}`, field values inferred; an entry with
//!   a field twice or a field name that is not non-empty UTF-8 is a reject.
//! * **TTL.** With an expiry and [`ttl_attribute`](DynamoOptions::ttl_attribute) (default
//!   `ttl`), the expiry in Unix seconds as `N`, rounded up (the item never expires before
//!   the Redis key would have).
//! * **Type.** With [`type_attribute`](DynamoOptions::type_attribute) (default off), the
//!   Redis type name as `S`.
//! * **redstash values** (a string or element starting with the `.npy` magic, or an
//!   lz4/zlib/zstd frame holding one, or Arrow IPC): `B` under
//!   [`RedstashValues::Binary`] (the default), even when the bytes happen to be UTF-8.
//!   Under [`RedstashValues::Decode`] an array that decodes (within 8 MiB) becomes: 1-d
//!   integer or float arrays `L` of `N`, 1-d bool arrays `L` of `BOOL`, any other array
//!   (0-d, n-d, complex) `M {"dtype": S, "shape": L of N, "data": L}` with the data in C
//!   order (complex as real, imaginary pairs). A float element DynamoDB cannot store
//!   exactly (NaN, ±inf, out of range) is an `S` (`nan`, `inf`, `-inf`, its text).
//!   Values that do not decode, and Arrow IPC values, stay `B`.
//! * **Limits.** The item size (below) must be at most 400 KB (409,600 bytes), documents
//!   nest at most 32 levels: over a limit the key is a reject naming the limit and size.
//!
//! # Item size
//!
//! As DynamoDB documents it: the sum over attributes of the UTF-8 length of the name and
//! the size of the value, where a string is its UTF-8 length, a binary its byte length, a
//! number one byte per two significant digits plus one, `BOOL` and `NULL` one byte, a set
//! the sum of its elements' sizes, and an `L` or `M` 3 bytes plus, per element, one byte
//! and the element's size (and for `M` the UTF-8 length of its key).

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use bytes::Bytes;

use super::dynamo_number as number;
use super::value::{KeyRecord, RedisValue};
use crate::array::RawArray;
use crate::codec::{Format, Limits, decode_array};
use crate::dtype::DType;
use crate::error::Error;

pub use super::dynamo_schema::{DeclaredType, Fallback, Schema, SchemaRule};

/// DynamoDB's largest item, in bytes (400 KB).
pub const MAX_ITEM_SIZE: usize = 400 * 1024;
/// DynamoDB's largest partition key value, in bytes.
pub const MAX_PARTITION_KEY: usize = 2048;
/// DynamoDB's largest sort key value, in bytes.
pub const MAX_SORT_KEY: usize = 1024;
/// DynamoDB's deepest nesting of lists and maps.
pub const MAX_DEPTH: usize = 32;
/// Longest key attribute name DynamoDB accepts, in bytes.
const MAX_KEY_NAME: usize = 255;
/// Longest attribute name DynamoDB accepts, in bytes.
const MAX_NAME: usize = 65535;
/// Largest decoded array under [`RedstashValues::Decode`]: far more than 400 KB of items
/// can hold, small enough that a compression bomb costs little.
const DECODE_LIMIT: u64 = 8 << 20;

/// Which occurrence of the separator splits a key into partition and sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Occurrence {
    /// The first (`a:b:c` -> `a`, `b:c`), the default.
    #[default]
    First,
    /// The last (`a:b:c` -> `a:b`, `c`).
    Last,
}

/// A sort key made by splitting the Redis key at a separator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The sort key attribute name.
    pub attribute: String,
    /// The separator (bytes of the key; not part of either key part).
    pub separator: Vec<u8>,
    /// Which occurrence splits.
    pub occurrence: Occurrence,
}

/// The DynamoDB type of key attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// `S` when the key part is UTF-8, else `B` (default). A table's key has one type:
    /// import binary keys into a `B`-keyed table, or choose `String` to reject them.
    #[default]
    StringOrBinary,
    /// Always `S`; a key part that is not UTF-8 is a reject.
    String,
    /// Always `B`.
    Binary,
}

/// How a hash becomes attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashLayout {
    /// One `M` attribute named [`DynamoOptions::value_attribute`] (default).
    #[default]
    Map,
    /// One top-level attribute per field.
    TopLevel,
}

/// How a sorted set becomes an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZSetLayout {
    /// `L` of `M {"member": ..., "score": N}` in score order (default).
    #[default]
    List,
    /// `M` member -> score.
    Map,
}

/// How strings are typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Inference {
    /// Every string is `S` (UTF-8) or `B`.
    Off,
    /// Strings that are numbers DynamoDB stores exactly are `N` (default).
    #[default]
    Auto,
    /// Declared types by key pattern; a value that does not fit is a reject.
    Schema(Schema),
}

/// How redstash values (`.npy` arrays, possibly compressed) are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedstashValues {
    /// As their bytes, `B` (default).
    #[default]
    Binary,
    /// Decoded: numbers (see the module documentation).
    Decode,
}

/// How keys become DynamoDB items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoOptions {
    /// The partition key attribute name (default `pk`).
    pub partition_key: String,
    /// A sort key split from the Redis key (default none).
    pub sort_key: Option<SortKey>,
    /// The type of key attributes.
    pub key_type: KeyType,
    /// The attribute holding the value of every type but a top-level hash (default
    /// `value`).
    pub value_attribute: String,
    /// Hashes as one map or as top-level attributes.
    pub hash_layout: HashLayout,
    /// Sorted sets as a list or a map.
    pub zset_layout: ZSetLayout,
    /// How strings are typed.
    pub inference: Inference,
    /// The TTL attribute (Unix seconds, `N`, only for keys with an expiry); default
    /// `Some("ttl")`, `None` omits it.
    pub ttl_attribute: Option<String>,
    /// An attribute with the Redis type name (default none).
    pub type_attribute: Option<String>,
    /// How redstash values are exported.
    pub redstash_values: RedstashValues,
}

impl Default for DynamoOptions {
    fn default() -> Self {
        DynamoOptions {
            partition_key: "pk".to_owned(),
            sort_key: None,
            key_type: KeyType::default(),
            value_attribute: "value".to_owned(),
            hash_layout: HashLayout::default(),
            zset_layout: ZSetLayout::default(),
            inference: Inference::default(),
            ttl_attribute: Some("ttl".to_owned()),
            type_attribute: None,
            redstash_values: RedstashValues::default(),
        }
    }
}

/// Why a key cannot be a DynamoDB item. A value, not an error: the exporter counts it
/// and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// What is wrong, naming the limit or rule and the size or value.
    pub reason: String,
}

impl Reject {
    fn new(reason: impl Into<String>) -> Self {
        Reject {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Reject {}

/// A DynamoDB attribute value, borrowing from the record where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue<'a> {
    /// `S`.
    S(Cow<'a, str>),
    /// `N`, as its text (always a valid DynamoDB number).
    N(Cow<'a, str>),
    /// `B`, raw bytes (base64 in the JSON).
    B(Cow<'a, [u8]>),
    /// `BOOL`.
    Bool(bool),
    /// `NULL`.
    Null,
    /// `L`.
    L(Vec<AttrValue<'a>>),
    /// `M`, in order.
    M(Vec<(Cow<'a, str>, AttrValue<'a>)>),
    /// `SS`.
    SS(Vec<Cow<'a, str>>),
    /// `NS`.
    NS(Vec<Cow<'a, str>>),
    /// `BS`.
    BS(Vec<Cow<'a, [u8]>>),
}

impl AttrValue<'_> {
    /// The size DynamoDB counts for this value (see the module documentation), and the
    /// nesting depth of lists and maps in it (0 for a scalar or set).
    pub fn size_and_depth(&self) -> (usize, usize) {
        match self {
            AttrValue::S(s) => (s.len(), 0),
            AttrValue::N(n) => (number_size(n), 0),
            AttrValue::B(b) => (b.len(), 0),
            AttrValue::Bool(_) | AttrValue::Null => (1, 0),
            AttrValue::SS(v) => (v.iter().map(|s| s.len()).sum(), 0),
            AttrValue::NS(v) => (v.iter().map(|n| number_size(n)).sum(), 0),
            AttrValue::BS(v) => (v.iter().map(|b| b.len()).sum(), 0),
            AttrValue::L(v) => {
                let (mut size, mut depth) = (3usize, 0usize);
                for e in v {
                    let (s, d) = e.size_and_depth();
                    size = size.saturating_add(s + 1);
                    depth = depth.max(d);
                }
                (size, depth + 1)
            }
            AttrValue::M(v) => {
                let (mut size, mut depth) = (3usize, 0usize);
                for (k, e) in v {
                    let (s, d) = e.size_and_depth();
                    size = size.saturating_add(s + k.len() + 1);
                    depth = depth.max(d);
                }
                (size, depth + 1)
            }
        }
    }

    /// Write the value as DynamoDB JSON (`{"S":"..."}`, `{"N":"1"}`, ...).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            AttrValue::S(s) => {
                out.extend_from_slice(b"{\"S\":");
                json_str(out, s);
                out.push(b'}');
            }
            AttrValue::N(n) => {
                out.extend_from_slice(b"{\"N\":");
                json_str(out, n);
                out.push(b'}');
            }
            AttrValue::B(b) => {
                out.extend_from_slice(b"{\"B\":");
                json_base64(out, b);
                out.push(b'}');
            }
            AttrValue::Bool(b) => {
                out.extend_from_slice(if *b {
                    b"{\"BOOL\":true}"
                } else {
                    b"{\"BOOL\":false}"
                });
            }
            AttrValue::Null => out.extend_from_slice(b"{\"NULL\":true}"),
            AttrValue::L(v) => {
                out.extend_from_slice(b"{\"L\":[");
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    e.write_json(out);
                }
                out.extend_from_slice(b"]}");
            }
            AttrValue::M(v) => {
                out.extend_from_slice(b"{\"M\":");
                write_map(out, v);
                out.push(b'}');
            }
            AttrValue::SS(v) => write_array(out, b"{\"SS\":[", v, |out, s| json_str(out, s)),
            AttrValue::NS(v) => write_array(out, b"{\"NS\":[", v, |out, s| json_str(out, s)),
            AttrValue::BS(v) => write_array(out, b"{\"BS\":[", v, |out, b| json_base64(out, b)),
        }
    }
}

fn number_size(n: &str) -> usize {
    // An `N` is always a valid number; were it not, its text length bounds its size.
    number::parse(n.as_bytes()).map_or(n.len(), |i| i.size())
}

fn write_array<T>(
    out: &mut Vec<u8>,
    open: &[u8],
    items: &[T],
    mut each: impl FnMut(&mut Vec<u8>, &T),
) {
    out.extend_from_slice(open);
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, e);
    }
    out.extend_from_slice(b"]}");
}

fn write_map(out: &mut Vec<u8>, attrs: &[(Cow<'_, str>, AttrValue<'_>)]) {
    out.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, k);
        out.push(b':');
        v.write_json(out);
    }
    out.push(b'}');
}

/// A JSON string with serde_json's escaping.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec<u8> cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Bytes as a JSON string of their standard base64 (with padding).
fn json_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    match base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        Err(_) => out.truncate(start),
    }
    out.push(b'"');
}

/// One DynamoDB item: its attributes in order (key attributes first) and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    attributes: Vec<(Cow<'a, str>, AttrValue<'a>)>,
    size: usize,
}

impl<'a> Item<'a> {
    /// The attributes, in the order they are written: partition key, sort key, the value
    /// attribute(s), TTL, type.
    pub fn attributes(&self) -> &[(Cow<'a, str>, AttrValue<'a>)] {
        &self.attributes
    }

    /// The attribute named `name`.
    pub fn get(&self, name: &str) -> Option<&AttrValue<'a>> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The item size as DynamoDB counts it (see the module documentation).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Append the item's line of DynamoDB's import format, `{"Item":{...}}`, to `out`,
    /// without a newline (the caller ends each line with `\n`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Item\":");
        write_map(out, &self.attributes);
        out.push(b'}');
    }
}

/// Keys to DynamoDB items under validated [`DynamoOptions`].
#[derive(Debug, Clone)]
pub struct DynamoMapping {
    options: DynamoOptions,
}

/// A name owned by the options or borrowed from the record.
type Name<'a> = Cow<'a, str>;

impl DynamoMapping {
    /// Check the options: attribute names non-empty (key names at most 255 bytes, others
    /// 65,535), the key, value, TTL and type attribute names all different, the sort key
    /// separator non-empty. [`Error::InvalidArgument`] otherwise.
    pub fn new(options: DynamoOptions) -> Result<Self, Error> {
        let mut names: Vec<(&str, &str, usize)> = vec![(
            "partition key",
            options.partition_key.as_str(),
            MAX_KEY_NAME,
        )];
        if let Some(sk) = &options.sort_key {
            if sk.separator.is_empty() {
                return Err(Error::InvalidArgument(
                    "the sort key separator is empty".into(),
                ));
            }
            names.push(("sort key", sk.attribute.as_str(), MAX_KEY_NAME));
        }
        names.push(("value", options.value_attribute.as_str(), MAX_NAME));
        if let Some(t) = &options.ttl_attribute {
            names.push(("TTL", t.as_str(), MAX_NAME));
        }
        if let Some(t) = &options.type_attribute {
            names.push(("type", t.as_str(), MAX_NAME));
        }
        for (i, (what, name, max)) in names.iter().enumerate() {
            if name.is_empty() || name.len() > *max {
                return Err(Error::InvalidArgument(format!(
                    "the {what} attribute name must be 1 to {max} bytes, not {}",
                    name.len()
                )));
            }
            if let Some((other, _, _)) = names[..i].iter().find(|(_, n, _)| n == name) {
                return Err(Error::InvalidArgument(format!(
                    "the {other} and {what} attributes have the same name {name:?}"
                )));
            }
        }
        Ok(DynamoMapping { options })
    }

    /// The options.
    pub fn options(&self) -> &DynamoOptions {
        &self.options
    }

    /// Map one key to one item, or say why it cannot be one.
    pub fn to_item<'a>(&'a self, rec: &'a KeyRecord) -> Result<Item<'a>, Reject> {
        let o = &self.options;
        let (auto, declared) = match &o.inference {
            Inference::Off => (false, None),
            Inference::Auto => (true, None),
            Inference::Schema(s) => (s.fallback == Fallback::Auto, s.declared_for(&rec.key)),
        };
        let cx = Cx {
            auto,
            declared,
            decode: o.redstash_values == RedstashValues::Decode,
        };
        let mut attrs: Vec<(Name<'a>, AttrValue<'a>)> = Vec::with_capacity(6);
        let mut key_size = 0;
        match &o.sort_key {
            None => {
                let v = self.key_part(&rec.key, "partition key", MAX_PARTITION_KEY)?;
                key_size += o.partition_key.len() + v.size_and_depth().0;
                attrs.push((Cow::Borrowed(&o.partition_key), v));
            }
            Some(sk) => {
                let at = find(&rec.key, &sk.separator, sk.occurrence).ok_or_else(|| {
                    Reject::new(format!(
                        "the key has no separator {:?} for the sort key",
                        String::from_utf8_lossy(&sk.separator)
                    ))
                })?;
                let (p, s) = (&rec.key[..at], &rec.key[at + sk.separator.len()..]);
                let pv = self.key_part(p, "partition key", MAX_PARTITION_KEY)?;
                let sv = self.key_part(s, "sort key", MAX_SORT_KEY)?;
                key_size += o.partition_key.len() + pv.size_and_depth().0;
                key_size += sk.attribute.len() + sv.size_and_depth().0;
                attrs.push((Cow::Borrowed(&o.partition_key), pv));
                attrs.push((Cow::Borrowed(&sk.attribute), sv));
            }
        }
        let value_name = o.value_attribute.as_str();
        match &rec.value {
            RedisValue::Hash(fields) if o.hash_layout == HashLayout::TopLevel => {
                for (f, v) in fields {
                    let name = field_name(f, "hash field")?;
                    if self.is_reserved(name) {
                        return Err(Reject::new(format!(
                            "hash field {name:?} collides with a key, TTL or type attribute"
                        )));
                    }
                    if name.len() > MAX_NAME {
                        return Err(Reject::new(format!(
                            "hash field name of {} bytes is over DynamoDB's {MAX_NAME}-byte attribute name limit",
                            name.len()
                        )));
                    }
                    attrs.push((Cow::Borrowed(name), cx.field(name, v)?));
                }
            }
            value => {
                let v = cx.value(value_name, value, o.zset_layout)?;
                attrs.push((Cow::Borrowed(value_name), v));
            }
        }
        if let (Some(name), Some(ms)) = (&o.ttl_attribute, rec.expire_at_ms) {
            attrs.push((
                Cow::Borrowed(name),
                AttrValue::N(Cow::Owned(ms.div_ceil(1000).to_string())),
            ));
        }
        if let Some(name) = &o.type_attribute {
            attrs.push((
                Cow::Borrowed(name),
                AttrValue::S(Cow::Borrowed(rec.value.type_name())),
            ));
        }
        let mut size = 0usize;
        for (i, (name, v)) in attrs.iter().enumerate() {
            let key_attrs = if o.sort_key.is_some() { 2 } else { 1 };
            if i < key_attrs {
                continue;
            }
            let (s, depth) = v.size_and_depth();
            if depth > MAX_DEPTH {
                return Err(Reject::new(format!(
                    "attribute {name:?} nests {depth} levels, over DynamoDB's {MAX_DEPTH}"
                )));
            }
            size = size.saturating_add(name.len()).saturating_add(s);
        }
        size = size.saturating_add(key_size);
        if size > MAX_ITEM_SIZE {
            return Err(Reject::new(format!(
                "item size {size} bytes is over DynamoDB's {MAX_ITEM_SIZE}-byte (400 KB) item limit"
            )));
        }
        Ok(Item {
            attributes: attrs,
            size,
        })
    }

    fn is_reserved(&self, name: &str) -> bool {
        let o = &self.options;
        name == o.partition_key
            || o.sort_key.as_ref().is_some_and(|s| s.attribute == name)
            || o.ttl_attribute.as_deref() == Some(name)
            || o.type_attribute.as_deref() == Some(name)
    }

    fn key_part<'a>(
        &self,
        bytes: &'a [u8],
        what: &str,
        max: usize,
    ) -> Result<AttrValue<'a>, Reject> {
        if bytes.is_empty() {
            return Err(Reject::new(format!(
                "empty {what}: DynamoDB key attributes cannot be empty"
            )));
        }
        if bytes.len() > max {
            return Err(Reject::new(format!(
                "{what} of {} bytes is over DynamoDB's {max}-byte limit",
                bytes.len()
            )));
        }
        match self.options.key_type {
            KeyType::Binary => Ok(AttrValue::B(Cow::Borrowed(bytes))),
            KeyType::StringOrBinary => Ok(match std::str::from_utf8(bytes) {
                Ok(s) => AttrValue::S(Cow::Borrowed(s)),
                Err(_) => AttrValue::B(Cow::Borrowed(bytes)),
            }),
            KeyType::String => std::str::from_utf8(bytes)
                .map(|s| AttrValue::S(Cow::Borrowed(s)))
                .map_err(|_| Reject::new(format!("the {what} is not UTF-8 (key type S)"))),
        }
    }
}

/// The first or last position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8], occurrence: Occurrence) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    let mut positions = hay.windows(needle.len()).enumerate();
    match occurrence {
        Occurrence::First => positions.find(|(_, w)| *w == needle).map(|(i, _)| i),
        Occurrence::Last => positions.rev().find(|(_, w)| *w == needle).map(|(i, _)| i),
    }
}

fn field_name<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Reject> {
    if bytes.is_empty() {
        return Err(Reject::new(format!(
            "empty {what} name: DynamoDB attribute names cannot be empty"
        )));
    }
    std::str::from_utf8(bytes).map_err(|_| {
        Reject::new(format!(
            "{what} name {:?} is not UTF-8: DynamoDB attribute names are strings",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// How one record's values are typed.
struct Cx<'o> {
    auto: bool,
    declared: Option<&'o [(String, DeclaredType)]>,
    decode: bool,
}

fn mismatch(name: &str, t: DeclaredType, why: impl fmt::Display) -> Reject {
    Reject::new(format!("attribute {name:?} is declared {t} but {why}"))
}

fn utf8_or<'a>(b: &'a [u8], name: &str, t: DeclaredType) -> Result<&'a str, Reject> {
    std::str::from_utf8(b).map_err(|_| mismatch(name, t, "a value is not UTF-8"))
}

impl<'o> Cx<'o> {
    fn declared_type(&self, name: &str) -> Option<DeclaredType> {
        self.declared?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
    }

    /// A string (or element) by inference.
    fn scalar<'a>(&self, b: &'a [u8]) -> Result<AttrValue<'a>, Reject> {
        if let Some(v) = self.redstash(b)? {
            return Ok(v);
        }
        Ok(match std::str::from_utf8(b) {
            Ok(s) if self.auto && number::is_number(b) => AttrValue::N(Cow::Borrowed(s)),
            Ok(s) => AttrValue::S(Cow::Borrowed(s)),
            Err(_) => AttrValue::B(Cow::Borrowed(b)),
        })
    }

    /// A redstash value: `Some(B)` or, decoded, its numbers; `None` for anything else.
    fn redstash<'a>(&self, b: &'a [u8]) -> Result<Option<AttrValue<'a>>, Reject> {
        let format = Format::sniff(b);
        let array_like = matches!(
            format,
            Format::Npy | Format::Lz4Frame | Format::Zlib | Format::Zstd
        );
        if self.decode && array_like {
            let limits = Limits {
                max_value_len: DECODE_LIMIT,
                max_call_bytes: DECODE_LIMIT,
                ..Limits::default()
            };
            if let Ok(a) = decode_array(Bytes::copy_from_slice(b), &limits) {
                return array_value(&a).map(Some);
            }
        }
        // Strong magics only: a zlib header is two bytes that text may start with
        // (`x^`), so a value sniffed as zlib is binary only when it is not UTF-8.
        let redstash = match format {
            Format::Npy
            | Format::Lz4Frame
            | Format::Zstd
            | Format::ArrowIpc
            | Format::ChunkManifest => true,
            Format::Zlib => std::str::from_utf8(b).is_err(),
            _ => false,
        };
        Ok(redstash.then_some(AttrValue::B(Cow::Borrowed(b))))
    }

    /// A string declared `t`.
    fn typed_scalar<'a>(
        &self,
        name: &str,
        b: &'a [u8],
        t: DeclaredType,
    ) -> Result<AttrValue<'a>, Reject> {
        match t {
            DeclaredType::S => Ok(AttrValue::S(Cow::Borrowed(utf8_or(b, name, t)?))),
            DeclaredType::B => Ok(AttrValue::B(Cow::Borrowed(b))),
            DeclaredType::N => match std::str::from_utf8(b) {
                Ok(s) if number::is_number(b) => Ok(AttrValue::N(Cow::Borrowed(s))),
                _ => Err(mismatch(
                    name,
                    t,
                    format_args!(
                        "{:?} is not a number DynamoDB stores exactly",
                        String::from_utf8_lossy(&b[..b.len().min(64)])
                    ),
                )),
            },
            DeclaredType::Bool => match b {
                b"true" | b"1" => Ok(AttrValue::Bool(true)),
                b"false" | b"0" => Ok(AttrValue::Bool(false)),
                _ => Err(mismatch(
                    name,
                    t,
                    format_args!(
                        "{:?} is not true, false, 1 or 0",
                        String::from_utf8_lossy(&b[..b.len().min(64)])
                    ),
                )),
            },
            _ => Err(mismatch(name, t, "the value is a string")),
        }
    }

    /// A hash field's value (or a string value) named `name`.
    fn field<'a>(&self, name: &str, b: &'a [u8]) -> Result<AttrValue<'a>, Reject> {
        match self.declared_type(name) {
            Some(t) => self.typed_scalar(name, b, t),
            None => self.scalar(b),
        }
    }

    fn elements<'a>(&self, items: &'a [Vec<u8>]) -> Result<AttrValue<'a>, Reject> {
        items
            .iter()
            .map(|b| self.scalar(b))
            .collect::<Result<_, _>>()
            .map(AttrValue::L)
    }

    /// The value attribute of a key.
    fn value<'a>(
        &self,
        name: &str,
        value: &'a RedisValue,
        zset: ZSetLayout,
    ) -> Result<AttrValue<'a>, Reject> {
        let declared = self.declared_type(name);
        let wrong = |t: DeclaredType| {
            mismatch(
                name,
                t,
                format_args!("the value is a Redis {}", value.type_name()),
            )
        };
        match value {
            RedisValue::String(b) => self.field(name, b),
            RedisValue::Hash(fields) => {
                if let Some(t) = declared.filter(|t| *t != DeclaredType::M) {
                    return Err(wrong(t));
                }
                let mut m = Vec::with_capacity(fields.len());
                for (f, v) in fields {
                    let f = field_name(f, "hash field")?;
                    m.push((Cow::Borrowed(f), self.field(f, v)?));
                }
                Ok(AttrValue::M(m))
            }
            RedisValue::List(items) => match declared {
                None | Some(DeclaredType::L) => self.elements(items),
                Some(t @ (DeclaredType::SS | DeclaredType::NS | DeclaredType::BS)) => {
                    typed_set(name, items, t)
                }
                Some(t) => Err(wrong(t)),
            },
            RedisValue::Set(members) => match declared {
                None => self.set(members),
                Some(DeclaredType::L) => self.elements(members),
                Some(t @ (DeclaredType::SS | DeclaredType::NS | DeclaredType::BS)) => {
                    typed_set(name, members, t)
                }
                Some(t) => Err(wrong(t)),
            },
            RedisValue::ZSet(members) => {
                let layout = match declared {
                    None => zset,
                    Some(DeclaredType::L) => ZSetLayout::List,
                    Some(DeclaredType::M) => ZSetLayout::Map,
                    Some(t) => return Err(wrong(t)),
                };
                match layout {
                    ZSetLayout::List => members
                        .iter()
                        .map(|(m, score)| {
                            Ok(AttrValue::M(vec![
                                (Cow::Borrowed("member"), self.scalar(m)?),
                                (Cow::Borrowed("score"), score_value(*score)),
                            ]))
                        })
                        .collect::<Result<_, _>>()
                        .map(AttrValue::L),
                    ZSetLayout::Map => members
                        .iter()
                        .map(|(m, score)| {
                            Ok((
                                Cow::Borrowed(field_name(m, "sorted set member")?),
                                score_value(*score),
                            ))
                        })
                        .collect::<Result<_, _>>()
                        .map(AttrValue::M),
                }
            }
            RedisValue::Stream(entries) => {
                if let Some(t) = declared.filter(|t| *t != DeclaredType::L) {
                    return Err(wrong(t));
                }
                let mut list = Vec::with_capacity(entries.len());
                for e in entries {
                    let mut fields: Vec<(Name<'a>, AttrValue<'a>)> =
                        Vec::with_capacity(e.fields.len());
                    for (f, v) in &e.fields {
                        let f = field_name(f, "stream field")?;
                        if fields.iter().any(|(n, _)| n == f) {
                            return Err(Reject::new(format!(
                                "stream entry {} has the field {f:?} twice: a DynamoDB map cannot",
                                e.id
                            )));
                        }
                        fields.push((Cow::Borrowed(f), self.scalar(v)?));
                    }
                    list.push(AttrValue::M(vec![
                        (Cow::Borrowed("id"), AttrValue::S(Cow::Borrowed(&e.id))),
                        (Cow::Borrowed("fields"), AttrValue::M(fields)),
                    ]));
                }
                Ok(AttrValue::L(list))
            }
        }
    }

    /// A Redis set by inference (see the module documentation).
    fn set<'a>(&self, members: &'a [Vec<u8>]) -> Result<AttrValue<'a>, Reject> {
        if members.is_empty() {
            return Ok(AttrValue::L(Vec::new()));
        }
        let texts: Vec<Option<&'a str>> = members
            .iter()
            .map(|m| std::str::from_utf8(m).ok())
            .collect();
        if texts.iter().all(Option::is_none) {
            return Ok(AttrValue::BS(
                members
                    .iter()
                    .map(|m| Cow::Borrowed(m.as_slice()))
                    .collect(),
            ));
        }
        if let Some(all) = texts.iter().copied().collect::<Option<Vec<&'a str>>>() {
            let numbers = if self.auto {
                all.iter()
                    .filter(|s| number::is_number(s.as_bytes()))
                    .count()
            } else {
                0
            };
            if numbers == 0 {
                return Ok(AttrValue::SS(all.into_iter().map(Cow::Borrowed).collect()));
            }
            if numbers == all.len() && distinct_numbers(&all) {
                return Ok(AttrValue::NS(all.into_iter().map(Cow::Borrowed).collect()));
            }
        }
        self.elements(members)
    }
}

/// Whether no two of these numbers are the same number.
fn distinct_numbers(numbers: &[&str]) -> bool {
    let mut keys: Vec<Vec<u8>> = numbers
        .iter()
        .filter_map(|s| number::value_key(s.as_bytes()))
        .collect();
    keys.sort_unstable();
    keys.windows(2).all(|w| w[0] != w[1])
}

/// A list or set declared `SS`, `NS` or `BS`.
fn typed_set<'a>(
    name: &str,
    items: &'a [Vec<u8>],
    t: DeclaredType,
) -> Result<AttrValue<'a>, Reject> {
    if items.is_empty() {
        return Err(mismatch(name, t, "it is empty: DynamoDB sets cannot be"));
    }
    let mut sorted: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(mismatch(name, t, "it has duplicates"));
    }
    match t {
        DeclaredType::SS => items
            .iter()
            .map(|b| utf8_or(b, name, t).map(Cow::Borrowed))
            .collect::<Result<_, _>>()
            .map(AttrValue::SS),
        DeclaredType::NS => {
            let all = items
                .iter()
                .map(|b| match std::str::from_utf8(b) {
                    Ok(s) if number::is_number(b) => Ok(s),
                    _ => Err(mismatch(
                        name,
                        t,
                        format_args!(
                            "{:?} is not a number DynamoDB stores exactly",
                            String::from_utf8_lossy(&b[..b.len().min(64)])
                        ),
                    )),
                })
                .collect::<Result<Vec<&'a str>, _>>()?;
            if !distinct_numbers(&all) {
                return Err(mismatch(name, t, "two members are the same number"));
            }
            Ok(AttrValue::NS(all.into_iter().map(Cow::Borrowed).collect()))
        }
        _ => Ok(AttrValue::BS(
            items.iter().map(|b| Cow::Borrowed(b.as_slice())).collect(),
        )),
    }
}

fn score_value(score: f64) -> AttrValue<'static> {
    match number::f64_number(score) {
        Ok(n) => AttrValue::N(Cow::Owned(n)),
        Err(s) => AttrValue::S(Cow::Owned(s)),
    }
}

fn float_value(r: Result<String, String>) -> AttrValue<'static> {
    match r {
        Ok(n) => AttrValue::N(Cow::Owned(n)),
        Err(s) => AttrValue::S(Cow::Owned(s)),
    }
}

fn int_value(n: impl ToString) -> AttrValue<'static> {
    AttrValue::N(Cow::Owned(n.to_string()))
}

/// A decoded array as DynamoDB values (see the module documentation).
fn array_value(a: &RawArray) -> Result<AttrValue<'static>, Reject> {
    let n = a.len();
    // Every element costs at least 2 bytes (1 of number, 1 of list overhead).
    if n.saturating_mul(2) > MAX_ITEM_SIZE {
        return Err(Reject::new(format!(
            "the decoded array has {n} elements: at 2 bytes or more each, over DynamoDB's {MAX_ITEM_SIZE}-byte (400 KB) item limit"
        )));
    }
    let bad = |_| Reject::new("the decoded array's data does not match its dtype");
    let data: Vec<AttrValue<'static>> = match a.dtype() {
        DType::Bool => a
            .to_vec_c_order::<bool>()
            .map_err(bad)?
            .into_iter()
            .map(AttrValue::Bool)
            .collect(),
        DType::I8 => ints(a.to_vec_c_order::<i8>().map_err(bad)?),
        DType::I16 => ints(a.to_vec_c_order::<i16>().map_err(bad)?),
        DType::I32 => ints(a.to_vec_c_order::<i32>().map_err(bad)?),
        DType::I64 => ints(a.to_vec_c_order::<i64>().map_err(bad)?),
        DType::U8 => ints(a.to_vec_c_order::<u8>().map_err(bad)?),
        DType::U16 => ints(a.to_vec_c_order::<u16>().map_err(bad)?),
        DType::U32 => ints(a.to_vec_c_order::<u32>().map_err(bad)?),
        DType::U64 => ints(a.to_vec_c_order::<u64>().map_err(bad)?),
        DType::F16 => a
            .to_vec_c_order::<half::f16>()
            .map_err(bad)?
            .into_iter()
            .map(|x| float_value(number::f32_number(x.to_f32())))
            .collect(),
        DType::F32 => a
            .to_vec_c_order::<f32>()
            .map_err(bad)?
            .into_iter()
            .map(|x| float_value(number::f32_number(x)))
            .collect(),
        DType::F64 => a
            .to_vec_c_order::<f64>()
            .map_err(bad)?
            .into_iter()
            .map(|x| float_value(number::f64_number(x)))
            .collect(),
        DType::C64 => a
            .to_vec_c_order::<num_complex::Complex<f32>>()
            .map_err(bad)?
            .into_iter()
            .flat_map(|c| [c.re, c.im])
            .map(|x| float_value(number::f32_number(x)))
            .collect(),
        DType::C128 => a
            .to_vec_c_order::<num_complex::Complex<f64>>()
            .map_err(bad)?
            .into_iter()
            .flat_map(|c| [c.re, c.im])
            .map(|x| float_value(number::f64_number(x)))
            .collect(),
    };
    let complex = matches!(a.dtype(), DType::C64 | DType::C128);
    if a.ndim() == 1 && !complex {
        return Ok(AttrValue::L(data));
    }
    Ok(AttrValue::M(vec![
        (
            Cow::Borrowed("dtype"),
            AttrValue::S(Cow::Borrowed(a.dtype().name())),
        ),
        (
            Cow::Borrowed("shape"),
            AttrValue::L(a.shape().iter().map(|d| int_value(*d)).collect()),
        ),
        (Cow::Borrowed("data"), AttrValue::L(data)),
    ]))
}

fn ints<T: ToString>(v: Vec<T>) -> Vec<AttrValue<'static>> {
    v.into_iter().map(int_value).collect()
}

#[cfg(test)]
#[path = "dynamo_tests.rs"]
mod tests;
