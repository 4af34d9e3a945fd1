//! A small process-wide pool of large byte buffers.
//!
//! Fresh multi-megabyte allocations are expensive: the allocator maps new pages for them
//! and the kernel zero-fills every page on first touch (about half the cost of a 64 MB
//! GET here, and about a third of the CPU time of reading a zstd Arrow table). Values
//! read from Redis are handed out as `bytes::Bytes` whose buffer goes back to this pool
//! when the last `Bytes` (and every `RawArray` sliced from it) is dropped, the direct
//! connections read large replies into pooled buffers, and compressed Arrow record
//! batches are decompressed into pooled blocks (feature `arrow`; a block goes back when
//! the batch's last array is dropped). A loop that gets and drops large arrays or tables
//! therefore reuses warm memory, like a hand-written client reading into one reused
//! buffer.
//!
//! Only buffers of at least [`MIN_POOLED`] bytes are pooled, and the pool keeps at most
//! [`pool_limit`] bytes (default 512 MiB) of idle buffers; set it to 0 to disable it (and
//! to free what it holds).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

/// Buffers smaller than this are left to the allocator.
pub const MIN_POOLED: usize = 1 << 20;

/// The default of [`pool_limit`].
pub const DEFAULT_POOL_LIMIT: usize = 512 << 20;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_POOL_LIMIT);
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Set the most bytes of idle buffers the pool keeps (0 disables pooling).
///
/// ```
/// redstash::buffers::set_pool_limit(64 << 20);
/// assert_eq!(redstash::buffers::pool_limit(), 64 << 20);
/// # redstash::buffers::set_pool_limit(redstash::buffers::DEFAULT_POOL_LIMIT);
/// ```
pub fn set_pool_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let mut total = 0;
    pool.retain(|b| {
        total += b.capacity();
        total <= bytes
    });
}

/// The most bytes of idle buffers the pool keeps.
pub fn pool_limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// A pooled buffer with capacity for `len` bytes (not more than twice as large), if
/// the pool holds one; its length is whatever it was filled to.
fn pooled(len: usize) -> Option<Vec<u8>> {
    if len < MIN_POOLED {
        return None;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool
        .iter()
        .position(|b| b.capacity() >= len && b.capacity() / 2 <= len)?;
    Some(pool.swap_remove(i))
}

/// An empty buffer with capacity for at least `len` bytes: a pooled one when a pooled
/// buffer fits (not more than twice as large), else a new one.
pub fn take(len: usize) -> Vec<u8> {
    match pooled(len) {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(len),
    }
}

/// An idle pooled buffer with capacity for `len` bytes (not more than twice as large),
/// emptied, or `None` (nothing is allocated).
pub(crate) fn take_idle(len: usize) -> Option<Vec<u8>> {
    let mut b = pooled(len)?;
    b.clear();
    Some(b)
}

/// A buffer of exactly `len` initialized bytes, for the caller to overwrite: a pooled
/// one when one fits (its stale contents kept where they cover `len`, the rest zeroed),
/// else a new zeroed one.
#[cfg(feature = "arrow")]
pub(crate) fn take_filled(len: usize) -> Vec<u8> {
    match pooled(len) {
        Some(mut b) if b.len() >= len => {
            b.truncate(len);
            b
        }
        Some(mut b) => {
            b.resize(len, 0);
            b
        }
        None => vec![0; len],
    }
}

/// Hand a buffer back to the pool (kept only if it is large enough and fits the limit).
pub(crate) fn give(buf: Vec<u8>) {
    let limit = pool_limit();
    if buf.capacity() < MIN_POOLED || buf.capacity() > limit {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let mut total: usize = pool.iter().map(Vec::capacity).sum::<usize>() + buf.capacity();
    // Make room by dropping the oldest idle buffers.
    while total > limit && !pool.is_empty() {
        total -= pool.remove(0).capacity();
    }
    pool.push(buf);
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// Turn a buffer into `Bytes` without copying; large buffers return to the pool when
/// the last `Bytes` referencing them is dropped.
pub fn into_bytes(buf: Vec<u8>) -> Bytes {
    if buf.capacity() >= MIN_POOLED && pool_limit() > 0 {
        Bytes::from_owner(Pooled(buf))
    } else {
        Bytes::from(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back() {
        let mut v = take(3 << 20);
        v.extend_from_slice(&[1u8; 3 << 20]);
        let ptr = v.as_ptr();
        let b = into_bytes(v);
        let slice = b.slice(10..20);
        drop(b);
        assert_eq!(&slice[..], &[1u8; 10]);
        drop(slice);
        let again = take(3 << 20);
        assert!(again.is_empty());
        // Another test may have taken it in between; only check when we got it back.
        if again.as_ptr() == ptr {
            assert!(again.capacity() >= 3 << 20);
        }
        assert!(take(10).capacity() >= 10);
    }

    #[cfg(feature = "arrow")]
    #[test]
    fn filled_buffers_are_initialized_and_come_back() {
        // A size no other test uses, so a parallel test cannot take the buffer.
        let mut v = take_filled(5_000_000);
        assert_eq!(v.len(), 5_000_000);
        assert!(v.iter().all(|&b| b == 0));
        v.fill(7);
        let ptr = v.as_ptr();
        drop(into_bytes(v));
        // Reused with its stale bytes (no clearing), or zero-extended when it was
        // filled less than asked.
        let again = take_filled(4_900_000);
        if again.as_ptr() == ptr {
            assert_eq!(again.len(), 4_900_000);
            assert!(again.iter().all(|&b| b == 7));
        }
        let mut short = take(6_000_000);
        short.extend_from_slice(&[9u8; 1_000]);
        let sp = short.as_ptr();
        give(short);
        let longer = take_filled(5_500_000);
        if longer.as_ptr() == sp {
            assert_eq!(&longer[..1_000], &[9u8; 1_000]);
            assert!(longer[1_000..].iter().all(|&b| b == 0));
        }
        assert_eq!(take_filled(10), vec![0u8; 10]);
    }
}
