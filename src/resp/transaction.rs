//! The one check of a `MULTI`/`EXEC` transaction's replies: every connection kind (and
//! every bulk write that reads a transaction's replies itself) unwraps them here, so the
//! same event gives the same error everywhere.

use redis::{ErrorKind, RedisError, Value};

use super::protocol_error;
use crate::error::Error;

/// Raw replies a batch of `commands` commands gets on the wire: one per command, and for
/// a transaction also `MULTI`'s and `EXEC`'s (one `QUEUED` per command in between).
pub(crate) fn expected_replies(commands: usize, atomic: bool) -> usize {
    if atomic { commands + 2 } else { commands }
}

/// The error of a transaction that `EXEC` answered with nil: a `WATCH`ed key was
/// modified, so nothing ran. A Redis error of kind `Server(ExecAbort)`, as when the
/// server aborts the transaction itself.
pub(crate) fn exec_abort_error() -> RedisError {
    match redis::parse_redis_value(
        b"-EXECABORT Transaction aborted: EXEC returned nil (a WATCHed key was modified)\r\n",
    ) {
        Ok(Value::ServerError(e)) => e.into(),
        _ => RedisError::from((ErrorKind::Client, "transaction aborted")),
    }
}

/// Why a transaction did not run (none of its commands did), or a reply to `EXEC` that
/// says nothing of what ran.
#[derive(Debug)]
pub(crate) enum Aborted {
    /// `MULTI` itself was refused.
    Multi(RedisError),
    /// Command `index` of the transaction was refused while it was queued (an unknown
    /// command, `OOM`, `NOPERM`...), so the server discarded the transaction.
    Queued {
        /// The command's position in the transaction (for a bulk write to name the
        /// item it belongs to; read by the feature store's bulk writes).
        #[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
        index: usize,
        /// Its error.
        error: RedisError,
    },
    /// `EXEC` replied an error.
    Exec(RedisError),
    /// `EXEC` replied nil: a `WATCH`ed key was modified.
    Watch,
    /// `EXEC` replied something that is not a transaction's reply: what ran is not known.
    Malformed(Value),
}

impl Aborted {
    /// As a redis-rs error: the server's error, [`exec_abort_error`] for a `WATCH`
    /// abort, a protocol error for a malformed reply.
    pub(crate) fn into_redis_error(self) -> RedisError {
        match self {
            Aborted::Multi(e) | Aborted::Queued { error: e, .. } | Aborted::Exec(e) => e,
            Aborted::Watch => exec_abort_error(),
            Aborted::Malformed(v) => protocol_error(format!("unexpected EXEC reply {v:?}")),
        }
    }

    /// As redstash's error about `key`: an [`Error::Redis`] (of redis-rs kind
    /// `Server(ExecAbort)` for a `WATCH` abort), or [`Error::UnexpectedReply`] for a
    /// malformed `EXEC` reply (whose outcome is not known).
    pub(crate) fn into_error(self, key: Option<&str>) -> Error {
        match self {
            Aborted::Malformed(v) => {
                Error::unexpected(format!("EXEC replied {v:?}"), key.map(str::to_owned))
            }
            other => Error::redis(other.into_redis_error(), key),
        }
    }
}

/// The replies of the commands of a transaction, from its replies as they came: `MULTI`'s,
/// one per queued command, then `EXEC`'s (what a direct connection reads); or `EXEC`'s
/// alone (what redis-rs's connections return: they check the queuing replies
/// themselves). The number of replies is left for the caller to check.
pub(crate) fn transaction_replies(mut raw: Vec<Value>) -> Result<Vec<Value>, Aborted> {
    let exec = raw.pop().unwrap_or(Value::Nil);
    let mut before = raw.into_iter();
    if let Some(Value::ServerError(e)) = before.next() {
        return Err(Aborted::Multi(e.into()));
    }
    match exec {
        Value::Array(items) => Ok(items),
        Value::Nil => Err(Aborted::Watch),
        // EXECABORT: the transaction was refused because a command was refused while
        // queuing: report that command's own error.
        Value::ServerError(e) => Err(before
            .enumerate()
            .find_map(|(index, v)| match v {
                Value::ServerError(q) => Some(Aborted::Queued {
                    index,
                    error: q.into(),
                }),
                _ => None,
            })
            .unwrap_or_else(|| Aborted::Exec(e.into()))),
        other => Err(Aborted::Malformed(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RedisErrorKind;
    use crate::resp::server_error_value;

    fn queued() -> Value {
        Value::SimpleString("QUEUED".into())
    }

    #[test]
    fn unwraps_exec_and_names_the_refused_command() {
        let ok = vec![
            Value::Okay,
            queued(),
            queued(),
            Value::Array(vec![Value::Okay, Value::Int(3)]),
        ];
        assert_eq!(
            transaction_replies(ok).unwrap(),
            vec![Value::Okay, Value::Int(3)]
        );
        // EXEC's reply alone, as redis-rs returns it.
        assert_eq!(
            transaction_replies(vec![Value::Array(vec![Value::Int(1)])]).unwrap(),
            vec![Value::Int(1)]
        );
        let refused = vec![
            Value::Okay,
            queued(),
            server_error_value(b"OOM command not allowed"),
            server_error_value(b"EXECABORT Transaction discarded because of previous errors."),
        ];
        match transaction_replies(refused) {
            Err(Aborted::Queued { index: 1, error }) => assert_eq!(error.code(), Some("OOM")),
            other => panic!("{other:?}"),
        }
        let multi = vec![
            server_error_value(b"ERR MULTI calls can not be nested"),
            queued(),
        ];
        assert!(matches!(transaction_replies(multi), Err(Aborted::Multi(_))));
        let exec = vec![Value::Okay, server_error_value(b"EXECABORT no reason")];
        assert!(matches!(transaction_replies(exec), Err(Aborted::Exec(_))));
        assert!(matches!(
            transaction_replies(vec![Value::Okay, Value::Int(1)]),
            Err(Aborted::Malformed(Value::Int(1)))
        ));
    }

    /// A `WATCH` abort is the same error from the wire form and from `EXEC`'s reply
    /// alone: a Redis error of kind `Server(ExecAbort)`, refused (not a lost connection).
    #[test]
    fn a_watch_abort_is_one_error() {
        for raw in [vec![Value::Okay, queued(), Value::Nil], vec![Value::Nil]] {
            let e = transaction_replies(raw).unwrap_err();
            assert!(matches!(e, Aborted::Watch));
            let e = e.into_error(Some("k"));
            match &e {
                Error::Redis { kind, key, source } => {
                    assert_eq!(*kind, RedisErrorKind::Other);
                    assert_eq!(key.as_deref(), Some("k"));
                    assert_eq!(
                        source.kind(),
                        ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
                    );
                }
                other => panic!("{other:?}"),
            }
            assert!(e.with_causes().contains("WATCHed key was modified"), "{e}");
        }
        assert!(matches!(
            Aborted::Malformed(Value::Okay).into_error(None),
            Error::UnexpectedReply { .. }
        ));
        assert_eq!(
            Aborted::Malformed(Value::Okay).into_redis_error().kind(),
            ErrorKind::Parse
        );
    }
}
