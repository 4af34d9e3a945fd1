//! PostgreSQL (feature `postgres`, the sync `postgres` crate): the rows of a query,
//! streamed with `COPY (query) TO STDOUT` in PostgreSQL's text format and typed by the
//! query's column types.
//!
//! The rows arrive on a thread of the source's own that reads the `COPY` stream into
//! chunks of [`CHUNK_BYTES`] and hands them over a channel of [`CHANNEL_CHUNKS`]: memory
//! stays bounded whatever the result's size, and the network read overlaps the
//! encoding of the records.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use postgres::types::Type;
use postgres::{Client, NoTls};

use super::{Read, ResumePoint, Source};
use crate::error::{Error, Result};
use crate::load::batch::Shard;
use crate::load::record::{Position, Record, Value};

/// Bytes of the `COPY` stream per chunk handed from the reading thread.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks queued between the reading thread and the source (the stream's memory is
/// about `CHUNK_BYTES * (CHANNEL_CHUNKS + 2)`).
pub const CHANNEL_CHUNKS: usize = 4;

/// The alias of the query when the source wraps it (`SELECT * FROM (query) AS ...`).
const ALIAS: &str = "redstash_q";

/// How to read a PostgreSQL query.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// A column of the query with unique values that the rows are ordered by
    /// (`ORDER BY key`): the order of the records is then stable, a resumed load
    /// skips the rows already done on the server (`OFFSET`), and a [`shard`](Self::shard)
    /// can select its rows on the server. Without it, the query itself must have a
    /// stable `ORDER BY` for a resume to be right.
    pub key_column: Option<String>,
    /// Read only this loader's rows: those whose key column hashes to the shard's index
    /// (`mod(hashtext(key::text), count) = index`), so `count` loaders read disjoint
    /// rows that together are the whole result, without coordinating. Needs
    /// [`key_column`](Self::key_column). (The loader's own
    /// [`Loader::with_shard`](crate::load::Loader::with_shard) also works on any
    /// source, but each loader then reads every row and drops the other loaders'
    /// batches.)
    pub shard: Option<Shard>,
    /// Count the rows first (`SELECT count(*) FROM (query)`, which runs the query once
    /// more on the server) so that progress has a total.
    pub count: bool,
}

/// What a column's text becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `int2`, `int4`, `int8`, `oid`: [`Value::Int`].
    Int,
    /// `float4`, `float8`: [`Value::Float`].
    Float,
    /// `numeric`: [`Value::Untyped`] (its exact decimal text).
    Numeric,
    /// `bool`: [`Value::Bool`].
    Bool,
    /// `bytea`: [`Value::Bytes`].
    Bytes,
    /// `json`, `jsonb`: [`Value::Json`].
    Json,
    /// Anything else (text, dates, times, UUIDs, arrays...): [`Value::Text`] of
    /// PostgreSQL's text form.
    Text,
}

impl Kind {
    fn of(t: &Type) -> Kind {
        match *t {
            Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Kind::Int,
            Type::FLOAT4 | Type::FLOAT8 => Kind::Float,
            Type::NUMERIC => Kind::Numeric,
            Type::BOOL => Kind::Bool,
            Type::BYTEA => Kind::Bytes,
            Type::JSON | Type::JSONB => Kind::Json,
            _ => Kind::Text,
        }
    }
}

/// What the reading thread hands over.
enum Chunk {
    Data(Vec<u8>),
    End,
    Failed(Error),
}

