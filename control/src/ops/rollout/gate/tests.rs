//! The p99 comparison of a batch with the backends not yet replaced, without traffic.

use super::*;
use crate::ops::rollout::tally::delta;

const BOUNDS: [u64; 4] = [1_000, 5_000, 20_000, 100_000];

fn hist(counts: [u64; 5]) -> LatencyCounts {
    LatencyCounts {
        bounds_us: &BOUNDS,
        counts: counts.to_vec(),
    }
}

fn check(batch: [u64; 5], others: [u64; 5], ratio: f64) -> LatencyCheck {
    let empty = LatencyCheck {
        batch_p99_ms: None,
        others_p99_ms: None,
        batch_requests: 0,
        others_requests: 0,
        max_p99_ratio: ratio,
    };
    compare(empty, &hist(batch), &hist(others))
}

#[test]
fn p99_is_the_bound_of_the_bucket_holding_the_99th_percentile() {
    assert_eq!(quantile_us(&hist([0; 5]), 0.99), None);
    assert_eq!(quantile_us(&hist([99, 1, 0, 0, 0]), 0.99), Some(1_000));
    assert_eq!(quantile_us(&hist([98, 2, 0, 0, 0]), 0.99), Some(5_000));
    // The open bucket reads as the last bound.
    assert_eq!(quantile_us(&hist([0, 0, 0, 0, 3]), 0.99), Some(100_000));
    let d = delta(&hist([5, 5, 5, 5, 5]), &hist([5, 4, 5, 0, 5]));
    assert_eq!(d.counts, vec![0, 1, 0, 5, 0]);
}

#[test]
fn a_batch_slower_than_ratio_times_the_others_fails_with_the_figures() {
    // Batch p99 in the 20 ms bucket, others' in the 5 ms one: 20 > 3 x 5.
    let slow = check([0, 0, 50, 0, 0], [0, 100, 0, 0, 0], 3.0);
    let why = p99_verdict(&slow, "batch 1", 20).err().unwrap_or_default();
    assert!(why.contains("batch 1 p99 20ms > 3 x 5ms"), "{why}");
    assert_eq!((slow.batch_requests, slow.others_requests), (50, 100));
    // Within the limit: 20 <= 4 x 5.
    let ok = check([0, 0, 50, 0, 0], [0, 100, 0, 0, 0], 4.0);
    assert!(p99_verdict(&ok, "batch 1", 20).is_ok());
    // A sub-millisecond p99 of the others counts as 1 ms: 5 ms <= 5 x 1 ms.
    let fast = check([0, 50, 0, 0, 0], [100, 0, 0, 0, 0], 5.0);
    assert!(p99_verdict(&fast, "batch 1", 20).is_ok());
}

#[test]
fn too_few_requests_on_either_side_are_not_compared_and_say_so() {
    let few = check([0, 0, 0, 0, 10], [0, 100, 0, 0, 0], 2.0);
    let note = p99_verdict(&few, "batch 1", 20).unwrap_or_default();
    assert!(
        note.starts_with("p99 not compared: 10 request(s)"),
        "{note}"
    );
    // The last batch: no backend left unreplaced.
    let last = check([0, 0, 0, 0, 50], [0; 5], 2.0);
    let note = p99_verdict(&last, "batch 3", 20).unwrap_or_default();
    assert!(
        note.contains("0 to the backends not yet replaced"),
        "{note}"
    );
}
