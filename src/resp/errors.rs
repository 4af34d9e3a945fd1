//! Errors of the wire: a peer that breaks the protocol, a stream cut in the middle of a
//! reply, and server error lines as redis-rs classifies them.

use redis::{ErrorKind, RedisError, Value};

/// A protocol violation by the peer (the stream cannot be trusted any more).
pub(crate) fn protocol_error(detail: impl Into<String>) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "RESP protocol error on direct connection",
        detail.into(),
    ))
}

/// Error for a socket that reached EOF in the middle of a reply.
pub(crate) fn eof_error() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed by server in the middle of a reply",
    ))
}

/// Builds a `Value::ServerError` from an error line (the bytes after `-`,
/// without the CRLF), going through redis-rs's own parser so that the error
/// kinds are classified exactly as redis-rs does.
pub(crate) fn server_error_value(line: &[u8]) -> Value {
    let mut raw = Vec::with_capacity(line.len() + 3);
    raw.push(b'-');
    match std::str::from_utf8(line) {
        Ok(_) => raw.extend_from_slice(line),
        Err(_) => raw.extend_from_slice(String::from_utf8_lossy(line).as_bytes()),
    }
    raw.extend_from_slice(b"\r\n");
    match redis::parse_redis_value(&raw) {
        Ok(v @ Value::ServerError(_)) => v,
        // Should not happen: fall back to a generic ERR.
        _ => match redis::parse_redis_value(b"-ERR unparseable server error\r\n") {
            Ok(v) => v,
            Err(_) => Value::Nil,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_kinds_match_redis_rs() {
        let v = server_error_value(
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
        );
        let Value::ServerError(e) = v else {
            panic!("not a server error")
        };
        assert_eq!(e.code(), "WRONGTYPE");
        let err: RedisError = e.into();
        assert!(err.to_string().contains("WRONGTYPE"));
        assert_eq!(
            crate::resp::transaction::exec_abort_error().kind(),
            ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
        );
    }
}
