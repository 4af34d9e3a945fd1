//! The reused read buffer replies are parsed from.

use redis::RedisResult;

use super::protocol_error;

/// Size of the reused read buffer.
pub(crate) const READ_BUF_SIZE: usize = 128 * 1024;

/// Fixed-size, reused read buffer. Live data is `buf[start..end]`.
pub(crate) struct ReadBuffer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for ReadBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuffer")
            .field("capacity", &self.buf.len())
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self::with_capacity(READ_BUF_SIZE)
    }
}

impl ReadBuffer {
    /// A buffer of `cap` bytes (allocated and zeroed once).
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            buf: vec![0u8; cap].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The buffered, unconsumed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, compacting first if needed. Errors if the
    /// buffer is completely full of unconsumed data (cannot happen with the
    /// parser's limits, kept as a defensive check).
    pub(crate) fn spare_mut(&mut self) -> RedisResult<&mut [u8]> {
        let cap = self.buf.len();
        if self.start > 0 && cap - self.end < cap / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == cap {
            return Err(protocol_error("read buffer full without a complete frame"));
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Records that `n` bytes were written into [`spare_mut`](Self::spare_mut).
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }
}
