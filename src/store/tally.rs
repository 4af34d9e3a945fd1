//! The outcome of a bulk write, item by item: written (acknowledged), refused (an error
//! reply), unknown (sent, never answered) or not sent; what
//! [`Error::PartialWrite`] reports when not every item was written.

use crate::error::{Error, Result};

/// Collects what became of each item of a bulk write.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    written: Vec<usize>,
    refused: Vec<usize>,
    unknown: Vec<usize>,
    not_sent: Vec<usize>,
    /// The first item's refusal.
    refusal: Option<Error>,
    /// An error that concerns no item's storage (e.g. the chunks of a replaced array
    /// could not be listed or deleted): the write is reported as failed with it.
    other: Option<Error>,
}

impl Tally {
    pub(crate) fn written(&mut self, item: usize) {
        self.written.push(item);
    }

    pub(crate) fn refused(&mut self, item: usize, e: Error) {
        self.refused.push(item);
        self.refusal.get_or_insert(e);
    }

    /// An error beside the items' outcomes (see `other`).
    pub(crate) fn also_failed(&mut self, e: Error) {
        self.other.get_or_insert(e);
    }

    pub(crate) fn unknown(&mut self, item: usize) {
        self.unknown.push(item);
    }

    pub(crate) fn not_sent(&mut self, item: usize) {
        self.not_sent.push(item);
    }

    /// Whether every item recorded so far was written.
    pub(crate) fn all_written(&self) -> bool {
        self.refused.is_empty() && self.unknown.is_empty() && self.not_sent.is_empty()
    }

    /// `Ok` with the number written when every item was; the error itself when no item
    /// was sent (nothing was stored); else the [`Error::PartialWrite`], whose `source` is
    /// `failure` (what cut the write short) or the first refusal.
    pub(crate) fn finish(self, failure: Option<Error>) -> Result<usize> {
        if self.all_written() && failure.is_none() && self.other.is_none() {
            return Ok(self.written.len());
        }
        let mut t = self;
        if t.written.is_empty()
            && t.refused.is_empty()
            && t.unknown.is_empty()
            && let Some(e) = failure
        {
            return Err(e);
        }
        for v in [
            &mut t.written,
            &mut t.refused,
            &mut t.unknown,
            &mut t.not_sent,
        ] {
            v.sort_unstable();
        }
        let source = failure
            .or(t.refusal)
            .or(t.other)
            .unwrap_or_else(|| Error::unexpected("bulk write incomplete without an error", None));
        Err(Error::PartialWrite {
            written: t.written,
            refused: t.refused,
            unknown: t.unknown,
            not_sent: t.not_sent,
            source: Box::new(source),
        })
    }
}
