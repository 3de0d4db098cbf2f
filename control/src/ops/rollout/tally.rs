//! A batch's traffic over a window, counted on the whole fleet: attempts, failures and
//! latency buckets of some backends since the window began, node by node
//! ([`TrafficStats::backend_by_node`]: this node's counters and, with a shared store, the
//! ones every other node publishes), then summed.
//!
//! Each node's counters are taken apart: a node first seen after the window began counts
//! from when it was first seen, and a node whose counters went down (it restarted) counts
//! from zero again, so neither brings traffic from before the window into it.

use std::collections::HashMap;

use crate::plane::{LatencyCounts, PoolCounts, TrafficStats};

/// The counters of some backends since a start, per (node, backend).
#[derive(Default)]
pub(super) struct Tally {
    base: HashMap<(String, String), (PoolCounts, LatencyCounts)>,
}

impl Tally {
    /// Start counting `backends` now.
    pub fn start(traffic: &dyn TrafficStats, backends: &[String]) -> Tally {
        let mut tally = Tally::default();
        tally.read(traffic, backends);
        tally
    }

    /// What `backends` served since the start, summed over the nodes.
    pub fn read(
        &mut self,
        traffic: &dyn TrafficStats,
        backends: &[String],
    ) -> (PoolCounts, LatencyCounts) {
        let (mut counts, mut latency) = (PoolCounts::default(), LatencyCounts::default());
        for addr in backends {
            for (node, now, hist) in traffic.backend_by_node(addr) {
                let key = (node, addr.clone());
                let base = self.base.entry(key).or_insert_with(|| (now, hist.clone()));
                if now.requests < base.0.requests {
                    // Restarted: its counters began again from zero.
                    *base = (PoolCounts::default(), LatencyCounts::default());
                }
                counts.requests += now.requests - base.0.requests;
                counts.errors += now.errors.saturating_sub(base.0.errors);
                add(&mut latency, &delta(&hist, &base.1));
            }
        }
        (counts, latency)
    }
}

/// `now - before`, bucket by bucket (a bucket missing from `before` counts from zero).
pub(super) fn delta(now: &LatencyCounts, before: &LatencyCounts) -> LatencyCounts {
    let counts = now
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
        .collect();
    LatencyCounts {
        bounds_us: now.bounds_us,
        counts,
    }
}

/// `sum += h`, bucket by bucket.
fn add(sum: &mut LatencyCounts, h: &LatencyCounts) {
    if sum.counts.len() < h.counts.len() {
        sum.counts.resize(h.counts.len(), 0);
    }
    if sum.bounds_us.len() < h.bounds_us.len() {
        sum.bounds_us = h.bounds_us;
    }
    for (t, c) in sum.counts.iter_mut().zip(&h.counts) {
        *t += c;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const BOUNDS: [u64; 2] = [1_000, 10_000];

    /// One node's report of backend "b": its id, requests, errors, latency buckets.
    type Report = (String, u64, u64, Vec<u64>);

    /// Backend "b" as the nodes report it; the test changes the figures.
    struct Fleet(Mutex<Vec<Report>>);

    impl TrafficStats for Fleet {
        fn pool_counts(&self, _: &str, _: &str) -> Option<PoolCounts> {
            None
        }
        fn backend_by_node(&self, addr: &str) -> Vec<(String, PoolCounts, LatencyCounts)> {
            assert_eq!(addr, "b");
            let nodes = self.0.lock().unwrap_or_else(|p| p.into_inner());
            (nodes.iter())
                .map(|(n, r, e, l)| {
                    let counts = PoolCounts {
                        requests: *r,
                        errors: *e,
                    };
                    let latency = LatencyCounts {
                        bounds_us: &BOUNDS,
                        counts: l.clone(),
                    };
                    (n.clone(), counts, latency)
                })
                .collect()
        }
    }

    fn set(fleet: &Fleet, nodes: &[(&str, u64, u64, &[u64])]) {
        *fleet.0.lock().unwrap_or_else(|p| p.into_inner()) = (nodes.iter())
            .map(|(n, r, e, l)| (n.to_string(), *r, *e, l.to_vec()))
            .collect();
    }

    #[test]
    fn every_nodes_traffic_in_the_window_is_summed_and_nothing_from_before_it() {
        let fleet = Fleet(Mutex::new(Vec::new()));
        let b = ["b".to_string()];
        set(&fleet, &[("", 100, 1, &[90, 10]), ("n2", 50, 0, &[50])]);
        let mut tally = Tally::start(&fleet, &b);
        // This node served 10 more (2 failed), n2 20 more; n3 joins with its old 500.
        set(
            &fleet,
            &[
                ("", 110, 3, &[95, 15]),
                ("n2", 70, 0, &[60, 5, 5]),
                ("n3", 500, 40, &[500]),
            ],
        );
        let (counts, latency) = tally.read(&fleet, &b);
        assert_eq!((counts.requests, counts.errors), (30, 2));
        assert_eq!(latency.counts, vec![15, 10, 5]);
        // n3 counts from when it was first seen; n2 restarted and counts from zero.
        set(
            &fleet,
            &[
                ("", 110, 3, &[95, 15]),
                ("n2", 4, 1, &[4]),
                ("n3", 506, 41, &[506]),
            ],
        );
        let (counts, latency) = tally.read(&fleet, &b);
        assert_eq!((counts.requests, counts.errors), (10 + 4 + 6, 2 + 1 + 1));
        assert_eq!(latency.counts, vec![5 + 4 + 6, 5]);
    }
}
