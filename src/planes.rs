//! Wiring: the HTTP and Postgres planes plugged into the control plane's [`Plane`] seam.

use std::sync::Arc;

use switchyard_config::Config;
use switchyard_control::{BackendView, LatencyCounts, Plane, PoolCounts, Prepared, TrafficStats};
use switchyard_dbrouter::{DbPlane, DbRuntime};
use switchyard_proxy::registry::Health;
use switchyard_proxy::{HttpPlane, HttpRuntime};

/// The HTTP plane as the applier sees it.
pub struct Http(pub Arc<HttpPlane>);

struct PreparedHttp(Arc<HttpPlane>, HttpRuntime);

impl Plane for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn prepare(&self, config: &Arc<Config>) -> Result<Box<dyn Prepared>, String> {
        let rt = self.0.build(config).map_err(|e| e.to_string())?;
        Ok(Box::new(PreparedHttp(self.0.clone(), rt)))
    }
    fn status(&self) -> serde_json::Value {
        self.0.status()
    }
}

impl TrafficStats for Http {
    fn pool_counts(&self, upstream: &str, pool: &str) -> Option<PoolCounts> {
        let (requests, errors) = self.0.pool_counts(upstream, pool)?;
        Some(PoolCounts { requests, errors })
    }

    fn backend(&self, addr: &str) -> Option<BackendView> {
        use std::sync::atomic::Ordering::Relaxed;
        let b = self.0.backend_state(addr)?;
        let counts = PoolCounts {
            requests: b.requests.load(Relaxed),
            errors: b.failures.load(Relaxed),
        };
        let healthy = b.health(std::time::Instant::now()) != Health::Down;
        Some(BackendView {
            counts,
            in_flight: b.in_flight(),
            healthy,
            last_check: b.last_check().map(|c| (c.at, c.ok, c.version)),
            latency: LatencyCounts {
                bounds_us: &switchyard_proxy::latency::BOUNDS_US,
                counts: b.latency.snapshot().to_vec(),
            },
        })
    }
}

impl Prepared for PreparedHttp {
    fn commit(self: Box<Self>) {
        self.0.swap(self.1);
    }
}

/// The Postgres plane as the applier sees it.
pub struct Postgres(pub Arc<DbPlane>);

struct PreparedPostgres(Arc<DbPlane>, DbRuntime);

impl Plane for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn prepare(&self, config: &Arc<Config>) -> Result<Box<dyn Prepared>, String> {
        let rt = self.0.build(config).map_err(|e| e.to_string())?;
        Ok(Box::new(PreparedPostgres(self.0.clone(), rt)))
    }
    fn status(&self) -> serde_json::Value {
        self.0.status()
    }
}

impl Prepared for PreparedPostgres {
    fn commit(self: Box<Self>) {
        self.0.swap(self.1);
    }
}