/// The `COPY` stream being read.
struct Stream {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

/// The rows of a PostgreSQL query as records.
///
/// Field names are the query's column names; values are typed by the column types:
/// `int2`/`int4`/`int8` as [`Value::Int`], `float4`/`float8` as [`Value::Float`],
/// `numeric` as [`Value::Untyped`] (its exact digits: a JSON value writes it as a
/// number without losing precision), `bool` as [`Value::Bool`], `bytea` as
/// [`Value::Bytes`], `json`/`jsonb` as [`Value::Json`], `NULL` as [`Value::Null`], and
/// every other type (text, `varchar`, dates, timestamps, UUIDs, arrays...) as
/// [`Value::Text`] of its PostgreSQL text form (dates in ISO style).
///
/// A record's [`Position`] is its row ordinal (from 0, within the shard when
/// sharded). [`Source::bytes_read`] counts rows, not bytes: rows read and, with
/// [`PostgresOptions::count`], the total.
///
/// Resuming ([`Source::resume_at`] before the first record) runs the query again with
/// `OFFSET` the rows already done, skipped on the server: the rows must come in the same
/// order every time, so give a [`key_column`](PostgresOptions::key_column) (the rows are
/// then ordered by it) or a query with an `ORDER BY` on unique columns.
///
/// The connection has no TLS. Its parameters are a URL (`postgres://user:pw@host:port/db`)
/// or `key=value` pairs, as the `postgres` crate reads them.
pub struct PostgresSource {
    /// Until the stream starts.
    client: Option<Client>,
    query: String,
    options: PostgresOptions,
    identity: String,
    names: Vec<Arc<str>>,
    kinds: Vec<Kind>,
    stream: Option<Stream>,
    /// Rows skipped on the server (a resume).
    offset: u64,
    records: u64,
    total: Option<u64>,
    /// A row split across chunks.
    line: Vec<u8>,
    /// A field's unescaped text.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource")
            .field("identity", &self.identity)
            .field("names", &self.names)
            .field("records", &self.records)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL client error as a redstash error: the server's refusal (a bad query, a
/// missing table or column, a permission) is [`Error::InvalidArgument`] with the
/// server's message, anything else (the connection) [`Error::Io`].
fn pg_error(context: &str, e: postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{context}: {}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                msg.push_str(&format!(" (hint: {h})"));
            }
            Error::InvalidArgument(msg)
        }
        None => Error::Io(std::io::Error::other(format!("{context}: {e}"))),
    }
}

