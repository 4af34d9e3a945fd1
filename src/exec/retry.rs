//! When a connection sends a request again, and how long it waits first (sans-IO: the
//! connections do the waiting).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use redis::Value;

use crate::error::{Error, RedisErrorKind, Retry};

/// How often, and after what pause, a connection sends a request again after a failure.
///
/// A request is sent again only when the failure allows it ([`Error::retry`]): after a
/// transient server error (`TRYAGAIN`, `LOADING`, `BUSY`, `MASTERDOWN`, `CLUSTERDOWN`:
/// the server did not run it) any request; after a lost connection or a timeout (it may
/// have run) only a request marked [`idempotent`](super::Request::idempotent). Never
/// after any other error. The pause before retry `n` (from 0) is
/// `first_backoff * 2^n`, capped at `max_backoff`, with jitter (a random pause between
/// half of that and all of it) so that clients do not retry in step.
///
/// The default: 3 retries, 50 ms first pause, 2 s at most, with jitter: a call gives up
/// after about 350 ms of pauses plus its attempts. [`RetryPolicy::failover`] (the cluster
/// connections' default) retries for as long as a failover takes instead: pauses from
/// 20 ms doubling to 1 s, as many as fit in 5 s. A budget
/// ([`with_budget`](Self::with_budget)) bounds the pauses of one call in all.
///
/// ```
/// use std::time::Duration;
/// use redstash::exec::RetryPolicy;
///
/// let patient = RetryPolicy::default()
///     .with_max_retries(8)
///     .with_backoff(Duration::from_millis(20), Duration::from_secs(1));
/// assert_eq!(patient.max_retries(), 8);
/// assert!(patient.backoff(3) <= Duration::from_millis(160));
/// assert_eq!(RetryPolicy::none().max_retries(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    first_backoff: Duration,
    max_backoff: Duration,
    jitter: bool,
    budget: Option<Duration>,
}

/// Retries of [`RetryPolicy::default`].
pub const DEFAULT_MAX_RETRIES: u32 = 3;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: DEFAULT_MAX_RETRIES,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            jitter: true,
            budget: None,
        }
    }
}

impl RetryPolicy {
    /// Never send a request again.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Retries for as long as a Redis Cluster failover takes (a replica is promoted a
    /// few seconds after its primary fails): pauses from 20 ms doubling to 1 s, with
    /// jitter, as many as fit in 5 s of pauses per call.
    pub fn failover() -> Self {
        RetryPolicy {
            max_retries: u32::MAX,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            jitter: true,
            budget: Some(Duration::from_secs(5)),
        }
    }

    /// At most this much pausing in all for one call (`None`: only the number of
    /// retries bounds it).
    pub fn with_budget(mut self, budget: Option<Duration>) -> Self {
        self.budget = budget;
        self
    }

    /// The bound on one call's pauses in all.
    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// At most `n` retries after the first attempt.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The pause before the first retry, doubling up to `max` for each next one.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Randomise each pause between half of it and all of it (on by default).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The pause before retry `retry` (0 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        let full = self
            .first_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        if !self.jitter || full.is_zero() {
            return full;
        }
        // Between half of `full` and `full`.
        let half = full / 2;
        let span = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random_u64() % span.max(1))
    }

    /// The pause before retry `retries` (0 for the first) of a call that has paused
    /// `paused` in all so far, if retries and the budget allow one more.
    pub fn next_pause(&self, retries: u32, paused: Duration) -> Option<Duration> {
        if retries >= self.max_retries {
            return None;
        }
        let pause = self.backoff(retries);
        match self.budget {
            Some(b) if paused.saturating_add(pause) > b => None,
            _ => Some(pause),
        }
    }

    /// Whether the `retries`-th retry (0 for the first) of a request that failed with
    /// `error` may be sent: retries are left and the error allows it for the request.
    pub fn allows(&self, retries: u32, error: &Error, idempotent: bool) -> bool {
        retries < self.max_retries && error.retry().allows(idempotent)
    }

    /// Whether a request answered with `replies` may be sent again: one of them is a
    /// transient server error (the server did not run that command) and the request
    /// is idempotent (the other commands may have run; running them again changes
    /// nothing), with retries left.
    pub fn allows_replies(&self, retries: u32, replies: &[Value], idempotent: bool) -> bool {
        retries < self.max_retries
            && idempotent
            && replies.iter().any(|v| match v {
                Value::ServerError(e) => {
                    let e = redis::RedisError::from(e.clone());
                    RedisErrorKind::classify(&e).retry() == Retry::Always
                }
                _ => false,
            })
    }
}

