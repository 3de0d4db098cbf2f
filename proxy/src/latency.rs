//! A small fixed histogram of attempt durations per backend, for rollouts that compare the
//! p99 of a new batch with the p99 of the backends not yet replaced.
//!
//! Recording is one `Instant::elapsed` and one relaxed atomic increment (a binary search
//! over [`BOUNDS_US`] picks the bucket), so it stays off the hot path's budget. Buckets
//! only grow; a reader takes the difference of two snapshots to get a window, and reads
//! a quantile as the upper bound of the bucket it falls in (about 1.5× resolution).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; a last, open bucket holds the rest.
pub const BOUNDS_US: [u64; 31] = [
    100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000,
    30_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 500_000, 750_000, 1_000_000,
    1_500_000, 2_000_000, 3_000_000, 5_000_000, 7_500_000, 10_000_000, 30_000_000,
];

/// Number of buckets, the open one included.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Attempt durations of one backend, bucketed.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of every bucket (they only grow).
    pub fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_bucket_of_their_upper_bound() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(101));
        h.record(Duration::from_millis(40));
        h.record(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!((s[0], s[1]), (1, 1));
        assert_eq!(s[BOUNDS_US.partition_point(|b| *b < 40_000)], 1);
        assert_eq!(BOUNDS_US[15], 50_000);
        assert_eq!(s[15], 1);
        assert_eq!(s[BUCKETS - 1], 1);
        assert_eq!(s.iter().sum::<u64>(), 4);
    }
}
