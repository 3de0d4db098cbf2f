//! What every API handler can reach: the applier, the metrics handle, the runtime
//! operations' state and the planes' hooks. Below every handler; imports none of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::applier::Applier;

/// Largest request body accepted: a config at the size limit, plus slack.
pub const MAX_BODY_BYTES: usize = switchyard_config::MAX_CONFIG_BYTES + 64 * 1024;

/// What every request handler can reach.
pub struct ApiState {
    pub applier: Arc<Applier>,
    pub metrics: Option<PrometheusHandle>,
    /// Where the API actually listens.
    pub bound: SocketAddr,
    pub started: Instant,
    /// The HTTP plane's counters, for flip verification; `None` without an HTTP plane.
    pub traffic: Option<Arc<dyn crate::plane::TrafficStats>>,
    /// Runtime operations' state (flips being verified); `Ops::default()`.
    pub ops: crate::ops::Ops,
    /// The Postgres router's operations (promote, switchover, rejoin), when it runs.
    pub clusters: Option<Arc<dyn crate::plane::ClusterOps>>,
}

impl ApiState {
    /// API state with fresh runtime-operation state.
    pub fn new(
        applier: Arc<Applier>,
        metrics: Option<PrometheusHandle>,
        bound: SocketAddr,
        traffic: Option<Arc<dyn crate::plane::TrafficStats>>,
    ) -> Self {
        ApiState {
            applier,
            metrics,
            bound,
            started: Instant::now(),
            traffic,
            ops: crate::ops::Ops::default(),
            clusters: None,
        }
    }
}
