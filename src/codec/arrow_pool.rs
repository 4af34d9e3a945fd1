//! Memory for decoded Arrow record batches (feature `arrow`).
//!
//! A compressed record batch is decompressed into one block of memory, which all its
//! columns share. When the last array using a block is dropped, the block goes back to a
//! small process-wide pool instead of to the allocator, so the next read decompresses
//! into memory that is already mapped: on Linux, fresh memory costs a page fault and a
//! page clear per 4 KiB, which measured about a third of the CPU time of reading a
//! zstd table (see `benches/tables.rs`).
//!
//! The pool keeps at most [`retain_decoded_memory`] bytes (default 512 MiB) of blocks
//! nobody uses; [`release_decoded_memory`] frees them at once.
//!
//! ```
//! // A service that reads big tables now and then, and wants its memory back between
//! // reads, keeps nothing:
//! redstash::codec::arrow::retain_decoded_memory(0);
//! assert_eq!(redstash::codec::arrow::release_decoded_memory(), 0);
//! ```

use std::sync::Mutex;

/// Blocks are rounded up to this, so batches of about the same size share blocks.
const GRAIN: usize = 64 << 10;

/// The default of [`retain_decoded_memory`].
pub const DEFAULT_RETAINED: usize = 512 << 20;

struct Pool {
    free: Vec<Vec<u8>>,
    retained: usize,
    limit: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    retained: 0,
    limit: DEFAULT_RETAINED,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // The pool holds plain memory: a panic while it was locked cannot leave it
    // inconsistent in a way that matters (at worst a block is lost).
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keep up to `bytes` of memory freed by dropped decoded batches for the next decode
/// (default [`DEFAULT_RETAINED`], 512 MiB); blocks over the new limit are freed now.
///
/// Memory a decoded table holds is freed (or kept here) when the table's last array is
/// dropped. A process that reads tables again and again (training epochs, a serving
/// cache) reads faster with a limit at least the size of a decoded table; one that
/// wants its memory back between reads sets `0`.
pub fn retain_decoded_memory(bytes: usize) {
    let mut p = pool();
    p.limit = bytes;
    while p.retained > p.limit {
        match p.free.pop() {
            Some(b) => p.retained -= b.len(),
            None => break,
        }
    }
}

/// Free the memory kept for the next decode now; returns how many bytes that was.
pub fn release_decoded_memory() -> usize {
    let mut p = pool();
    let n = p.retained;
    p.free.clear();
    p.retained = 0;
    n
}

/// A block of at least `len` initialized bytes: from the pool when one of about that
/// size is free, else newly allocated (zeroed).
pub(crate) fn take(len: usize) -> Block {
    let want = len.div_ceil(GRAIN).max(1) * GRAIN;
    let reused = {
        let mut p = pool();
        // The smallest free block that fits and wastes at most half of itself.
        let best = p
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= want && b.len() <= want * 2)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        best.map(|i| {
            let b = p.free.swap_remove(i);
            p.retained -= b.len();
            b
        })
    };
    Block {
        data: reused.unwrap_or_else(|| vec![0u8; want]),
        len,
    }
}

/// Memory for one decoded batch: `data[..len]` is what the batch uses; back to the pool
/// on drop.
pub(crate) struct Block {
    data: Vec<u8>,
    len: usize,
}

impl Block {
    /// The bytes the batch uses, to fill.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// An Arrow buffer over the block (no copy); the block goes back to the pool when
    /// the last array sliced from it is dropped.
    pub(crate) fn into_buffer(self) -> arrow_buffer::Buffer {
        arrow_buffer::Buffer::from(bytes::Bytes::from_owner(self))
    }
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        let mut p = pool();
        if !data.is_empty() && p.retained + data.len() <= p.limit {
            p.retained += data.len();
            p.free.push(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test touches the global pool, so the others cannot race with it.
    #[test]
    fn blocks_are_reused_within_the_limit_and_released() {
        retain_decoded_memory(DEFAULT_RETAINED);
        release_decoded_memory();
        // A size no other test decodes, so a parallel test cannot take the block.
        let mut a = take(5_000_000);
        assert_eq!(a.as_mut_slice().len(), 5_000_000);
        a.as_mut_slice().fill(7);
        let ptr = a.as_ref().as_ptr();
        let buffer = a.into_buffer();
        assert_eq!(buffer.len(), 5_000_000);
        assert_eq!(buffer.as_ptr(), ptr, "the buffer is the block, not a copy");
        let slice = buffer.slice(64);
        drop(buffer);
        assert_eq!(release_decoded_memory(), 0, "a slice still holds the block");
        drop(slice);
        // Back in the pool, then handed out again for a batch of about that size.
        let b = take(4_900_000);
        assert_eq!(b.as_ref().as_ptr(), ptr);
        assert_eq!(
            b.as_ref()[0],
            7,
            "reused blocks are not cleared (only filled)"
        );
        drop(b);
        // Too small a block is not used for a bigger batch, nor a much bigger one for a
        // small batch.
        assert_ne!(take(12_000_000).as_ref().as_ptr(), ptr);
        assert_ne!(take(1_000_000).as_ref().as_ptr(), ptr);
        assert!(release_decoded_memory() >= 12_000_000 + 5_000_000 + 1_000_000);
        // A limit of 0 keeps nothing.
        retain_decoded_memory(0);
        drop(take(10));
        assert_eq!(release_decoded_memory(), 0);
        retain_decoded_memory(DEFAULT_RETAINED);
    }
}
