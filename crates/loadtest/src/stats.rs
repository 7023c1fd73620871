//! Latency histograms and outcome counters shared by every worker of a run.
//!
//! One mutex around small fixed-size histograms: at the rates this machine reaches (tens of
//! thousands of calls a second) an uncontended lock per call costs far less than the call,
//! and it lets the progress line read a p99 "so far" without merging per-worker copies.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// A log-linear latency histogram in microseconds: 10 µs steps to 10 ms, 1 ms steps to 1 s,
/// 100 ms steps to 10 s, one overflow bucket. Percentiles are the upper edge of their bucket.
#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

const FINE: u64 = 1_000; // 0..10 ms by 10 µs
const MID: u64 = 990; // 10 ms..1 s by 1 ms
const COARSE: u64 = 90; // 1 s..10 s by 100 ms

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; (FINE + MID + COARSE + 1) as usize],
            count: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        (if us < 10_000 {
            us / 10
        } else if us < 1_000_000 {
            FINE + (us - 10_000) / 1_000
        } else if us < 10_000_000 {
            FINE + MID + (us - 1_000_000) / 100_000
        } else {
            FINE + MID + COARSE
        }) as usize
    }

    fn upper_us(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE {
            (i + 1) * 10
        } else if i < FINE + MID {
            10_000 + (i - FINE + 1) * 1_000
        } else if i < FINE + MID + COARSE {
            1_000_000 + (i - FINE - MID + 1) * 100_000
        } else {
            u64::MAX
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        self.buckets[Self::index(us)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latency under which a fraction `q` (0..=1) of the samples fall, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper_us(i).min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_ms()
    }

    /// The largest sample (exact, not a bucket edge), in milliseconds; 0 when empty.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }
}

/// Everything the workers record.
#[derive(Default)]
pub struct Tally {
    /// Latency of every answered call (success, expected conflict or error), by tool.
    pub tools: BTreeMap<&'static str, Histogram>,
    /// Calls that failed: by error code (`code` of the error body), `http_<status>` when the
    /// body had none, or `transport` when no answer came.
    pub errors: BTreeMap<String, u64>,
    /// 409 `locked` answers where the scenario expects them (contention): outcomes, not errors.
    pub lock_conflicts: u64,
    /// Calls answered, all outcomes.
    pub calls: u64,
}

impl Tally {
    /// The latencies of every tool in one histogram.
    pub fn all(&self) -> Histogram {
        let mut h = Histogram::default();
        for t in self.tools.values() {
            h.merge(t);
        }
        h
    }

    /// Failed calls, all codes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The shared tally of a run.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Tally>,
}

/// What one call came to.
pub enum Outcome {
    /// A success.
    Ok,
    /// An expected `locked` conflict (counted in [`Tally::lock_conflicts`]).
    Conflict,
    /// A failure, with its code as [`Tally::errors`] counts it.
    Error(String),
}

impl Stats {
    /// Records one answered call of `tool`: its latency and its outcome.
    pub fn record(&self, tool: &'static str, took: Duration, outcome: &Outcome) {
        let mut t = self.inner.lock().expect("stats lock");
        t.calls += 1;
        t.tools.entry(tool).or_default().record(took);
        match outcome {
            Outcome::Ok => {}
            Outcome::Conflict => t.lock_conflicts += 1,
            Outcome::Error(code) => *t.errors.entry(code.clone()).or_default() += 1,
        }
    }

    /// (calls, errors, p99 ms so far).
    pub fn progress(&self) -> (u64, u64, f64) {
        let t = self.inner.lock().expect("stats lock");
        (t.calls, t.error_count(), t.all().quantile_ms(0.99))
    }

    /// Drops what was recorded (after the untimed set-up).
    pub fn reset(&self) {
        *self.inner.lock().expect("stats lock") = Tally::default();
    }

    /// What was recorded, leaving an empty tally (at the end of the run).
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.inner.lock().expect("stats lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_their_buckets() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us * 20)); // 20 µs .. 20 ms
        }
        let p50 = h.quantile_ms(0.5);
        assert!((10.0..=11.0).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99);
        assert!((19.8..=20.0).contains(&p99), "{p99}");
        assert_eq!(h.max_ms(), 20.0);
        assert_eq!(h.count(), 1000);
    }
}
