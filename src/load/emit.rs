//! Writing the commands of a load as a RESP file for `redis-cli --pipe` instead of
//! sending them.

use std::io::Write;

use super::mapping::Atomicity;
use super::source::Source;
use super::{LoadReport, Loader};
use crate::error::Result;
use crate::resp::Packed;

impl Loader {
    /// Write the commands `source` maps to as RESP to `out` (what `redis-cli --pipe`
    /// reads) instead of sending them. The Lua mode writes `EVAL` (a fresh server has
    /// no script to `EVALSHA`); the MULTI mode wraps each record in `MULTI`/`EXEC`.
    /// The report counts `emitted` records.
    ///
    /// ```
    /// use redstash::load::{IterSource, KeyTemplate, Loader, Mapping, Position, Record, Value};
    /// let records = (0..2).map(|i| Record::new(Position::default(), [("id", Value::Int(i))]));
    /// let mut out = Vec::new();
    /// let report = Loader::new(Mapping::new(KeyTemplate::parse("item:{id}")?))
    ///     .emit_resp(&mut IterSource::new(records, "ids"), &mut out)?;
    /// assert_eq!(report.emitted, 2);
    /// assert!(out.starts_with(b"*3\r\n$3\r\nSET\r\n$6\r\nitem:0\r\n$8\r\n{\"id\":0}\r\n"));
    /// # Ok::<(), redstash::Error>(())
    /// ```
    pub fn emit_resp(&self, source: &mut dyn Source, out: &mut dyn Write) -> Result<LoadReport> {
        let (mut tally, first_seq) = match self.start(source, true)? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        let atomicity = self.mapping.atomicity();
        let mut batcher = self.batcher(source, first_seq);
        let mut ended = false;
        let mut last = std::time::Instant::now();
        let mut buf = Vec::new();
        while !tally.stop {
            let Some(mut p) = batcher.next()? else {
                ended = true;
                break;
            };
            if let Some(b) = p.batch.take() {
                let bytes = b.packed.as_bytes();
                match atomicity {
                    Atomicity::None => out.write_all(bytes)?,
                    Atomicity::Multi => {
                        buf.clear();
                        for slot in &b.slots {
                            buf.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
                            buf.extend_from_slice(&bytes[slot.range.clone()]);
                            buf.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
                        }
                        out.write_all(&buf)?;
                    }
                    Atomicity::Lua => {
                        let mut p = Packed::with_capacity(bytes.len() + b.slots.len() * 256);
                        for slot in &b.slots {
                            super::round::push_as_eval(&mut p, &bytes[slot.range.clone()]);
                        }
                        out.write_all(p.as_bytes())?;
                    }
                }
                tally.report.emitted += b.slots.len() as u64;
                tally.report.commands += b.slots.iter().map(|s| s.commands as u64).sum::<u64>();
                tally.report.bytes += bytes.len() as u64;
            }
            tally.produced(&p, false);
            self.report_progress(&tally, &batcher, &mut last, false);
            if p.ended {
                ended = true;
                break;
            }
        }
        out.flush()?;
        self.report_progress(&tally, &batcher, &mut last, true);
        tally.finish(ended)
    }
}
