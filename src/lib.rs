//! Wiring shared by the `switchyard` binary and the benchmarks: the data planes plugged into
//! the control plane. Holds no logic of its own.

#![forbid(unsafe_code)]

pub mod build_info;
pub mod pgops;
pub mod planes;

use std::sync::Arc;

use switchyard_control::{Plane, TrafficStats};
use switchyard_dbrouter::DbPlane;
use switchyard_proxy::HttpPlane;

/// The data planes of one Switchyard process.
#[derive(Clone, Default)]
pub struct Planes {
    pub http: Arc<HttpPlane>,
    pub postgres: Arc<DbPlane>,
}

impl Planes {
    pub fn new() -> Self {
        Self::default()
    }

    /// The planes as the applier sees them.
    pub fn list(&self) -> Vec<Arc<dyn Plane>> {
        vec![
            Arc::new(planes::Http(self.http.clone())),
            Arc::new(planes::Postgres(self.postgres.clone())),
        ]
    }

    /// The HTTP plane's counters, for blue/green flip verification.
    pub fn traffic(&self) -> Arc<dyn TrafficStats> {
        Arc::new(planes::Http(self.http.clone()))
    }
}

/// The data planes, as the applier sees them (for benchmarks and tests).
pub fn planes() -> Vec<Arc<dyn Plane>> {
    Planes::new().list()
}
