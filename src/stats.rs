//! Small lock-free statistics shared by the layers: a latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this many microseconds get a bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above that: relative error at most 1/8.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above `LINEAR` (16 µs .. 2^44 µs, about 200 days).
const OCTAVES: u64 = 40;
const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

/// A histogram of durations in microseconds with log-linear buckets: exact
/// below 16 µs, within 12.5% above. Recording is one relaxed `fetch_add`.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Histogram").field(&self.snapshot()).finish()
    }
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(us: u64) -> usize {
        if us < LINEAR {
            return us as usize;
        }
        let exp = u64::from(63 - us.leading_zeros()); // >= 4
        let sub = (us >> (exp - u64::from(SUB_BITS))) & (SUB - 1);
        let idx = LINEAR + (exp - 4) * SUB + sub;
        (idx as usize).min(BUCKETS - 1)
    }

    /// The largest value that falls into bucket `idx`.
    fn upper(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < LINEAR {
            return idx;
        }
        let exp = (idx - LINEAR) / SUB + 4;
        let sub = (idx - LINEAR) % SUB;
        let width = 1u64 << (exp - u64::from(SUB_BITS));
        (1u64 << exp) + (sub + 1) * width - 1
    }

    /// Sets every bucket back to zero.
    pub(crate) fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Percentiles of what was recorded so far.
    pub(crate) fn snapshot(&self) -> Percentiles {
        self.latencies().percentiles()
    }

    /// A copy of the bucket counts, for windows (see [`Latencies::since`]).
    pub(crate) fn latencies(&self) -> Latencies {
        Latencies {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A snapshot of a latency histogram: log-linear buckets, exact below 16 µs,
/// within 12.5% above. Subtract an earlier snapshot with
/// [`since`](Self::since) to get the durations recorded in between.
#[derive(Clone, PartialEq, Eq)]
pub struct Latencies {
    counts: Box<[u64]>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: vec![0; BUCKETS].into_boxed_slice(),
        }
    }
}

impl Latencies {
    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    #[cfg(feature = "store")]
    /// The non-empty buckets as (index, count), to be sent to another
    /// process ([`from_buckets`](Self::from_buckets) reads them back).
    pub(crate) fn buckets(&self) -> Vec<(usize, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i, n))
            .collect()
    }

    #[cfg(feature = "store")]
    /// A histogram from [`buckets`](Self::buckets); an index out of range
    /// is `None`.
    pub(crate) fn from_buckets(buckets: &[(usize, u64)]) -> Option<Latencies> {
        let mut l = Latencies::default();
        for &(i, n) in buckets {
            let slot = l.counts.get_mut(i)?;
            *slot = slot.saturating_add(n);
        }
        Some(l)
    }

    #[cfg(feature = "store")]
    /// Adds `other`'s durations to these (histograms of two processes).
    pub(crate) fn add(&mut self, other: &Latencies) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The durations recorded after `earlier` was taken (of the same histogram).
    pub fn since(&self, earlier: &Latencies) -> Latencies {
        Latencies {
            counts: self
                .counts
                .iter()
                .zip(earlier.counts.iter())
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// The `q` quantile (`q` in `0..=1`, clamped) as the upper edge of its
    /// bucket; `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The smallest bucket whose cumulative count reaches rank q·total.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(Histogram::upper(i)));
            }
        }
        None
    }

    /// The median, 90th and 99th percentiles.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count(),
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
        }
    }
}

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Latencies")
            .field(&self.percentiles())
            .finish()
    }
}

/// Latency percentiles, each the upper edge of its bucket (exact below 16 µs,
/// within 12.5% above). `None` until something was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Percentiles {
    /// How many durations were recorded.
    pub count: u64,
    /// Median.
    pub p50: Option<Duration>,
    /// 90th percentile.
    pub p90: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        // Every value lands in a bucket whose upper edge is >= it and within 12.5%.
        let mut prev_upper = None;
        for idx in 0..BUCKETS - 1 {
            let up = Histogram::upper(idx);
            if let Some(p) = prev_upper {
                assert_eq!(Histogram::index(p + 1), idx, "value {} ", p + 1);
            }
            assert_eq!(Histogram::index(up), idx);
            prev_upper = Some(up);
        }
        for v in [16u64, 17, 100, 1_000, 123_456, 10_000_000] {
            let up = Histogram::upper(Histogram::index(v));
            assert!(up >= v && (up - v) as f64 <= v as f64 / 8.0, "{v} -> {up}");
        }
    }

    #[test]
    fn windows_subtract_earlier_snapshots() {
        let h = Histogram::new();
        for _ in 0..10 {
            h.record(Duration::from_micros(3));
        }
        let before = h.latencies();
        for _ in 0..5 {
            h.record(Duration::from_millis(2));
        }
        let window = h.latencies().since(&before);
        assert_eq!(window.count(), 5);
        let p50 = window.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_millis(2) && p50 <= Duration::from_micros(2250));
        assert_eq!(h.latencies().count(), 15);
        assert_eq!(Latencies::default().quantile(0.5), None);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        assert_eq!(h.snapshot().p50, None);
        // 90 fast (5 µs), 9 medium (1 ms), 1 slow (1 s).
        for _ in 0..90 {
            h.record(Duration::from_micros(5));
        }
        for _ in 0..9 {
            h.record(Duration::from_millis(1));
        }
        h.record(Duration::from_secs(1));
        let p = h.snapshot();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Some(Duration::from_micros(5)));
        assert_eq!(p.p90, Some(Duration::from_micros(5)));
        let p99 = p.p99.unwrap();
        assert!(p99 >= Duration::from_millis(1) && p99 <= Duration::from_micros(1125));
    }
}