/// An SQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connection parameters as they may be shown (in a checkpoint's identity, a message, a
/// report): without the password of a URL's user part and without `password=`
/// parameters.
///
/// ```
/// use redstash::load::source::postgres::shown_params;
/// assert_eq!(shown_params("postgres://ada:pw@db/app"), "postgres://ada@db/app");
/// ```
pub fn shown_params(params: &str) -> String {
    let mut s = params.to_owned();
    if let Some(scheme_end) = s.find("://") {
        let rest_start = scheme_end + 3;
        let auth_end = s[rest_start..]
            .find(['/', '?'])
            .map_or(s.len(), |i| rest_start + i);
        if let Some(at) = s[rest_start..auth_end].rfind('@') {
            let userinfo = &s[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                s.replace_range(rest_start + colon..rest_start + at, "");
            }
        }
        if let Some(q) = s.find('?') {
            let (head, query) = s.split_at(q + 1);
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            s = format!("{head}{}", kept.join("&"));
            if s.ends_with('?') {
                s.pop();
            }
        }
        s
    } else {
        // key=value pairs (a quoted password value may hold spaces).
        let mut out = Vec::new();
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            if let Some(v) = w.strip_prefix("password=") {
                if v.starts_with('\'') && !(v.len() > 1 && v.ends_with('\'')) {
                    for more in words.by_ref() {
                        if more.ends_with('\'') && !more.ends_with("\\'") {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(w);
        }
        out.join(" ")
    }
}

impl PostgresSource {
    /// Connect with `params`, check `query` (the server prepares it: a bad query is an
    /// error here, before anything is loaded), learn its columns, and count its rows
    /// when [`PostgresOptions::count`] says so. The rows are read from the first
    /// [`next_record`](Source::next_record) on.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a query the server refuses, a
    /// [`key_column`](PostgresOptions::key_column) the query does not have, a shard
    /// without a key column; [`Error::Io`] when the connection fails.
    pub fn connect(params: &str, query: &str, options: PostgresOptions) -> Result<Self> {
        let query = query.trim().trim_end_matches(';').trim_end().to_owned();
        if query.is_empty() {
            return Err(Error::InvalidArgument("the query is empty".into()));
        }
        if options.shard.is_some() && options.key_column.is_none() {
            return Err(Error::InvalidArgument(
                "a PostgreSQL shard needs a key column (its rows are chosen by the key's hash)"
                    .into(),
            ));
        }
        let shown = shown_params(params);
        let mut client = Client::connect(params, NoTls)
            .map_err(|e| pg_error(&format!("PostgreSQL {shown}"), e))?;
        // Text forms that do not depend on the server's settings.
        client
            .batch_execute(
                "SET bytea_output = 'hex'; SET extra_float_digits = 1; SET DateStyle = 'ISO'",
            )
            .map_err(|e| pg_error("PostgreSQL session settings", e))?;
        let statement = client
            .prepare(&query)
            .map_err(|e| pg_error("the query", e))?;
        let names: Vec<Arc<str>> = statement
            .columns()
            .iter()
            .map(|c| Arc::from(c.name()))
            .collect();
        if names.is_empty() {
            return Err(Error::InvalidArgument(
                "the query returns no columns (a load needs a SELECT or a VALUES)".into(),
            ));
        }
        let kinds = statement
            .columns()
            .iter()
            .map(|c| Kind::of(c.type_()))
            .collect();
        if let Some(k) = &options.key_column
            && !names.iter().any(|n| &**n == k)
        {
            return Err(Error::InvalidArgument(format!(
                "key column {k:?} is not a column of the query (its columns: {})",
                names.iter().map(|n| &**n).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut identity = format!("postgres {shown} query={query}");
        if let Some(k) = &options.key_column {
            identity.push_str(&format!(" key={k}"));
        }
        if let Some(s) = options.shard {
            identity.push_str(&format!(" shard={}/{}", s.index, s.count));
        }
        let mut source = PostgresSource {
            client: Some(client),
            query,
            options,
            identity,
            names,
            kinds,
            stream: None,
            offset: 0,
            records: 0,
            total: None,
            line: Vec::new(),
            scratch: Vec::new(),
        };
        if source.options.count {
            let sql = format!("SELECT count(*) FROM ({}) AS {ALIAS}", source.select(false));
            let client = source.client.as_mut().ok_or_else(|| {
                Error::InvalidArgument("the PostgreSQL connection is in use".into())
            })?;
            let row = client
                .query_one(sql.as_str(), &[])
                .map_err(|e| pg_error("counting the query's rows", e))?;
            let n: i64 = row
                .try_get(0)
                .map_err(|e| pg_error("counting the query's rows", e))?;
            source.total = Some(n.max(0) as u64);
        }
        Ok(source)
    }

    /// The field names (the query's column names, in order).
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The number of rows ([`PostgresOptions::count`]), when counted.
    pub fn total_rows(&self) -> Option<u64> {
        self.total
    }

    /// The `SELECT` that gives this source's rows: the query, or the query wrapped to
    /// select a shard and order by the key column.
    fn select(&self, ordered: bool) -> String {
        let Some(key) = &self.options.key_column else {
            return self.query.clone();
        };
        let key = format!("{ALIAS}.{}", quote_ident(key));
        let mut sql = format!("SELECT * FROM ({}) AS {ALIAS}", self.query);
        if let Some(s) = self.options.shard {
            let n = s.count;
            sql.push_str(&format!(
                " WHERE mod(mod(hashtext({key}::text), {n}) + {n}, {n}) = {}",
                s.index
            ));
        }
        if ordered {
            sql.push_str(&format!(" ORDER BY {key}"));
        }
        sql
    }

    /// The `COPY` statement that streams the rows from `self.offset` on.
    fn copy_statement(&self) -> String {
        let mut sql = self.select(true);
        if self.offset > 0 {
            if self.options.key_column.is_some() {
                sql.push_str(&format!(" OFFSET {}", self.offset));
            } else {
                sql = format!("SELECT * FROM ({sql}) AS {ALIAS} OFFSET {}", self.offset);
            }
        }
        format!("COPY ({sql}) TO STDOUT")
    }

    /// Starts the `COPY` on the reading thread.
    fn start(&mut self) -> Result<()> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let sql = self.copy_statement();
        let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
        std::thread::Builder::new()
            .name("redstash-pg-copy".into())
            .spawn(move || copy_rows(client, &sql, &tx))?;
        self.stream = Some(Stream {
            rx,
            chunk: Vec::new(),
            pos: 0,
            ended: false,
        });
        Ok(())
    }

    /// The next row's bytes (without its newline) into `self.line` or, when it lies
    /// within one chunk, as a range of the current chunk. `None` at the end.
    fn next_row(&mut self) -> Result<Option<RowAt>> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        self.line.clear();
        loop {
            if stream.pos < stream.chunk.len() {
                let rest = &stream.chunk[stream.pos..];
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        let start = stream.pos;
                        stream.pos += i + 1;
                        if self.line.is_empty() {
                            return Ok(Some(RowAt::Chunk(start, start + i)));
                        }
                        self.line.extend_from_slice(&rest[..i]);
                        return Ok(Some(RowAt::Line));
                    }
                    None => {
                        self.line.extend_from_slice(rest);
                        stream.pos = stream.chunk.len();
                    }
                }
            }
            if stream.ended {
                return if self.line.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(RowAt::Line))
                };
            }
            match stream.rx.recv() {
                Ok(Chunk::Data(data)) => {
                    stream.chunk = data;
                    stream.pos = 0;
                }
                Ok(Chunk::End) => stream.ended = true,
                Ok(Chunk::Failed(e)) => {
                    stream.ended = true;
                    return Err(e);
                }
                Err(_) => {
                    stream.ended = true;
                    return Err(Error::Io(std::io::Error::other(
                        "the PostgreSQL reading thread stopped without finishing the rows",
                    )));
                }
            }
        }
    }
}

/// Where [`PostgresSource::next_row`] put the row.
enum RowAt {
    Chunk(usize, usize),
    Line,
}

/// The reading thread: runs the `COPY` and sends its bytes in chunks, then `End` or the
/// error. Stops early when the source is dropped.
fn copy_rows(mut client: Client, sql: &str, tx: &SyncSender<Chunk>) {
    let result = (|| -> Result<()> {
        let mut reader = client.copy_out(sql).map_err(|e| pg_error("the query", e))?;
        // The reader must not be read again once it said the end.
        let mut at_end = false;
        while !at_end {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                let n = reader.read(&mut buf[filled..]).map_err(|e| {
                    match e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<postgres::Error>())
                        .and_then(|pe| pe.as_db_error())
                    {
                        Some(db) => Error::InvalidArgument(format!(
                            "the query: {}: {}",
                            db.severity(),
                            db.message()
                        )),
                        None => Error::Io(e),
                    }
                })?;
                if n == 0 {
                    at_end = true;
                    break;
                }
                filled += n;
            }
            if filled > 0 {
                buf.truncate(filled);
                if tx.send(Chunk::Data(buf)).is_err() {
                    // The source was dropped.
                    return Ok(());
                }
            }
        }
        Ok(())
    })();
    let _ = tx.send(match result {
        Ok(()) => Chunk::End,
        Err(e) => Chunk::Failed(e),
    });
}

