//! Switchyard's Postgres router.
//!
//! [`DbPlane::build`] turns a validated config into a [`DbRuntime`] (clusters, nodes, users)
//! without side effects; [`DbPlane::swap`] makes it live behind one `ArcSwap`.
//!
//! TODO(issue 4): the wire protocol, pools and read/write split; TODO(issue 5): failover.

#![forbid(unsafe_code)]

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde_json::json;
use switchyard_config::Config;

/// Why a config cannot be turned into a Postgres runtime.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Everything the router needs for one config.
#[derive(Debug)]
pub struct DbRuntime {
    /// The whole applied config, shared with the control plane (not copied).
    pub config: Arc<Config>,
}

/// The Postgres plane.
#[derive(Debug, Default)]
pub struct DbPlane {
    /// `None` until the first config is applied.
    runtime: ArcSwapOption<DbRuntime>,
}

impl DbPlane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a runtime for `config`. No side effects. Password environment variables must be
    /// set: a cluster that could not log in to its servers is refused now, not at first use.
    pub fn build(&self, config: &Arc<Config>) -> Result<DbRuntime, BuildError> {
        for (i, c) in config.postgres.clusters.iter().enumerate() {
            for (j, u) in c.users.iter().enumerate() {
                if let Some(switchyard_config::Secret::Env(var)) = &u.password {
                    if std::env::var_os(var).is_none() {
                        return Err(BuildError::Invalid {
                            path: format!("postgres.clusters[{i}].users[{j}].password_env"),
                            message: format!("environment variable {var} is not set"),
                        });
                    }
                }
            }
        }
        Ok(DbRuntime {
            config: config.clone(),
        })
    }

    pub fn swap(&self, runtime: DbRuntime) {
        self.runtime.store(Some(Arc::new(runtime)));
    }

    pub fn runtime(&self) -> Option<Arc<DbRuntime>> {
        self.runtime.load_full()
    }

    /// State for `/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let Some(rt) = self.runtime.load_full() else {
            return json!({ "serving": false, "configured": false });
        };
        let clusters: Vec<_> = rt
            .config
            .postgres
            .clusters
            .iter()
            .map(|c| {
                let nodes: Vec<_> = c
                    .nodes
                    .iter()
                    .map(|n| json!({ "addr": n.addr, "role": n.role, "fenced": n.fenced }))
                    .collect();
                json!({ "name": c.name, "listen": c.listen, "pool_mode": c.pool_mode, "nodes": nodes })
            })
            .collect();
        json!({
            "serving": false,
            "note": "the Postgres router does not serve traffic yet (issue 4); this is the applied configuration",
            "clusters": clusters,
        })
    }
}
