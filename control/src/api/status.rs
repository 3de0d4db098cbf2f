//! `GET /v1/status`: what is running, since when, applied by whom, each plane's state and
//! the store's; `GET /v1/fleet`: every node sharing the store, and whether they converged.

use http::{Response, StatusCode};

use super::response::{error, json, Body};
use super::state::ApiState;

pub fn status(state: &ApiState) -> Response<Body> {
    let applied = state.applier.current();
    let rt = state.applier.runtime();
    let mut planes = serde_json::Map::new();
    for plane in state.applier.planes() {
        planes.insert(plane.name().to_string(), plane.status());
    }
    let mut restart_required = Vec::new();
    if rt.listen != state.bound && rt.listen.port() != 0 {
        restart_required.push(format!(
            "control.listen is {} but the API listens on {}: restart to move it",
            rt.listen, state.bound
        ));
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "version": applied.snapshot.version,
            "hash": applied.snapshot.hash,
            "applied_at": applied.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "applied_by": applied.actor.name,
            "applied_from": applied.actor.remote,
            "source": applied.origin,
            "config_path": state.applier.config_path().display().to_string(),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "last_reload_error": state.applier.last_error().as_deref(),
            "restart_required": restart_required,
            "store": state.applier.store().status(),
            "flips": state.ops.flips.all(),
            "planes": planes,
        }),
    )
}

/// `GET /v1/fleet`: 404 without a shared store, 503 while it is unreachable.
pub async fn fleet(state: &ApiState) -> Response<Body> {
    let Some(store) = state.applier.store().etcd() else {
        return error(
            StatusCode::NOT_FOUND,
            "this node has no fleet: store.kind is \"file\"",
        );
    };
    match crate::store::fleet::fleet(store).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("config store unreachable: {e}"),
        ),
    }
}
