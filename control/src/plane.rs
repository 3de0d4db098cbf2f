//! The seam between the control plane and the data planes.
//!
//! A data plane (HTTP proxy, Postgres router) is driven only through [`Plane`]: the applier
//! asks every plane to [`Plane::prepare`] a runtime for a new config, and only when all of
//! them succeed does it [`Prepared::commit`] each one. Preparing must have no visible effect,
//! so a config that one plane rejects changes nothing anywhere. The binary wires the
//! concrete planes in; this crate never depends on them.

use std::sync::Arc;

use switchyard_config::Config;

/// A data plane driven by the applier.
pub trait Plane: Send + Sync + 'static {
    /// Short name used in status output and errors (`http`, `postgres`).
    fn name(&self) -> &'static str;

    /// Build this plane's runtime for `config` without touching the running one. The error
    /// is shown to the operator as is: name the key and the cause.
    fn prepare(&self, config: &Arc<Config>) -> Result<Box<dyn Prepared>, String>;

    /// The plane's state for `GET /v1/status`.
    fn status(&self) -> serde_json::Value;
}

/// A runtime built by [`Plane::prepare`], waiting to go live.
pub trait Prepared: Send {
    /// Make this runtime the live one. Must not fail: everything fallible belongs in
    /// `prepare`.
    fn commit(self: Box<Self>);
}

/// Attempt counters of one pool of an HTTP upstream, as the data plane counts them:
/// every attempt to a backend of the pool, and those that failed (connect errors, timeouts,
/// resets, 5xx responses). Both only grow; a reader takes differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolCounts {
    pub requests: u64,
    pub errors: u64,
}

/// One backend as the HTTP plane sees it now, for rollouts: its counters (they only grow),
/// requests in flight, and the active health checker's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendView {
    pub counts: PoolCounts,
    pub in_flight: u64,
    /// Active health does not say "down" (passive ejection aside).
    pub healthy: bool,
    /// The latest active check: when it started, whether it passed, the version it reported.
    pub last_check: Option<(std::time::Instant, bool, Option<String>)>,
    /// How long its attempts took, bucketed (the counts only grow).
    pub latency: LatencyCounts,
}

/// Attempt durations, bucketed: `counts[i]` took more than `bounds_us[i - 1]` and at most
/// `bounds_us[i]` microseconds; one more count, past the last bound, holds the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencyCounts {
    pub bounds_us: &'static [u64],
    pub counts: Vec<u64>,
}

/// Read access to the HTTP plane's traffic counters, for verifying blue/green flips and
/// rollout batches.
pub trait TrafficStats: Send + Sync + 'static {
    /// Counters of `pool` in `upstream`; `None` if the plane has no such pool.
    fn pool_counts(&self, upstream: &str, pool: &str) -> Option<PoolCounts>;

    /// The backend `addr` on this node; `None` if the plane has never seen it.
    fn backend(&self, _addr: &str) -> Option<BackendView> {
        None
    }

    /// The counters of backend `addr` (attempts, failures, latency buckets) on every node
    /// that reports them, by node id: this node's own under `""` first, then, with a shared
    /// store, the other nodes'. Empty if this node has never seen `addr`.
    fn backend_by_node(&self, addr: &str) -> Vec<(String, PoolCounts, LatencyCounts)> {
        self.backend(addr)
            .map(|v| vec![(String::new(), v.counts, v.latency)])
            .unwrap_or_default()
    }
}

/// A Postgres operation the control API passes to the router: promote, switchover, rejoin.
/// The binary plugs the router in; `control` does not depend on it.
pub trait ClusterOps: Send + Sync + 'static {
    /// Run `op` on cluster `cluster` for `actor` (a token name). The answer is a JSON
    /// document, or an HTTP status with the reason.
    fn run(
        &self,
        cluster: &str,
        op: ClusterOp,
        actor: &str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, OpError>> + Send + 'static>,
    >;
}

/// What to do to a Postgres cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOp {
    /// Promote this replica now; the old primary is fenced.
    Promote { node: String },
    /// Planned switchover to this replica.
    Switchover { to: String },
    /// Lift the fence of this node (rebuilt as a replica).
    Rejoin { node: String },
}

impl ClusterOp {
    /// The audit action.
    pub fn action(&self) -> &'static str {
        match self {
            ClusterOp::Promote { .. } => "postgres.promote",
            ClusterOp::Switchover { .. } => "postgres.switchover",
            ClusterOp::Rejoin { .. } => "postgres.rejoin",
        }
    }
}

/// Why a cluster operation was refused or failed: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub status: u16,
    pub message: String,
    /// What was done before it failed (a history record), if anything.
    pub detail: Option<serde_json::Value>,
}
