//! [`DbPlane`]: the Postgres plane, which holds the state that outlives reloads (each
//! part's own registry) and wires the parts together. It hands each part the handles it uses
//! ([`DbPlane::services`] to the client side, [`DbPlane::ha`] to the monitor and failover,
//! [`DbPlane::verdicts`] to the data path), and nothing below this folder sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use switchyard_config::Config;

use crate::cancel::CancelRegistry;
use crate::client::admission::Admission;
use crate::client::auth::ScramKeyCache;
use crate::client::Services;
use crate::ha::failover::{self, Failovers, RoleChange};
use crate::ha::monitor::{Lsn, NodeMonitor};
use crate::ha::{Ha, Verdicts};
use crate::pooling::transaction::TxNodes;
use crate::route::replicas::{self, Choice};
use crate::runtime::{self, BuildError, DbRuntime, Live};
use crate::server::pool::{NodePool, Pools};
use crate::stats::{ClusterStats, Stats};
use crate::status::{self, Serving, Sources};

/// The Postgres plane: the live runtime and the state that outlives reloads.
#[derive(Debug, Default)]
pub struct DbPlane {
    /// `None` until the first config is applied.
    live: Live,
    /// Cancel keys issued to sessions, across clusters.
    pub cancel: CancelRegistry,
    /// SCRAM keys by cluster and user, kept while the password stays.
    scram: Arc<ScramKeyCache>,
    /// Counters by cluster name.
    stats: Arc<Stats>,
    /// What the node monitor knows about each node, by address ([`crate::ha::monitor`]).
    pub monitor: Arc<NodeMonitor>,
    /// Failover state by cluster, and the nodes this process fenced ([`crate::ha::failover`]).
    pub failover: Arc<Failovers>,
    /// Server connection pools by cluster and node address.
    pools: Arc<Pools>,
    /// Transaction pooling's per-node state (prepared statement names, counters).
    tx_nodes: Arc<TxNodes>,
    /// The listeners bound at start-up.
    serving: Mutex<Vec<Serving>>,
    /// Whether [`crate::start`] ran (so clusters added later need a restart).
    started: AtomicBool,
    /// Clients admitted under each cluster's `max_client_conn`.
    pub admission: Arc<Admission>,
    /// Sessions close at their next transaction boundary once set ([`DbPlane::close_sessions`]).
    closing: crate::closing::Closing,
}

impl DbPlane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a runtime for `config`. No side effects. Password environment variables must be
    /// set: a cluster that could not log in to its servers is refused now, not at first use.
    ///
    /// A node this process fenced (after a failover or switchover) must stay fenced until it
    /// is rejoined: a config that makes it the primary again, or drops its `fenced` mark, is
    /// refused (an operator's stale file must not undo a failover).
    pub fn build(&self, config: &Arc<Config>) -> Result<DbRuntime, BuildError> {
        failover::check_fences(&self.failover, config)?;
        runtime::build(config)
    }

    /// Make `runtime` the live one. Sessions pick the cluster up again at their next turn
    /// (transaction pooling) or keep the one they started with (session pooling). Nodes the
    /// config marks fenced are remembered as fenced (see [`DbPlane::build`]).
    pub fn swap(&self, runtime: DbRuntime) {
        failover::install(&self.live, &self.failover, runtime);
    }

    /// Apply a role change to the running runtime at once, before (and whether or not) the
    /// control plane records it in the config: after a promotion, writes must go to the new
    /// primary without waiting for the writer.
    pub fn apply_roles(&self, change: &RoleChange) -> Result<(), String> {
        failover::apply_roles(&self.live, &self.failover, change)
    }

    /// The live runtime, once a config has been applied.
    pub fn runtime(&self) -> Option<Arc<DbRuntime>> {
        self.live.load()
    }

    /// Counters of cluster `name` (created on first use, kept across reloads).
    pub fn stats(&self, name: &str) -> Arc<ClusterStats> {
        self.stats.get(name)
    }

    /// Client sessions open now, in every cluster (a draining process waits for 0).
    pub fn client_sessions(&self) -> u64 {
        self.stats.clients()
    }

    /// The pool of `node` in `cluster` (created on first use, kept across reloads).
    pub fn pool(&self, cluster: &str, node: &str) -> Arc<NodePool> {
        self.pools.get(cluster, node)
    }

    /// Close idle server connections that expired, died, or whose cluster or node left the
    /// config, and pre-open `pool.min_size` on nodes that are not down. Run periodically by
    /// the listeners' runtime.
    pub fn reap_idle(&self) {
        let monitor = &self.monitor;
        self.pools.reap(self.live.load(), &self.stats, |addr| {
            monitor.view(addr).is_some_and(|v| v.down)
        });
    }

    /// `(open, idle)` server connections of `node` in `cluster`.
    pub fn pool_counts(&self, cluster: &str, node: &str) -> (usize, usize) {
        self.pools.counts(cluster, node)
    }

    /// [`crate::choose_replica`] now, with each node's outstanding work taken as its pool's
    /// server connections in use.
    pub fn choose_replica(
        &self,
        cluster: &switchyard_config::Cluster,
        min_lsn: Option<Lsn>,
    ) -> Choice {
        replicas::choose(cluster, min_lsn, &self.monitor, &self.pools)
    }

    /// Record the listeners bound at start-up (they cannot change without a restart).
    pub fn mark_serving(&self, listeners: Vec<Serving>) {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = listeners;
        self.started.store(true, Ordering::Relaxed);
    }

    /// The listeners being served.
    pub fn serving(&self) -> Vec<Serving> {
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the listeners were started (even if there were none).
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// State for `/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        status::status(&Sources {
            runtime: self.live.load(),
            serving: self.serving(),
            started: self.started(),
            stats: &self.stats,
            pools: &self.pools,
            monitor: &self.monitor,
            failovers: &self.failover,
            admission: &self.admission,
            tx_nodes: &self.tx_nodes,
        })
    }

    // === handles for the parts ===

    /// What the client side (and the pooling modes it hands clients to) works with.
    pub fn services(&self) -> Services {
        Services {
            live: self.live.clone(),
            stats: self.stats.clone(),
            admission: self.admission.clone(),
            cancel: self.cancel.clone(),
            scram: self.scram.clone(),
            pools: self.pools.clone(),
            verdicts: self.verdicts(),
            tx_nodes: self.tx_nodes.clone(),
            closing: self.closing.clone(),
        }
    }

    /// Close every client session at its next transaction boundary (57P01, then the
    /// connection closes): the end of a drain.
    pub fn close_sessions(&self) {
        self.closing.close_all();
    }

    /// Hand every transaction-pooled session over plain TCP to `sink` at its next
    /// transaction boundary (a binary upgrade; see [`crate::closing`]).
    pub fn hand_over_sessions(&self, sink: crate::closing::HandoffSink) {
        self.closing.hand_over(sink);
    }

    /// What the monitor and failover work with.
    pub fn ha(&self) -> Ha {
        Ha {
            live: self.live.clone(),
            monitor: self.monitor.clone(),
            failovers: self.failover.clone(),
            pools: self.pools.clone(),
            stats: self.stats.clone(),
        }
    }

    /// The health verdicts, read-only.
    pub fn verdicts(&self) -> Verdicts {
        Verdicts::new(self.monitor.clone(), self.failover.clone())
    }
}
