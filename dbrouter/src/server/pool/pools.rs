//! [`Pools`]: every node's pool, by cluster and node address, created on first use and kept
//! across reloads (a reload that changes the settings keeps the connections), and the
//! periodic [`Pools::reap`] that closes what expired or left the config and pre-opens
//! `pool.min_size`, and, in a cluster with the etcd failover lease (a fleet of sidecars),
//! one connection on each replica for the primary's clients, so the first writes after a
//! failover to that replica do not wait for a login.

use std::sync::Arc;

use super::node::NodePool;
use crate::registry::ByNode;
use crate::runtime::DbRuntime;
use crate::stats::Stats;

/// Server connection pools by cluster and node address.
#[derive(Debug, Default)]
pub struct Pools {
    pools: ByNode<NodePool>,
}

impl Pools {
    /// The pool of `node` in `cluster` (created on first use).
    pub fn get(&self, cluster: &str, node: &str) -> Arc<NodePool> {
        self.pools.get(cluster, node)
    }

    /// `(open, idle)` server connections of `node` in `cluster`.
    #[inline]
    pub fn counts(&self, cluster: &str, node: &str) -> (usize, usize) {
        self.pools
            .with(cluster, node, NodePool::counts)
            .unwrap_or((0, 0))
    }

    /// Close idle server connections that expired, died, or whose cluster or node left the
    /// config (`rt`: the live runtime), then pre-open `pool.min_size` connections in the
    /// background on every node not `down` (the monitor's verdict).
    pub fn reap(&self, rt: Option<Arc<DbRuntime>>, stats: &Stats, down: impl Fn(&str) -> bool) {
        self.pools.for_each(|cluster, node, pool| {
            let settings = rt
                .as_ref()
                .and_then(|rt| rt.clusters.get(cluster))
                .and_then(|c| {
                    (c.primary.to_string() == *node
                        || c.replicas.iter().any(|r| r.to_string() == *node))
                    .then(|| c.pool.clone())
                });
            match settings {
                Some(s) => pool.reap_now(&s),
                None => pool.clear(),
            }
        });
        // pool.min_size: pre-open connections in the background (pool::warm).
        let Some(rt) = rt else { return };
        for c in rt.clusters.values().filter(|c| c.pool.min_size > 0) {
            let stats = stats.get(&c.name);
            for node in std::iter::once(&c.primary).chain(&c.replicas) {
                let addr = node.to_string();
                if down(&addr) {
                    continue;
                }
                self.get(&c.name, &addr).fill_to_min(c, node, &stats);
            }
        }
        // failover.etcd: a replica another sidecar may promote keeps one connection open for
        // the primary's clients (their latest login; before any, the min_size key), so that this router's first writes
        // after following the decision find it ready (issue 9: within 1 s).
        for c in rt
            .clusters
            .values()
            .filter(|c| c.config.failover.etcd.is_some())
        {
            let primary = self.get(&c.name, &c.primary.to_string());
            let stats = stats.get(&c.name);
            for node in &c.replicas {
                let addr = node.to_string();
                if !down(&addr) {
                    self.get(&c.name, &addr)
                        .warm_like(&primary, c, node, &stats, 1);
                }
            }
        }
    }
}