/// The retries of one call so far (sans-IO: the connection sends and pauses).
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    retries: u32,
    paused: Duration,
}

impl Attempts {
    /// After an attempt of a request (`idempotent` or not) that gave `result`: the
    /// pause before sending it again, or `None` when `result` is the call's result.
    pub(crate) fn pause_after(
        &mut self,
        policy: &RetryPolicy,
        result: &crate::error::Result<Vec<Value>>,
        idempotent: bool,
    ) -> Option<Duration> {
        let again = match result {
            Err(e) => policy.allows(self.retries, e, idempotent),
            Ok(replies) => policy.allows_replies(self.retries, replies, idempotent),
        };
        if !again {
            return None;
        }
        let pause = policy.next_pause(self.retries, self.paused)?;
        self.retries += 1;
        self.paused += pause;
        Some(pause)
    }
}

/// A random number for jitter (no dependency: std's randomly keyed hasher).
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos().into())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::server_error_value;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_within_bounds() {
        let p = RetryPolicy::default()
            .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .with_jitter(false);
        let pauses: Vec<u128> = (0..6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 100, 100]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(100));
        let j = p.with_jitter(true);
        for n in 0..6 {
            for _ in 0..50 {
                let d = j.backoff(n);
                assert!(d <= p.backoff(n) && d >= p.backoff(n) / 2, "{n}: {d:?}");
            }
        }
        // Jitter varies.
        let many: std::collections::BTreeSet<Duration> = (0..50).map(|_| j.backoff(4)).collect();
        assert!(many.len() > 5, "{many:?}");
    }

    #[test]
    fn retries_follow_the_error_and_idempotence() {
        let p = RetryPolicy::default();
        let io = |k| Error::redis(std::io::Error::from(k).into(), None);
        let timeout = io(std::io::ErrorKind::TimedOut);
        let reset = io(std::io::ErrorKind::ConnectionReset);
        assert!(p.allows(0, &timeout, true) && !p.allows(0, &timeout, false));
        assert!(p.allows(2, &reset, true) && !p.allows(3, &reset, true));
        assert!(!RetryPolicy::none().allows(0, &reset, true));
        assert!(!p.allows(0, &Error::InvalidArgument("x".into()), true));
        let loading = server_error_value(b"LOADING Redis is loading the dataset in memory");
        let wrongtype = server_error_value(b"WRONGTYPE Operation against a key");
        assert!(p.allows_replies(0, &[Value::Okay, loading.clone()], true));
        assert!(!p.allows_replies(0, std::slice::from_ref(&loading), false));
        assert!(!p.allows_replies(0, &[wrongtype], true));
        assert!(!p.allows_replies(3, &[loading], true));
    }

    #[test]
    fn the_budget_bounds_the_pauses_of_a_call() {
        let p = RetryPolicy::failover().with_jitter(false);
        let mut paused = Duration::ZERO;
        let mut retries = 0;
        while let Some(d) = p.next_pause(retries, paused) {
            paused += d;
            retries += 1;
        }
        assert!(paused <= Duration::from_secs(5), "{paused:?}");
        assert!(paused > Duration::from_secs(4), "{paused:?}");
        assert_eq!(retries, 9, "20+40+...+640 ms, then three 1 s pauses");
        assert_eq!(RetryPolicy::none().next_pause(0, Duration::ZERO), None);
        let d = RetryPolicy::default().with_jitter(false);
        assert_eq!(
            d.next_pause(2, Duration::from_secs(100)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(d.next_pause(3, Duration::ZERO), None);
    }
}
