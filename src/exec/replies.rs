//! Reading replies: the cursor a continuation reads its request's replies with, in
//! command order, and the readers of single values (elements of an array reply).

use redis::Value;

use crate::error::{Error, Result};

/// The replies to a request, read in command order.
///
/// A continuation ([`Step::send`](super::Step::send)) gets one `Replies`: one reply per
/// command of its request (for a `MULTI`/`EXEC` transaction, the replies of the
/// commands inside it). Each `next_*` method takes the next reply, so a parse reads in
/// the order the commands were pushed; reading past the last reply, or a reply of
/// another kind than expected, is [`Error::UnexpectedReply`], and
/// [`finish`](Self::finish) checks that no reply is left unread, so a miscounted parse
/// is an error instead of a silent misread. Every error names the request's key and
/// the index of the command whose reply it was. A server error reply is
/// [`Error::Redis`] (with the key) for every method but [`next_raw`](Self::next_raw).
///
/// The replies are moved out one by one, never copied.
///
/// ```
/// use redis::Value;
/// use redstash::exec::Replies;
/// # fn main() -> redstash::Result<()> {
/// let mut r = Replies::new(
///     vec![Value::Okay, Value::Int(2), Value::BulkString(b"v".to_vec())],
///     Some("k".into()),
/// );
/// r.next_ok()?;
/// assert_eq!(r.next_int()?, 2);
/// assert_eq!(r.next_bytes()?.as_deref(), Some(&b"v"[..]));
/// r.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Replies {
    values: std::vec::IntoIter<Value>,
    key: Option<String>,
    /// Index of the command whose reply comes next.
    next: usize,
    total: usize,
}

impl Replies {
    /// The replies `values` of a request about `key` (named in errors).
    pub fn new(values: Vec<Value>, key: Option<String>) -> Self {
        Replies {
            total: values.len(),
            values: values.into_iter(),
            key,
            next: 0,
        }
    }

    /// The key the request is about, if one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Number of replies not read yet.
    pub fn remaining(&self) -> usize {
        self.values.len()
    }

    /// Number of replies in all (one per command).
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the request had no command.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// An [`Error::UnexpectedReply`] about the reply read last (or, before any was
    /// read, the first), naming the key and the command index: for checks a parse
    /// makes on a reply's content.
    pub fn unexpected(&self, reason: impl std::fmt::Display) -> Error {
        self.error_at(self.next.saturating_sub(1), reason)
    }

    fn error_at(&self, index: usize, reason: impl std::fmt::Display) -> Error {
        Error::unexpected(
            format!("command {index} of {}: {reason}", self.total),
            self.key.clone(),
        )
    }

    /// The next reply as it came: a server error stays a `Value::ServerError`.
    pub fn next_raw(&mut self) -> Result<Value> {
        match self.values.next() {
            Some(v) => {
                self.next += 1;
                Ok(v)
            }
            None => Err(self.error_at(
                self.next,
                "no reply (the parse reads more replies than the request has commands)",
            )),
        }
    }

    /// The next reply; a server error is [`Error::Redis`].
    pub fn next_value(&mut self) -> Result<Value> {
        match self.next_raw()? {
            Value::ServerError(e) => Err(Error::redis(e.into(), self.key.as_deref())),
            v => Ok(v),
        }
    }

    /// The next reply, which must not be a server error (`OK`, an integer...).
    pub fn next_ok(&mut self) -> Result<()> {
        self.next_value().map(drop)
    }

