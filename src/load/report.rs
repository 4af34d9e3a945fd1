//! What a load did: exact counts, the first errors, and progress while it runs.

use std::time::Duration;

use serde::Serialize;

use super::record::Position;
use crate::error::Error;

/// The most record errors a report lists (all are counted; a rejects file keeps all).
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Where a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The source could not read it (malformed CSV, a line that is not JSON).
    Read,
    /// The mapping could not make commands of it (a missing key field, a score that is
    /// not a number).
    Map,
    /// The server refused a command of it (`WRONGTYPE`, `OOM`, ...).
    Server,
}

/// One record that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordError {
    /// The record's ordinal in the source, from 0.
    pub record: u64,
    /// Its line (text sources), else 0.
    pub line: u64,
    /// Its key, when the mapping made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where it failed.
    pub stage: Stage,
    /// The reason (the server's error for [`Stage::Server`]).
    pub error: String,
}

impl RecordError {
    pub(crate) fn new(
        position: Position,
        key: Option<String>,
        stage: Stage,
        error: String,
    ) -> Self {
        RecordError {
            record: position.record,
            line: position.line,
            key,
            stage,
            error,
        }
    }

    /// The record's position.
    pub fn position(&self) -> Position {
        Position {
            record: self.record,
            line: self.line,
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.position())?;
        if let Some(k) = &self.key {
            write!(f, " (key {k:?})")?;
        }
        write!(f, ": {}", self.error)
    }
}

/// The outcome of a load. Every count is exact: `loaded` is what the server
/// acknowledged, never more.
///
/// `read = loaded + failed + skipped + unknown + not_sent + other_shards` (records read
/// by this run, after the checkpoint's position when it resumed).
#[derive(Debug, Default, Serialize)]
pub struct LoadReport {
    /// Records read from the source by this run.
    pub read: u64,
    /// Records whose every command the server acknowledged.
    pub loaded: u64,
    /// Records the server refused a command of (listed in `errors`).
    pub failed: u64,
    /// Records not sent because they could not be read or mapped (listed in `errors`).
    pub skipped: u64,
    /// Records sent whose replies never all came (the connection failed): they may or
    /// may not be stored. Only after a stop.
    pub unknown: u64,
    /// Records read but never sent (after a stop).
    pub not_sent: u64,
    /// Records left to the other loaders of a sharded load (`--shard I/N`).
    pub other_shards: u64,
    /// Records written to a RESP file instead of sent (`emit_resp`).
    pub emitted: u64,
    /// Records a checkpoint said were done before this run (0 for a fresh load).
    pub resumed_from: u64,
    /// Commands acknowledged (or written to a RESP file).
    pub commands: u64,
    /// Bytes of commands sent (RESP).
    pub bytes: u64,
    /// Wall time.
    pub elapsed_s: f64,
    /// Records loaded (or emitted) per second.
    pub rate: f64,
    /// The first [`MAX_REPORTED_ERRORS`] record errors.
    pub errors: Vec<RecordError>,
    /// Why the load stopped before the end of the source, if it did.
    pub stopped: Option<String>,
    /// Records of the source done (loaded, failed, skipped or another shard's) in order
    /// from its start: where a resume starts. `None` without a checkpoint.
    pub checkpoint: Option<u64>,
    /// The error that stopped the load.
    #[serde(skip)]
    pub stop_error: Option<Error>,
}

impl LoadReport {
    /// Whether every record read was loaded (or emitted, or left to another shard):
    /// no failure, no skip, no stop.
    pub fn is_complete(&self) -> bool {
        self.failed == 0 && self.skipped == 0 && self.stopped.is_none()
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// One line for people: counts, time and rate.
    pub fn summary(&self) -> String {
        let mut s = if self.emitted > 0 {
            format!(
                "emitted {} records ({} commands)",
                self.emitted, self.commands
            )
        } else {
            format!(
                "loaded {} records ({} commands)",
                self.loaded, self.commands
            )
        };
        s.push_str(&format!(
            " in {:.2}s ({:.0}/s); failed {}, skipped {}",
            self.elapsed_s, self.rate, self.failed, self.skipped
        ));
        if self.other_shards > 0 {
            s.push_str(&format!(", other shards {}", self.other_shards));
        }
        if self.unknown > 0 || self.not_sent > 0 {
            s.push_str(&format!(
                ", unknown {}, not sent {}",
                self.unknown, self.not_sent
            ));
        }
        if self.resumed_from > 0 {
            s.push_str(&format!("; resumed after record {}", self.resumed_from));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!("; STOPPED: {why}"));
        }
        s
    }
}

/// Where a running load is (given to the progress callback a few times a second).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Records read so far.
    pub read: u64,
    /// Records loaded so far (acknowledged).
    pub loaded: u64,
    /// Records failed or skipped so far.
    pub errors: u64,
    /// Bytes of the input consumed.
    pub bytes_read: u64,
    /// The input's size, when known.
    pub bytes_total: Option<u64>,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Records read per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.read as f64 / s } else { 0.0 }
    }

    /// Fraction of the input consumed, when its size is known.
    pub fn fraction(&self) -> Option<f64> {
        self.bytes_total
            .filter(|&t| t > 0)
            .map(|t| (self.bytes_read as f64 / t as f64).min(1.0))
    }

    /// Time left at the rate so far, when the input's size is known.
    pub fn eta(&self) -> Option<Duration> {
        let f = self.fraction()?;
        if f <= 0.0 {
            return None;
        }
        let total = self.elapsed.as_secs_f64() / f;
        Some(Duration::from_secs_f64(
            (total - self.elapsed.as_secs_f64()).max(0.0),
        ))
    }
}
