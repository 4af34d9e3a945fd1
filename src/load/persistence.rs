//! Persistence off during a load: `CONFIG SET save ""` (no RDB snapshots) and
//! `CONFIG SET appendonly no` (no AOF) while loading, the previous values restored
//! exactly afterwards, on every exit path: [`PersistenceGuard::restore`] at the end,
//! and the guard's `Drop` after an error, a panic or a cancelled load.
//!
//! Mind what this means:
//! - until the values are restored, a crash of the server loses everything written
//!   since its last snapshot, the load included;
//! - restoring `appendonly yes` after `no` makes the server rewrite its AOF from the
//!   whole dataset (a `BGREWRITEAOF`, a fork) right after the load: memory and disk
//!   I/O for a while;
//! - a server that refuses `CONFIG` (an ACL without `+config`, a managed Redis that
//!   renames or disables it) is left as it is: [`PersistenceGuard::skipped`] says why.
//! - on a Redis Cluster, only the node `con` is connected to is changed.

use redis::Value;
use serde::Serialize;

use super::estimate::pipeline;
use crate::error::{Error, Result};
use crate::exec::SyncConnection;

/// The persistence settings a guard saved and restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedPersistence {
    /// `save` (the RDB snapshot schedule; empty: none).
    pub save: String,
    /// `appendonly` (`yes` or `no`).
    pub appendonly: String,
}

/// Persistence turned off on a server ([`turn_off`](Self::turn_off): `CONFIG SET save ""`
/// and `CONFIG SET appendonly no`) until [`restore`](Self::restore) or drop, which set
/// the previous values again exactly.
///
/// Until then a crash of the server loses everything written since its last snapshot;
/// restoring `appendonly yes` makes the server rewrite its AOF from the whole dataset
/// (a `BGREWRITEAOF`: a fork, memory and disk I/O) right after the load. A server that
/// refuses `CONFIG` (an ACL, a managed Redis that renames it) is left as it is
/// ([`skipped`](Self::skipped) says why). On a Redis Cluster only the node `con` is
/// connected to is changed.
pub struct PersistenceGuard<C: SyncConnection> {
    con: C,
    saved: Option<SavedPersistence>,
    skipped: Option<String>,
}

impl<C: SyncConnection> std::fmt::Debug for PersistenceGuard<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistenceGuard")
            .field("saved", &self.saved)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// A server error reply as text, `None` for any other reply.
fn refusal(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(format!("{e:?}")),
        _ => None,
    }
}

/// The value of a one-parameter `CONFIG GET` reply (`[name, value]`, or a map).
fn config_value(name: &str, v: &Value) -> Result<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let found = match v {
        Value::Array(a) if a.len() == 2 => text(&a[1]),
        Value::Map(m) if m.len() == 1 => text(&m[0].1),
        _ => None,
    };
    found.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "CONFIG GET {name}: expected one name and its value, got {v:?}"
        ))
    })
}

fn config_set(name: &str, value: &str) -> redis::Cmd {
    let mut c = redis::cmd("CONFIG");
    c.arg("SET").arg(name).arg(value);
    c
}

impl<C: SyncConnection> PersistenceGuard<C> {
    /// Read `save` and `appendonly`, then turn both off. When the server refuses
    /// `CONFIG` the guard does nothing ([`skipped`](Self::skipped) says why); a
    /// connection failure is an error. When turning off fails half-way, what was
    /// changed is restored before the error is returned.
    pub fn turn_off(mut con: C) -> Result<Self> {
        let get = |name: &str| {
            let mut c = redis::cmd("CONFIG");
            c.arg("GET").arg(name);
            c
        };
        let replies = pipeline(&mut con, vec![get("save"), get("appendonly")])?;
        if let Some(why) = replies.iter().find_map(refusal) {
            return Ok(PersistenceGuard {
                con,
                saved: None,
                skipped: Some(format!("the server refuses CONFIG GET: {why}")),
            });
        }
        let saved = SavedPersistence {
            save: config_value("save", &replies[0])?,
            appendonly: config_value("appendonly", &replies[1])?,
        };
        let mut guard = PersistenceGuard {
            con,
            saved: Some(saved),
            skipped: None,
        };
        let set = pipeline(
            &mut guard.con,
            vec![config_set("save", ""), config_set("appendonly", "no")],
        );
        let refused = match &set {
            Ok(r) => r.iter().find_map(refusal),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = refused {
            // Put back whatever was changed.
            let restored = guard.restore_now();
            let skipped = format!("the server refuses CONFIG SET: {why}");
            return match (set, restored) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e),
                (Ok(_), Ok(())) => {
                    guard.skipped = Some(skipped);
                    Ok(guard)
                }
            };
        }
        Ok(guard)
    }

    /// The settings saved (and to be restored), `None` when skipped.
    pub fn saved(&self) -> Option<&SavedPersistence> {
        self.saved.as_ref()
    }

    /// Why persistence was left on (the server refused `CONFIG`), if it was.
    pub fn skipped(&self) -> Option<&str> {
        self.skipped.as_deref()
    }

    /// The connection (to send other commands on while the guard holds it).
    pub fn connection(&mut self) -> &mut C {
        &mut self.con
    }

    /// Restore the saved settings now; after this the guard's drop does nothing.
    pub fn restore(mut self) -> Result<()> {
        self.restore_now()
    }

    fn restore_now(&mut self) -> Result<()> {
        let Some(saved) = self.saved.take() else {
            return Ok(());
        };
        let replies = pipeline(
            &mut self.con,
            vec![
                config_set("save", &saved.save),
                config_set("appendonly", &saved.appendonly),
            ],
        );
        let refused = match &replies {
            Ok(r) => r.iter().find_map(refusal),
            Err(_) => None,
        };
        match (replies, refused) {
            (Err(e), _) => {
                self.saved = Some(saved);
                Err(e)
            }
            (Ok(_), Some(why)) => {
                let msg = format!(
                    "restoring save {:?} appendonly {:?}: {why}",
                    saved.save, saved.appendonly
                );
                self.saved = Some(saved);
                Err(Error::InvalidArgument(msg))
            }
            (Ok(_), None) => Ok(()),
        }
    }
}

impl<C: SyncConnection> Drop for PersistenceGuard<C> {
    /// Restore the saved settings if [`restore`](Self::restore) was not called (after
    /// an error or a panic): best effort, an error is lost (call `restore` to see it).
    fn drop(&mut self) {
        let _ = self.restore_now();
    }
}
