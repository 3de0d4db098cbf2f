//! `/v1/status` for the HTTP plane: listeners, upstreams, pool weights and every backend's
//! state (healthy, ejected until T, draining, down by active check), in-flight count and
//! recent failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::registry::Health;
use crate::HttpRuntime;

pub(crate) fn status(
    runtime: Option<Arc<HttpRuntime>>,
    serving: Vec<(String, SocketAddr, bool, switchyard_config::Http1Engine)>,
) -> Value {
    let Some(rt) = runtime else {
        return json!({ "serving": false, "configured": false });
    };
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut upstreams = serde_json::Map::new();
    let mut names: Vec<&String> = rt.upstreams.keys().collect();
    names.sort();
    for name in names {
        let up = &rt.upstreams[name];
        let window = up.config.fail_timeout.max(Duration::from_secs(1));
        let mut pools = serde_json::Map::new();
        for pool in &up.pools {
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .map(|b| {
                    let (state, until) = match b.state.health(now) {
                        _ if b.draining => ("draining", None),
                        Health::Down => ("down", None),
                        Health::Ejected(t) => {
                            let at = wall + t.saturating_duration_since(now);
                            let at = time_rfc3339(at);
                            ("ejected", Some(at))
                        }
                        Health::Up => ("healthy", None),
                    };
                    json!({
                        "addr": b.addr,
                        "weight": b.weight,
                        "state": state,
                        "ejected_until": until,
                        "in_flight": b.state.in_flight(),
                        "recent_failures": b.state.recent_failures(now, window),
                    })
                })
                .collect();
            pools.insert(
                pool.name.clone(),
                json!({ "weight": pool.weight, "backends": backends }),
            );
        }
        upstreams.insert(
            name.clone(),
            json!({ "balance": up.config.balance, "pools": pools }),
        );
    }
    let listeners: Vec<Value> = rt
        .config
        .http
        .listeners
        .iter()
        .map(|l| json!({ "name": l.name, "addr": l.addr, "tls": !l.tls.is_empty(), "health_path": l.health_path }))
        .collect();
    let configured: Vec<_> = rt
        .config
        .http
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.addr, !l.tls.is_empty(), l.http1))
        .collect();
    let restart_required = if serving != configured {
        vec![format!(
            "http.listeners changed: serving {} listener(s) as started; restart to apply listener changes",
            serving.len()
        )]
    } else {
        Vec::new()
    };
    json!({
        "serving": !serving.is_empty(),
        "restart_required": restart_required,
        "listeners": listeners,
        "routes": rt.config.http.routes.len(),
        "upstreams": upstreams,
    })
}

fn time_rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
