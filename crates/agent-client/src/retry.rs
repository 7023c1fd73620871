//! Bounded retries with jittered exponential backoff.
//!
//! What is retried depends on whether repeating the call is safe:
//!
//! | failure | idempotent call (reads, claim/renew, join/leave, unconditional write) | other calls (edit, delete, log_step, conditional write, release, admin) |
//! |---|---|---|
//! | 429 `rate_limited`, 503 `unavailable` (and a proxy's 502/504) | retried | retried |
//! | connection refused (the request never left) | retried | retried |
//! | timeout, connection broken mid-exchange | retried | **not** retried: it may have been applied |
//! | anything else (4xx, 500) | not retried | not retried |
//!
//! A 429/503 is the gateway saying "nothing was done, come back later", so it is retried for
//! every call; the wait is at least the answer's `Retry-After`. When the attempts run out
//! the caller gets [`ClientError::GaveUp`] with the attempt count and the last failure.

use crate::error::{ClientError, TransportKind};
use mcp_api::ErrorCode;
use rand::Rng;
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
    /// Upper bound of a wait asked for by `Retry-After` (a server asking for an hour is
    /// not waited for an hour).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms doubling up to 5 s: about 1.5–3 s of patience plus `Retry-After`.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The default policy with `max_attempts` attempts.
    pub fn attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// The jittered backoff before retry number `retry` (0 = the first retry): a random
    /// duration in `[d/2, d]` with `d = min(max_delay, base_delay × 2^retry)`, so that many
    /// clients failing together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        let d = self
            .base_delay
            .saturating_mul(factor)
            .min(self.max_delay)
            .as_millis() as u64;
        if d == 0 {
            return Duration::ZERO;
        }
        let half = d / 2;
        Duration::from_millis(half + rand::rng().random_range(0..=d - half))
    }

    /// The wait before retrying after `err`: the backoff, or the server's `Retry-After` when
    /// that is longer (capped at `max_retry_after`).
    pub(crate) fn delay(&self, retry: u32, err: &ClientError) -> Duration {
        let backoff = self.backoff(retry);
        match err {
            ClientError::Refused {
                retry_after: Some(ra),
                ..
            } => backoff.max((*ra).min(self.max_retry_after)),
            _ => backoff,
        }
    }
}

/// Whether a call may be repeated without changing its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Repeating it is harmless: retried on any transient failure.
    Safe,
    /// Repeating it after it was applied would apply it twice: retried only when the
    /// server said it did nothing (429/503) or the request never left.
    Unsafe,
}

/// Whether `err` is worth another attempt of a call of this idempotency.
pub(crate) fn should_retry(err: &ClientError, idempotency: Idempotency) -> bool {
    match err {
        // 502/504 from a proxy already carry `unavailable` (see `error::code_for_status`).
        ClientError::Refused { code, status, .. } => {
            code.is_retryable()
                // A code this client does not know: the status says whether it is transient.
                || (*code == ErrorCode::Unknown && matches!(status, 429 | 503))
        }
        ClientError::Transport { kind, .. } => {
            *kind == TransportKind::Connect || idempotency == Idempotency::Safe
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        for retry in 0..30 {
            let d = p.backoff(retry);
            let full = p
                .base_delay
                .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
                .min(p.max_delay);
            assert!(
                d <= full && d >= full / 2,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        let mut e = ClientError::refused(ErrorCode::Unavailable, "x");
        if let ClientError::Refused { retry_after, .. } = &mut e {
            *retry_after = Some(Duration::from_secs(3));
        }
        assert!(p.delay(0, &e) >= Duration::from_secs(3));
        if let ClientError::Refused { retry_after, .. } = &mut e {
            *retry_after = Some(Duration::from_secs(3600));
        }
        assert!(p.delay(0, &e) <= p.max_retry_after);
    }

    #[test]
    fn what_is_retried() {
        let transport = |kind| ClientError::Transport {
            url: "u".into(),
            message: "m".into(),
            kind,
        };
        use Idempotency::*;
        for i in [Safe, Unsafe] {
            assert!(should_retry(
                &ClientError::refused(ErrorCode::Unavailable, "x"),
                i
            ));
            assert!(should_retry(
                &ClientError::refused(ErrorCode::RateLimited, "x"),
                i
            ));
            assert!(should_retry(&transport(TransportKind::Connect), i));
            assert!(!should_retry(
                &ClientError::refused(ErrorCode::Locked, "x"),
                i
            ));
            assert!(!should_retry(
                &ClientError::refused(ErrorCode::Internal, "x"),
                i
            ));
        }
        assert!(should_retry(&transport(TransportKind::Timeout), Safe));
        assert!(!should_retry(&transport(TransportKind::Timeout), Unsafe));
        assert!(!should_retry(&transport(TransportKind::Other), Unsafe));
    }
}
