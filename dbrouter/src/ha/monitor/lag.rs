//! Replica lag, in bytes and in seconds, from what the monitor last saw of a cluster's nodes.
//!
//! - The reference is the highest WAL position known in the cluster: the primary's
//!   `pg_current_wal_lsn()` or any replica's received position (when the primary cannot be
//!   reached, what the replicas received is still a lower bound of where it got to). Fenced
//!   nodes do not count: a fenced old primary may have written WAL no one else has.
//! - Bytes: reference minus the replica's replayed position.
//! - Seconds: 0 when the replica has replayed up to the reference. Otherwise the time since
//!   the primary was first seen past the replica's replayed position (from the primary's WAL
//!   history, so an idle primary does not make a caught-up replica look hours behind, as
//!   `now() - pg_last_xact_replay_timestamp()` would). When the history does not reach back
//!   that far, the replica's own `now() - pg_last_xact_replay_timestamp()` is used.

use std::time::{Duration, Instant};

use switchyard_config::{Cluster, NodeRole};

use super::lsn::Lsn;
use super::state::{lock, NodeMonitor, NodeView};

/// How far a replica replays behind its cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lag {
    /// `None` when the node is not an observed replica or no WAL position is known.
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

impl Lag {
    /// The lag in seconds as a duration.
    pub fn duration(&self) -> Option<Duration> {
        self.seconds
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }
}

impl NodeMonitor {
    /// The highest WAL position known in `cluster` (see the module docs).
    pub fn cluster_wal_position(&self, cluster: &Cluster) -> Option<Lsn> {
        cluster
            .nodes
            .iter()
            .filter(|n| n.fenced.is_none())
            .filter_map(|n| self.view(&n.addr.to_string()))
            .filter_map(|v| {
                let o = v.observed.as_ref()?;
                if o.in_recovery {
                    o.receive_lsn
                } else {
                    o.current_lsn
                }
            })
            .max()
    }

    /// The primary's WAL position from a check that started at or after `since`, once there
    /// is one. For read-your-writes: with `since` the moment a client's commit completed, the
    /// result is at or past that commit.
    pub fn wal_position_since(&self, cluster: &Cluster, since: Instant) -> Option<Lsn> {
        let primary = primary_addr(cluster)?;
        let view = self.view(&primary)?;
        let o = view.observed.as_ref().filter(|o| !o.in_recovery)?;
        (view.reachable && view.checked_at? >= since)
            .then_some(o.current_lsn)
            .flatten()
    }

    /// How far `node` of `cluster` replays behind, at `now`.
    pub fn lag(&self, cluster: &Cluster, node: &str, now: Instant) -> Lag {
        match self.view(node) {
            Some(view) => self.lag_of(cluster, &view, now),
            None => Lag::default(),
        }
    }

    /// [`NodeMonitor::lag`] for a view already loaded.
    pub fn lag_of(&self, cluster: &Cluster, view: &NodeView, now: Instant) -> Lag {
        self.lag_against(cluster, view, now, self.cluster_wal_position(cluster))
    }

    /// [`NodeMonitor::lag_of`] with the cluster's WAL position already found.
    pub(crate) fn lag_against(
        &self,
        cluster: &Cluster,
        view: &NodeView,
        now: Instant,
        reference: Option<Lsn>,
    ) -> Lag {
        let Some(o) = view.observed.as_ref().filter(|o| o.in_recovery) else {
            return Lag::default();
        };
        let (Some(replay), Some(reference)) = (o.replay_lsn, reference) else {
            return Lag::default();
        };
        if replay >= reference {
            return Lag {
                bytes: Some(0),
                seconds: Some(0.0),
            };
        }
        let since_history = primary_addr(cluster)
            .and_then(|p| self.nodes.get(&p).map(|e| e.clone()))
            .and_then(|entry| {
                let history = lock(&entry.wal_history);
                // Only when the history reaches back to a position the replica had replayed.
                let &(_, oldest) = history.front()?;
                if oldest > replay {
                    return None;
                }
                let &(first_past, _) = history.iter().find(|(_, lsn)| *lsn > replay)?;
                Some(now.saturating_duration_since(first_past))
            });
        let from_replica = || {
            let aged = now.saturating_duration_since(view.checked_at?);
            o.replay_age.map(|age| age + aged)
        };
        Lag {
            bytes: Some(reference.bytes_after(replay)),
            seconds: since_history.or_else(from_replica).map(|d| d.as_secs_f64()),
        }
    }
}

/// The address of the configured primary, unless it is fenced.
fn primary_addr(cluster: &Cluster) -> Option<String> {
    cluster
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Primary && n.fenced.is_none())
        .map(|n| n.addr.to_string())
}
