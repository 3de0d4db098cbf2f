//! Postgres high availability: what the router does when a primary fails, and the operator's
//! promote, switchover and rejoin.
//!
//! - Detection is the node monitor's ([`crate::ha::monitor`]): `failure_threshold` failed checks
//!   in a row mark a node down. [`run`] watches every cluster's primary and, with
//!   `failover.auto_promote`, starts a failover ([`procedure`]) when it goes down.
//! - Before promoting, the replicas are asked for a second opinion ([`probe`]): when one of
//!   them still streams WAL from the primary, only the link between Switchyard and the
//!   primary is broken, and nothing is promoted.
//! - The most advanced replica (received WAL, then `priority`) is promoted with
//!   `pg_promote(wait => true)` and checked with `pg_is_in_recovery()`; the other replicas
//!   are re-pointed at it (`ALTER SYSTEM SET primary_conninfo`, `pg_reload_conf()`); with
//!   synchronous replication on, only a replica the primary last reported as synchronous may
//!   be chosen.
//! - The outcome reaches the config through a [`FailoverSink`] (the control plane's single
//!   writer, so it is versioned, persisted, in the history and audited): the new primary gets
//!   `role = "primary"` and the old one `role = "replica"` and `fenced = "<reason>"`. The
//!   plane also remembers what it fenced ([`Failovers::fenced`]), so a config that makes a
//!   fenced node the primary again is refused until the operator rejoins it.
//! - While a failover runs, new write turns wait for it (up to
//!   `failover.write_pause_timeout`, [`Failovers::wait_idle`]); reads keep flowing to healthy
//!   replicas.
//!
//! State here is per cluster name and outlives reloads, like the monitor's.

mod arbitration;
mod conninfo;
pub mod lease;
pub mod probe;
pub mod procedure;
mod rejoin;
mod run;
mod state;
mod switchover;

pub use procedure::{start, Outcome, Request};
pub use rejoin::{rejoin, Refusal};
pub use run::run;
pub use state::{Attempt, ClusterFailover, Fence, Phase};

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

/// A change of node roles for the config: made by a failover or an operator's promote,
/// switchover or rejoin, and applied by the control plane as a new config version.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleChange {
    pub cluster: String,
    /// The node to make the primary (`None`: leave the primary as it is).
    pub primary: Option<String>,
    /// Nodes to mark `role = "replica"` and `fenced = reason`.
    pub fence: Vec<(String, String)>,
    /// Nodes to mark `role = "replica"` without fencing (a switchover's old primary).
    pub demote: Vec<String>,
    /// Nodes whose `fenced` mark is removed (rejoined as replicas).
    pub unfence: Vec<String>,
    /// Audit action (`postgres.failover`, `postgres.switchover`, …).
    pub action: &'static str,
    /// Who asked (`failover` for the router itself, or a token name).
    pub actor: String,
    /// What the audit line says about it.
    pub detail: serde_json::Value,
}

/// Apply `change` to the nodes of `cluster` (the config model; the config text is edited
/// by the control plane the same way).
pub fn change_roles(cluster: &mut switchyard_config::Cluster, change: &RoleChange) {
    use switchyard_config::NodeRole;
    let is = |list: &[String], addr: &str| list.iter().any(|a| a == addr);
    for n in &mut cluster.nodes {
        let addr = n.addr.to_string();
        if change.primary.as_deref() == Some(addr.as_str()) {
            n.role = NodeRole::Primary;
            n.fenced = None;
        } else if let Some((_, why)) = change.fence.iter().find(|(a, _)| *a == addr) {
            n.role = NodeRole::Replica;
            n.fenced = Some(why.clone());
        } else if is(&change.demote, &addr)
            || (change.primary.is_some() && n.role == NodeRole::Primary)
        {
            n.role = NodeRole::Replica;
        }
        if is(&change.unfence, &addr) {
            n.fenced = None;
        }
    }
}

/// Where role changes go: the control plane's writer. Returns the new config version.
pub trait FailoverSink: Send + Sync + 'static {
    fn apply(
        &self,
        change: RoleChange,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + 'static>>;
}

/// Failover state of every cluster, by name, and what this process has fenced.
#[derive(Default)]
pub struct Failovers {
    clusters: DashMap<String, Arc<ClusterFailover>>,
    /// Nodes fenced by this process, by address, until rejoined.
    fenced: DashMap<String, Fence>,
    sink: OnceLock<Arc<dyn FailoverSink>>,
}

impl std::fmt::Debug for Failovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failovers")
            .field("clusters", &self.clusters.len())
            .field("fenced", &self.fenced.len())
            .field("sink", &self.sink.get().is_some())
            .finish()
    }
}

impl Failovers {
    /// Plug in the control plane's writer (once, at start-up).
    pub fn set_sink(&self, sink: Arc<dyn FailoverSink>) {
        let _ = self.sink.set(sink);
    }

    pub(crate) fn sink(&self) -> Option<Arc<dyn FailoverSink>> {
        self.sink.get().cloned()
    }

    /// The state of `cluster` (created on first use).
    pub fn cluster(&self, cluster: &str) -> Arc<ClusterFailover> {
        if let Some(c) = self.clusters.get(cluster) {
            return c.clone();
        }
        self.clusters
            .entry(cluster.to_string())
            .or_default()
            .clone()
    }

    /// Whether a failover or switchover of `cluster` is under way.
    pub fn running(&self, cluster: &str) -> bool {
        self.clusters
            .get(cluster)
            .is_some_and(|c| c.phase().is_some())
    }

    /// Wait until no failover of `cluster` runs, at most `limit`. `true` when none runs.
    pub async fn wait_idle(&self, cluster: &str, limit: Duration) -> bool {
        let Some(c) = self.clusters.get(cluster).map(|c| c.clone()) else {
            return true;
        };
        c.wait_idle(limit).await
    }

    /// Remember that `addr` was fenced.
    pub fn fence(&self, addr: &str, reason: &str) {
        self.fenced.insert(
            addr.to_string(),
            Fence {
                reason: reason.to_string(),
                at: SystemTime::now(),
            },
        );
    }

    /// Forget the fence of `addr` (the operator rejoined it).
    pub fn unfence(&self, addr: &str) {
        self.fenced.remove(addr);
    }

    /// Why and when this process fenced `addr`, if it did.
    pub fn fenced(&self, addr: &str) -> Option<Fence> {
        self.fenced.get(addr).map(|f| f.clone())
    }

    /// Status of every cluster that had a failover, for `/v1/status`.
    pub fn status_of(&self, cluster: &str) -> serde_json::Value {
        match self.clusters.get(cluster) {
            Some(c) => c.status(),
            None => serde_json::json!({ "phase": null, "history": [] }),
        }
    }
}
