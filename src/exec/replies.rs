//! Reading single replies: bytes, OK, integers, with the key in errors.

use redis::Value;

use crate::error::{Error, Result};

/// Take a reply as bytes; `Nil` is `None`; a server error becomes [`Error::Redis`].
pub(crate) fn reply_bytes(v: Value, key: &str) -> Result<Option<bytes::Bytes>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(crate::buffers::into_bytes(b))),
        Value::ServerError(e) => Err(Error::redis(e.into(), Some(key))),
        other => Err(Error::unexpected(
            format!("expected a string value, got {other:?}"),
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

/// Check that no reply is an error (the first error becomes [`Error::Redis`]).
pub(crate) fn replies_ok(replies: Vec<Value>, key: &str) -> Result<()> {
    for v in replies {
        reply_ok(v, key)?;
    }
    Ok(())
}

/// Take an integer reply.
pub(crate) fn reply_int(v: Value, key: &str) -> Result<i64> {
    match reply_ok(v, key)? {
        Value::Int(i) => Ok(i),
        other => Err(Error::unexpected(
            format!("expected an integer, got {other:?}"),
            Some(key.to_owned()),
        )),
    }
}