    /// The next reply as bytes; `Nil` is `None`.
    pub fn next_bytes(&mut self) -> Result<Option<bytes::Bytes>> {
        match self.next_value()? {
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(crate::buffers::into_bytes(b))),
            other => Err(self.unexpected(format_args!(
                "expected a string value, got {}",
                describe(&other)
            ))),
        }
    }

    /// The next reply as an integer.
    pub fn next_int(&mut self) -> Result<i64> {
        match self.next_value()? {
            Value::Int(i) => Ok(i),
            other => Err(self.unexpected(format_args!(
                "expected an integer, got {}",
                describe(&other)
            ))),
        }
    }

    /// The next reply as an array (of any length).
    pub fn next_array(&mut self) -> Result<Vec<Value>> {
        match self.next_value()? {
            Value::Array(a) => Ok(a),
            other => {
                Err(self.unexpected(format_args!("expected an array, got {}", describe(&other))))
            }
        }
    }

    /// The next reply as an array of exactly `len` elements (`MGET`, `HMGET`...).
    pub fn next_array_of(&mut self, len: usize) -> Result<Vec<Value>> {
        match self.next_value()? {
            Value::Array(a) if a.len() == len => Ok(a),
            other => Err(self.unexpected(format_args!(
                "expected an array of {len}, got {}",
                describe(&other)
            ))),
        }
    }

    /// The next reply as an array of exactly `N` elements, by value
    /// (`let [meta, data] = r.next_array_n()?`).
    pub fn next_array_n<const N: usize>(&mut self) -> Result<[Value; N]> {
        let a = self.next_array_of(N)?;
        a.try_into()
            .map_err(|_| self.unexpected(format_args!("expected an array of {N}")))
    }

    /// The next reply as the field/value pairs of a hash (`HGETALL`: a RESP2 array of
    /// even length or a RESP3 map).
    pub fn next_pairs(&mut self) -> Result<Vec<(Value, Value)>> {
        match self.next_value()? {
            Value::Map(m) => Ok(m),
            Value::Array(a) if a.len() % 2 == 0 => {
                let mut out = Vec::with_capacity(a.len() / 2);
                let mut it = a.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    out.push((k, v));
                }
                Ok(out)
            }
            other => {
                Err(self.unexpected(format_args!("expected a hash, got {}", describe(&other))))
            }
        }
    }

    /// Pass over the next `n` replies without looking at them (server errors
    /// included); an error if fewer are left.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(self.error_at(
                self.next + self.remaining(),
                format_args!("no reply ({n} skipped, {} left)", self.remaining()),
            ));
        }
        for _ in 0..n {
            self.next_raw()?;
        }
        Ok(())
    }

    /// Check that none of the replies left is a server error (the first one is
    /// [`Error::Redis`]), which reads them all: for requests whose replies say nothing
    /// but success (`SET`s, `DEL`s of a transaction...).
    pub fn finish_ok(mut self) -> Result<()> {
        while self.remaining() > 0 {
            self.next_ok()?;
        }
        Ok(())
    }

    /// Check that every reply was read: replies left are [`Error::UnexpectedReply`]
    /// (the parse and the request disagree on the number of commands).
    pub fn finish(self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(self.error_at(
                self.next,
                format_args!("{left} replies left unread (the parse reads fewer replies than the request has commands)"),
            )),
        }
    }
}

/// A short description of a reply for errors (a large value is not printed whole).
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Int(i) => format!("the integer {i}"),
        Value::BulkString(b) if b.len() <= 64 => {
            format!("the string {:?}", String::from_utf8_lossy(b))
        }
        Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        Value::SimpleString(s) if s.len() <= 64 => format!("the status {s:?}"),
        Value::SimpleString(s) => format!("a status of {} bytes", s.len()),
        Value::Okay => "OK".into(),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Map(m) => format!("a map of {}", m.len()),
        Value::Set(s) => format!("a set of {}", s.len()),
        Value::ServerError(e) => format!("the error {e:?}"),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

/// Take a reply as bytes; `Nil` is `None`; a server error becomes [`Error::Redis`].
pub(crate) fn reply_bytes(v: Value, key: &str) -> Result<Option<bytes::Bytes>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(crate::buffers::into_bytes(b))),
        Value::ServerError(e) => Err(Error::redis(e.into(), Some(key))),
        other => Err(Error::unexpected(
            format!("expected a string value, got {}", describe(&other)),
            Some(key.to_owned()),
        )),
    }
}

