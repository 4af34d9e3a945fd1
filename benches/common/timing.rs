//! A plain median-of-runs timer, for the summary tables the benches print after
//! criterion (criterion's own estimates are not easily read back in-process).

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Whether the binary was started by `cargo bench` (and not `cargo test --benches`,
/// which runs every benchmark once as a smoke test).
pub fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

/// Median wall time of `f` over `runs` runs (after one untimed warm-up run).
pub fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Like [`median`], with the number of runs picked from one timed trial so that a
/// measurement takes about `budget` (between `min_runs` and `max_runs` runs).
pub fn median_within(
    budget: Duration,
    min_runs: usize,
    max_runs: usize,
    mut f: impl FnMut(),
) -> Duration {
    let t = Instant::now();
    f();
    let one = t.elapsed().max(Duration::from_nanos(1));
    let runs = (budget.as_secs_f64() / one.as_secs_f64()) as usize;
    median(runs.clamp(min_runs, max_runs), f)
}

/// Milliseconds with a sensible number of decimals.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 100.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.0}")
    }
}

/// Throughput in GB/s (10^9 bytes) of `bytes` moved in `d`.
pub fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}
