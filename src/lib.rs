//! Wiring shared by the `switchyard` binary and the benchmarks: the data planes plugged into
//! the control plane. Holds no logic of its own.

#![forbid(unsafe_code)]

pub mod planes;

use std::sync::Arc;

/// The data planes of one Switchyard process, as the applier sees them.
pub fn planes() -> Vec<Arc<dyn switchyard_control::Plane>> {
    let http = Arc::new(switchyard_proxy::HttpPlane::new());
    let postgres = Arc::new(switchyard_dbrouter::DbPlane::new());
    vec![
        Arc::new(planes::Http(http)),
        Arc::new(planes::Postgres(postgres)),
    ]
}