/// Unescapes a field of `COPY`'s text format (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`,
/// `\v`, octal `\NNN`, hex `\xHH`) into `out`.
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 == field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = field[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut k = 0;
                while k < 2 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    v = v * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    v = v * 16 + hex_digit(field[i]).map_or(0, u32::from);
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A field's text as a value of its column's kind; `Err` names what is wrong.
fn typed(kind: Kind, text: &[u8]) -> std::result::Result<Value, String> {
    let s = || std::str::from_utf8(text).map_err(|_| "text that is not UTF-8".to_owned());
    Ok(match kind {
        Kind::Int => Value::Int(
            s()?.parse()
                .map_err(|_| format!("integer {:?}", String::from_utf8_lossy(text)))?,
        ),
        Kind::Float => Value::Float(
            s()?.parse()
                .map_err(|_| format!("float {:?}", String::from_utf8_lossy(text)))?,
        ),
        Kind::Numeric => Value::Untyped(s()?.to_owned()),
        Kind::Bool => match text {
            b"t" => Value::Bool(true),
            b"f" => Value::Bool(false),
            _ => return Err(format!("boolean {:?}", String::from_utf8_lossy(text))),
        },
        Kind::Bytes => {
            let hex = text
                .strip_prefix(b"\\x")
                .ok_or_else(|| "bytea not in hex form".to_owned())?;
            if hex.len() % 2 != 0 {
                return Err("bytea hex of odd length".into());
            }
            let mut out = Vec::with_capacity(hex.len() / 2);
            for pair in hex.chunks_exact(2) {
                match (hex_digit(pair[0]), hex_digit(pair[1])) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err("bytea with a non-hex digit".into()),
                }
            }
            Value::Bytes(out)
        }
        Kind::Json => Value::Json(serde_json::from_slice(text).map_err(|e| format!("JSON: {e}"))?),
        Kind::Text => Value::Text(s()?.to_owned()),
    })
}

/// Parses one row of `COPY`'s text format into `record`.
fn parse_row(
    names: &[Arc<str>],
    kinds: &[Kind],
    scratch: &mut Vec<u8>,
    row: &[u8],
    record: &mut Record,
) -> std::result::Result<(), String> {
    record.fields.clear();
    let mut fields = row.split(|&b| b == b'\t');
    for (name, &kind) in names.iter().zip(kinds) {
        let Some(field) = fields.next() else {
            return Err(format!(
                "the row has {} fields, the query {} columns",
                record.fields.len(),
                names.len()
            ));
        };
        let value = if field == b"\\N" {
            Value::Null
        } else if field.contains(&b'\\') {
            unescape(field, scratch);
            typed(kind, scratch).map_err(|e| format!("column {name:?}: {e}"))?
        } else {
            typed(kind, field).map_err(|e| format!("column {name:?}: {e}"))?
        };
        record.fields.push((name.clone(), value));
    }
    if fields.next().is_some() {
        return Err(format!(
            "the row has more fields than the query's {} columns",
            names.len()
        ));
    }
    Ok(())
}

