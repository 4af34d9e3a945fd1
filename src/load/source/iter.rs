//! Any Rust iterator of records as a source.

use super::{Read, ResumePoint, Source};
use crate::error::Result;
use crate::load::record::{Position, Record};

/// A source from an iterator of records (their positions are set to their ordinals).
///
/// ```
/// use redstash::load::{IterSource, Position, Record, Value};
/// let records = (0..3).map(|i| Record::new(Position::default(), [("id", Value::Int(i))]));
/// let src = IterSource::new(records, "generated ids");
/// # let _ = src;
/// ```
pub struct IterSource<I> {
    iter: I,
    records: u64,
    identity: String,
}

impl<I: Iterator<Item = Record>> IterSource<I> {
    /// Records from `iter`; `identity` names them in a checkpoint.
    pub fn new(iter: I, identity: impl Into<String>) -> Self {
        IterSource {
            iter,
            records: 0,
            identity: identity.into(),
        }
    }
}

impl<I: Iterator<Item = Record>> Source for IterSource<I> {
    fn next_record(&mut self, record: &mut Record) -> Result<Read> {
        match self.iter.next() {
            None => Ok(Read::End),
            Some(r) => {
                *record = r;
                record.position = Position {
                    record: self.records,
                    line: 0,
                };
                self.records += 1;
                Ok(Read::Record)
            }
        }
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            records: self.records,
            line: 0,
            offset: None,
        }
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}