/// Check a reply that must not be an error (`OK`, an integer...), returning it.
pub(crate) fn reply_ok(v: Value, key: &str) -> Result<Value> {
    match v {
        Value::ServerError(e) => Err(Error::redis(e.into(), Some(key))),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(values: Vec<Value>) -> Replies {
        Replies::new(values, Some("k".into()))
    }

    fn unexpected(e: Error) -> (String, Option<String>) {
        match e {
            Error::UnexpectedReply { reason, key } => (reason, key),
            other => panic!("not an unexpected reply: {other:?}"),
        }
    }

    #[test]
    fn replies_read_in_command_order() {
        let mut r = replies(vec![
            Value::Okay,
            Value::Int(7),
            Value::Nil,
            Value::BulkString(b"abc".to_vec()),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            Value::Map(vec![(Value::Int(1), Value::Int(2))]),
            Value::Int(9),
        ]);
        assert_eq!((r.len(), r.remaining(), r.key()), (9, 9, Some("k")));
        r.next_ok().unwrap();
        assert_eq!(r.next_int().unwrap(), 7);
        assert_eq!(r.next_bytes().unwrap(), None);
        assert_eq!(r.next_bytes().unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.next_array().unwrap().len(), 2);
        let [a, b] = r.next_array_n().unwrap();
        assert_eq!((a, b), (Value::Int(1), Value::Int(2)));
        assert_eq!(r.next_pairs().unwrap().len(), 1);
        assert_eq!(r.next_pairs().unwrap().len(), 1);
        assert_eq!(r.remaining(), 1);
        r.skip(1).unwrap();
        r.finish().unwrap();
        let e = redis::parse_redis_value(b"-ERR no\r\n").unwrap();
        assert!(
            replies(vec![Value::Okay, Value::Int(0)])
                .finish_ok()
                .is_ok()
        );
        assert!(replies(vec![Value::Okay, e]).finish_ok().is_err());
    }

    #[test]
    fn miscounted_replies_are_errors() {
        // Reading past the last reply names the command index.
        let mut r = replies(vec![Value::Okay]);
        r.next_ok().unwrap();
        let (reason, key) = unexpected(r.next_int().unwrap_err());
        assert!(reason.contains("command 1 of 1"), "{reason}");
        assert_eq!(key.as_deref(), Some("k"));
        // Replies left unread.
        let mut r = replies(vec![Value::Okay, Value::Int(1), Value::Int(2)]);
        r.next_ok().unwrap();
        let (reason, _) = unexpected(r.finish().unwrap_err());
        assert!(reason.contains("2 replies left unread"), "{reason}");
        let mut r = replies(vec![Value::Okay]);
        assert!(r.skip(2).is_err());
    }

    #[test]
    fn replies_of_another_kind_are_errors() {
        let mut r = replies(vec![
            Value::Okay,
            Value::BulkString(vec![0; 1 << 20]),
            Value::Array(vec![Value::Nil]),
        ]);
        let (reason, _) = unexpected(r.next_int().unwrap_err());
        assert!(
            reason.starts_with("command 0 of 3: expected an integer, got OK"),
            "{reason}"
        );
        let (reason, _) = unexpected(r.next_array().unwrap_err());
        // A large value is described, not printed.
        assert!(reason.contains("a string of 1048576 bytes"), "{reason}");
        let (reason, _) = unexpected(r.next_array_of(2).unwrap_err());
        assert!(
            reason.contains("command 2 of 3: expected an array of 2"),
            "{reason}"
        );
        // A server error is a Redis error with the key.
        let e = redis::parse_redis_value(b"-WRONGTYPE wrong kind\r\n").unwrap();
        let mut r = replies(vec![e]);
        match r.next_bytes().unwrap_err() {
            Error::Redis { key, .. } => assert_eq!(key.as_deref(), Some("k")),
            other => panic!("{other:?}"),
        }
    }
}
