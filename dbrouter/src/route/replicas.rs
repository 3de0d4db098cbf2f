//! Replica selection: where a read of a cluster goes, decided from the node monitor's state
//! alone (no I/O, so it is cheap enough to run per transaction and is unit-tested).
//!
//! A replica qualifies when it is configured as a replica and not fenced; its latest check
//! succeeded, is recent (within `failure_threshold` × (`check_interval` + `check_timeout`))
//! and found it in recovery; it is not marked down; its WAL receiver is streaming or it has
//! replayed everything known; it is within `routing.max_replica_lag_bytes` and
//! `routing.max_replica_lag` (each only when set; a limit that cannot be measured excludes
//! it); and, for read-your-writes, it has replayed past the client's `min_lsn`.
//!
//! Among those, the one with the least outstanding work (the caller says how much:
//! [`choose`] uses the node pool's connections in use), ties broken
//! at random. When none qualifies, the read goes to the primary, or fails, per
//! `routing.fallback`; except that a cluster without replicas, and a read-your-writes read
//! no caught-up replica can serve, always go to the primary (which has every write).

use std::fmt;
use std::time::Instant;

use switchyard_config::{Address, Cluster, NodeRole, ReplicaFallback};

use crate::ha::monitor::{Lsn, NodeMonitor, NodeView};
use crate::server::pool::Pools;

/// Where a read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// This replica.
    Replica(Address),
    /// The primary, because no replica qualified.
    Primary(Reason),
    /// Nowhere: `routing.fallback = "error"` and no replica qualified. The client should get
    /// an error saying [`Reason`].
    Error(Reason),
}

/// Why no replica was chosen: the furthest any replica got through the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The cluster has no replica that is not fenced.
    NoReplicas,
    /// No replica is reachable, recently checked, in recovery and streaming (or caught up).
    NoHealthyReplica,
    /// Healthy replicas are all further behind than the lag limits.
    ReplicaLag,
    /// Replicas within the lag limits have not replayed the client's last write yet.
    ReadYourWrites,
}

impl Reason {
    /// The label in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoReplicas => "no_replicas",
            Reason::NoHealthyReplica => "no_healthy_replica",
            Reason::ReplicaLag => "replica_lag",
            Reason::ReadYourWrites => "read_your_writes",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::NoReplicas => "the cluster has no replicas",
            Reason::NoHealthyReplica => "no replica is healthy",
            Reason::ReplicaLag => "every healthy replica is further behind than the lag limit",
            Reason::ReadYourWrites => "no replica has replayed this session's last write yet",
        })
    }
}

/// Where a read of `cluster` goes at `now`. `min_lsn` is the WAL position the replica must
/// have replayed (read-your-writes); `load` is the outstanding work on a node.
pub fn choose_replica(
    cluster: &Cluster,
    monitor: &NodeMonitor,
    now: Instant,
    min_lsn: Option<Lsn>,
    load: &dyn Fn(&Address) -> usize,
) -> Choice {
    let mut reason = Reason::NoReplicas;
    // (node, load) of the replicas that qualify.
    let mut fit: Vec<(&Address, usize)> = Vec::new();
    let reference = monitor.cluster_wal_position(cluster);
    for node in cluster
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Replica && n.fenced.is_none())
    {
        reason = reason.max(Reason::NoHealthyReplica);
        let Some(view) = monitor.view(&node.addr.to_string()) else {
            continue;
        };
        let replay = view.observed.as_ref().and_then(|o| o.replay_lsn);
        let caught_up = matches!((replay, reference), (Some(r), Some(p)) if r >= p);
        if !healthy(cluster, &view, now, caught_up) {
            continue;
        }
        reason = reason.max(Reason::ReplicaLag);
        let lag = monitor.lag_against(cluster, &view, now, reference);
        let routing = &cluster.routing;
        let bytes_ok = routing
            .max_replica_lag_bytes
            .is_none_or(|max| lag.bytes.is_some_and(|b| b <= max));
        let time_ok = routing
            .max_replica_lag
            .is_none_or(|max| lag.duration().is_some_and(|d| d <= max));
        if !(bytes_ok && time_ok) {
            continue;
        }
        reason = reason.max(Reason::ReadYourWrites);
        if min_lsn.is_some_and(|min| replay.is_none_or(|r| r < min)) {
            continue;
        }
        fit.push((&node.addr, load(&node.addr)));
    }
    let Some(least) = fit.iter().map(|&(_, l)| l).min() else {
        return match (reason, cluster.routing.fallback) {
            (Reason::NoReplicas | Reason::ReadYourWrites, _) | (_, ReplicaFallback::Primary) => {
                Choice::Primary(reason)
            }
            (_, ReplicaFallback::Error) => Choice::Error(reason),
        };
    };
    let ties: Vec<&Address> = fit
        .iter()
        .filter(|&&(_, l)| l == least)
        .map(|&(a, _)| a)
        .collect();
    // Ties are broken at random, not in turn: a client whose statements take two turns each
    // (prepare, then execute) would otherwise run every execute on the same replica.
    let pick = match ties.len() {
        1 => ties[0],
        n => ties[rand::random_range(0..n)],
    };
    Choice::Replica(pick.clone())
}

/// Whether `view` is a replica fit to serve reads at `now` (lag aside).
fn healthy(cluster: &Cluster, view: &NodeView, now: Instant, caught_up: bool) -> bool {
    let f = &cluster.failover;
    let fresh_for = (f.check_interval + f.check_timeout) * f.failure_threshold.max(1);
    let fresh = view
        .checked_at
        .is_some_and(|at| now.saturating_duration_since(at) <= fresh_for);
    let replica = view
        .observed
        .as_ref()
        .is_some_and(|o| o.in_recovery && (o.streaming() || caught_up));
    fresh && view.reachable && !view.down && replica
}

/// [`choose_replica`] now, with each node's outstanding work taken as its pool's server
/// connections in use.
pub fn choose(
    cluster: &Cluster,
    min_lsn: Option<Lsn>,
    monitor: &NodeMonitor,
    pools: &Pools,
) -> Choice {
    let load = |node: &Address| {
        let (open, idle) = pools.counts(&cluster.name, &node.to_string());
        open.saturating_sub(idle)
    };
    choose_replica(cluster, monitor, Instant::now(), min_lsn, &load)
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;