impl Source for PostgresSource {
    fn next_record(&mut self, record: &mut Record) -> Result<Read> {
        if self.stream.is_none() {
            self.start()?;
        }
        let position = Position {
            record: self.records,
            line: 0,
        };
        let Some(at) = self.next_row()? else {
            return Ok(Read::End);
        };
        self.records += 1;
        let row: &[u8] = match at {
            RowAt::Line => &self.line,
            RowAt::Chunk(a, b) => match &self.stream {
                Some(s) => &s.chunk[a..b],
                None => &[],
            },
        };
        record.position = position;
        match parse_row(&self.names, &self.kinds, &mut self.scratch, row, record) {
            Ok(()) => Ok(Read::Record),
            Err(reason) => Ok(Read::Malformed { position, reason }),
        }
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            records: self.records,
            line: 0,
            offset: None,
        }
    }

    /// Before the first record: the rows before `point` are skipped on the server
    /// (`OFFSET`). Later: read and dropped.
    fn resume_at(&mut self, point: &ResumePoint) -> Result<()> {
        if self.stream.is_none() && self.records == 0 {
            self.offset = point.records;
            self.records = point.records;
            return Ok(());
        }
        let mut r = Record::default();
        while self.records < point.records {
            if self.next_record(&mut r)? == Read::End {
                return Err(Error::InvalidArgument(format!(
                    "the query's rows end before the checkpoint's record {}",
                    point.records
                )));
            }
        }
        Ok(())
    }

    /// Rows, not bytes: rows read (those skipped by a resume included) and the total
    /// when [counted](PostgresOptions::count).
    fn bytes_read(&self) -> (u64, Option<u64>) {
        (self.records, self.total)
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out() {
        assert_eq!(
            shown_params("postgres://ada:s3cret@db:5432/app?sslmode=disable"),
            "postgres://ada@db:5432/app?sslmode=disable"
        );
        assert_eq!(
            shown_params("postgresql://db/app?user=ada&password=x&connect_timeout=3"),
            "postgresql://db/app?user=ada&connect_timeout=3"
        );
        assert_eq!(
            shown_params("postgres://db/app?password=x"),
            "postgres://db/app"
        );
        assert_eq!(
            shown_params("host=db user=ada password='a b' dbname=app"),
            "host=db user=ada dbname=app"
        );
        assert_eq!(shown_params("host=db password=x"), "host=db");
    }

    #[test]
    fn text_format_fields() {
        let mut out = Vec::new();
        unescape(br"a\tb\\c\nd\101\x41", &mut out);
        assert_eq!(out, b"a\tb\\c\ndAA");
        let names: Vec<Arc<str>> = ["i", "f", "n", "b", "y", "j", "t", "z"]
            .into_iter()
            .map(Arc::from)
            .collect();
        let kinds = [
            Kind::Int,
            Kind::Float,
            Kind::Numeric,
            Kind::Bool,
            Kind::Bytes,
            Kind::Json,
            Kind::Text,
            Kind::Text,
        ];
        let mut r = Record::default();
        let row =
            b"-7\t-Infinity\t12345678901234567890.123\tt\t\\\\x00ff\t{\"a\": [1]}\tx\\\\N\t\\N";
        parse_row(&names, &kinds, &mut out, row, &mut r).unwrap();
        assert_eq!(r.get("i"), Some(&Value::Int(-7)));
        assert_eq!(r.get("f"), Some(&Value::Float(f64::NEG_INFINITY)));
        assert_eq!(
            r.get("n"),
            Some(&Value::Untyped("12345678901234567890.123".into()))
        );
        assert_eq!(r.get("b"), Some(&Value::Bool(true)));
        assert_eq!(r.get("y"), Some(&Value::Bytes(vec![0, 255])));
        assert_eq!(
            r.get("j"),
            Some(&Value::Json(serde_json::json!({"a": [1]})))
        );
        assert_eq!(r.get("t"), Some(&Value::Text("x\\N".into())));
        assert_eq!(r.get("z"), Some(&Value::Null));
        assert!(parse_row(&names, &kinds, &mut out, b"1\t2", &mut r).is_err());
        assert!(parse_row(&names[..1], &kinds[..1], &mut out, b"x", &mut r).is_err());
    }
}
