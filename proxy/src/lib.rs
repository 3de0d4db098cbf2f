//! Switchyard's HTTP data plane.
//!
//! [`HttpPlane::build`] turns a validated config into an [`HttpRuntime`] (route table and
//! upstream pools) without side effects; [`HttpPlane::swap`] makes it live. The runtime sits
//! behind one `ArcSwap`, loaded once per request, so a reload never disturbs a request in
//! flight.
//!
//! TODO(issue 3): serve the listeners on pingora; balancing, passive and active health,
//! retries, blue/green flips.

#![forbid(unsafe_code)]

pub mod routing;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde_json::json;
use switchyard_config::Config;

pub use routing::RouteTable;

/// Why a config cannot be turned into an HTTP runtime.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Everything the HTTP plane needs for one config.
#[derive(Debug)]
pub struct HttpRuntime {
    pub routes: RouteTable,
    /// The whole applied config, shared with the control plane (not copied).
    pub config: Arc<Config>,
}

/// The HTTP plane: the live runtime and the state that outlives reloads.
#[derive(Debug, Default)]
pub struct HttpPlane {
    /// `None` until the first config is applied.
    runtime: ArcSwapOption<HttpRuntime>,
}

impl HttpPlane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a runtime for `config`. No side effects.
    pub fn build(&self, config: &Arc<Config>) -> Result<HttpRuntime, BuildError> {
        for (i, l) in config.http.listeners.iter().enumerate() {
            for (j, t) in l.tls.iter().enumerate() {
                for (what, p) in [("cert", &t.cert), ("key", &t.key)] {
                    if let Err(e) = std::fs::metadata(p) {
                        return Err(BuildError::Invalid {
                            path: format!("http.listeners[{i}].tls[{j}].{what}"),
                            message: format!("cannot read {}: {e}", p.display()),
                        });
                    }
                }
            }
        }
        Ok(HttpRuntime {
            routes: RouteTable::new(&config.http.routes),
            config: config.clone(),
        })
    }

    /// Make `runtime` the live one.
    pub fn swap(&self, runtime: HttpRuntime) {
        self.runtime.store(Some(Arc::new(runtime)));
    }

    /// The live runtime, once a config has been applied.
    pub fn runtime(&self) -> Option<Arc<HttpRuntime>> {
        self.runtime.load_full()
    }

    /// State for `/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let Some(rt) = self.runtime.load_full() else {
            return json!({ "serving": false, "configured": false });
        };
        let http = &rt.config.http;
        let upstreams: serde_json::Map<String, serde_json::Value> = http
            .upstreams
            .iter()
            .map(|(name, u)| {
                let pools: serde_json::Map<String, serde_json::Value> = u
                    .pools
                    .iter()
                    .map(|(pname, p)| {
                        let backends: Vec<_> = p
                            .backends
                            .iter()
                            .map(
                                |b| json!({ "addr": b.addr, "weight": b.weight, "state": b.state }),
                            )
                            .collect();
                        (
                            pname.clone(),
                            json!({ "weight": p.weight, "backends": backends }),
                        )
                    })
                    .collect();
                (
                    name.clone(),
                    json!({ "balance": u.balance, "pools": pools }),
                )
            })
            .collect();
        let listeners: Vec<_> = http
            .listeners
            .iter()
            .map(|l| json!({ "name": l.name, "addr": l.addr, "tls": !l.tls.is_empty() }))
            .collect();
        json!({
            "serving": false,
            "note": "the HTTP data plane does not serve traffic yet (issue 3); this is the applied configuration",
            "listeners": listeners,
            "routes": http.routes.len(),
            "upstreams": upstreams,
        })
    }
}
