//! The handles high availability works with and gives out:
//!
//! - [`Ha`]: what the monitor and failover tasks use: the live runtime (read, and changed by
//!   a role change), the monitor's verdicts (written by the checks), the failover state, and
//!   the pools (a fenced primary's are emptied; a switchover drains the old primary's).
//! - [`Verdicts`]: the read-only view the data path gets: what the monitor last saw of a
//!   node, and whether a failover of a cluster runs (write turns wait for it).

use std::sync::Arc;
use std::time::Duration;

use super::failover::Failovers;
use super::monitor::{NodeMonitor, NodeView};
use crate::runtime::Live;
use crate::server::pool::Pools;
use crate::stats::Stats;

/// What the monitor and failover tasks of the plane share. Cheap to clone (`Arc`s).
#[derive(Debug, Clone)]
pub struct Ha {
    pub live: Live,
    pub monitor: Arc<NodeMonitor>,
    pub failovers: Arc<Failovers>,
    pub pools: Arc<Pools>,
    /// Counters by cluster (the connections a failover pre-opens count as server connections).
    pub stats: Arc<Stats>,
}

/// The health verdicts the data path reads: the monitor's view of each node and the
/// failover state of each cluster. Read-only; cheap to clone.
#[derive(Debug, Clone)]
pub struct Verdicts {
    monitor: Arc<NodeMonitor>,
    failovers: Arc<Failovers>,
}

impl Verdicts {
    pub fn new(monitor: Arc<NodeMonitor>, failovers: Arc<Failovers>) -> Self {
        Verdicts { monitor, failovers }
    }

    /// The monitor's verdicts on every node (for replica selection).
    #[inline]
    pub fn monitor(&self) -> &NodeMonitor {
        &self.monitor
    }

    /// What the monitor knows about the node at `addr`, once it has been checked.
    #[inline]
    pub fn node(&self, addr: &str) -> Option<Arc<NodeView>> {
        self.monitor.view(addr)
    }

    /// Whether a failover or switchover of `cluster` is under way.
    #[inline]
    pub fn failover_running(&self, cluster: &str) -> bool {
        self.failovers.running(cluster)
    }

    /// The primary of `cluster` that a running failover or switchover replaces (writes bound
    /// for it wait); `None` when none runs.
    #[inline]
    pub fn failover_replacing(&self, cluster: &str) -> Option<String> {
        if !self.failovers.running(cluster) {
            return None;
        }
        self.failovers.replacing(cluster)
    }

    /// Wait until no failover of `cluster` runs, at most `limit`. `true` when none runs.
    pub async fn wait_failover(&self, cluster: &str, limit: Duration) -> bool {
        self.failovers.wait_idle(cluster, limit).await
    }
}
