//! Ordered parallel work over several connections: chunks are produced (fetched, and
//! decoded or not) on one thread per connection, at most a window ahead of the consumer,
//! and consumed in chunk order on the calling thread. Memory stays bounded by the window
//! whatever the table's size.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::exec::SyncConnection;

/// The hand-over between the producing threads and the consumer.
struct Relay<T> {
    /// Produced chunks not yet consumed, by index.
    ready: BTreeMap<usize, Result<T>>,
    /// Chunks consumed so far: producers stay within the window ahead of it.
    consumed: usize,
    /// Set when the consumer is done or gives up: producers stop.
    stop: bool,
}

fn lock<T>(m: &Mutex<Relay<T>>) -> MutexGuard<'_, Relay<T>> {
    // A producer that panicked cannot leave the relay half-updated (one insert).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `produce(con, i)` for every chunk `i` in `0..chunks` on the connections (one
/// thread each, at most `window` chunks ahead of the consumer) and `consume(i, result)`
/// in chunk order on this thread. The first error (a producer's, delivered in its
/// turn, or the consumer's) stops everything and is returned.
pub(super) fn in_order<Con, T, P, C>(
    cons: &mut [Con],
    chunks: usize,
    window: usize,
    produce: P,
    mut consume: C,
) -> Result<()>
where
    Con: SyncConnection + Send,
    T: Send,
    P: Fn(&mut Con, usize) -> Result<T> + Sync,
    C: FnMut(usize, T) -> Result<()>,
{
    if cons.is_empty() {
        return Err(Error::InvalidArgument("no connection to read on".into()));
    }
    let window = window.max(1);
    let relay = Mutex::new(Relay {
        ready: BTreeMap::new(),
        consumed: 0,
        stop: false,
    });
    let moved = Condvar::new();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let producers: Vec<_> = cons
            .iter_mut()
            .map(|con| {
                let (relay, moved, next, produce) = (&relay, &moved, &next, &produce);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= chunks {
                            return;
                        }
                        {
                            let mut r = lock(relay);
                            while !r.stop && i >= r.consumed + window {
                                r = moved.wait(r).unwrap_or_else(|p| p.into_inner());
                            }
                            if r.stop {
                                return;
                            }
                        }
                        // A panic becomes this chunk's error, so the consumer never
                        // waits for a chunk that will not come.
                        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            produce(con, i)
                        }))
                        .unwrap_or_else(|_| Err(Error::panicked(format!("reading chunk {i}"))));
                        lock(relay).ready.insert(i, got);
                        moved.notify_all();
                    }
                })
            })
            .collect();
        let mut run = || -> Result<()> {
            for i in 0..chunks {
                let got = {
                    let mut r = lock(&relay);
                    loop {
                        if let Some(c) = r.ready.remove(&i) {
                            r.consumed = i + 1;
                            break c;
                        }
                        r = moved.wait(r).unwrap_or_else(|p| p.into_inner());
                    }
                };
                moved.notify_all();
                consume(i, got?)?;
            }
            Ok(())
        };
        let result = run();
        lock(&relay).stop = true;
        moved.notify_all();
        for p in producers {
            let _ = p.join();
        }
        result
    })
}
