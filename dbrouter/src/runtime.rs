//! What one applied config means to the router: per cluster, where its primary is, which
//! users may log in and how, and the pool settings. Built by [`build`] without side effects
//! (passwords from the environment are read here, so a missing one refuses the config instead
//! of failing at the first login) and swapped in whole by the plane; every part reads it
//! through [`Live`].
//!
//! Sessions look their cluster up by name once, when they start, and keep that
//! `Arc<ClusterRuntime>`: a reload changes what new sessions get and never disturbs a running
//! one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_config::{
    Address, ClientAuth, Cluster, Config, NodeRole, PoolMode, PoolSettings, Secret,
};

use arc_swap::ArcSwapOption;

use crate::classify::Classifier;

/// Why a config cannot be turned into a Postgres runtime.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The live runtime, as every part reads it: one `ArcSwap` for the whole plane, swapped by
/// the plane on each applied config. Cheap to clone (one `Arc`), so spawned tasks keep their
/// own. Load it once per transaction, never across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct Live(Arc<ArcSwapOption<DbRuntime>>);

impl Live {
    /// The live runtime, once a config has been applied.
    #[inline]
    pub fn load(&self) -> Option<Arc<DbRuntime>> {
        self.0.load_full()
    }

    /// The live runtime of cluster `name`, if it is configured.
    #[inline]
    pub fn cluster(&self, name: &str) -> Option<Arc<ClusterRuntime>> {
        self.0
            .load()
            .as_ref()
            .and_then(|rt| rt.clusters.get(name).cloned())
    }

    /// Make `runtime` the live one.
    pub fn store(&self, runtime: DbRuntime) {
        self.0.store(Some(Arc::new(runtime)));
    }
}

/// Everything the router needs for one config.
#[derive(Debug)]
pub struct DbRuntime {
    /// The whole applied config, shared with the control plane (not copied).
    pub config: Arc<Config>,
    /// Clusters by name.
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
}

/// One cluster as the router serves it.
#[derive(Debug)]
pub struct ClusterRuntime {
    pub name: String,
    /// The configured listen address (the bound one can differ only across a restart).
    pub listen: SocketAddr,
    pub pool_mode: PoolMode,
    /// The node writes go to: the one with `role = "primary"`.
    pub primary: Address,
    pub replicas: Vec<Address>,
    /// Users by name.
    pub users: HashMap<String, Arc<UserRuntime>>,
    pub pool: PoolSettings,
    /// The cluster as configured (routing settings, nodes), for replica selection.
    pub config: Cluster,
    /// Read/write classification of this cluster's statements, when
    /// `routing.read_write_split` is on (rebuilt with the runtime on every reload).
    pub classifier: Option<Arc<Classifier>>,
    /// TLS offered to clients (files read at build), if configured.
    pub tls: Option<Arc<crate::net::tls::ClientTls>>,
    /// TLS to this cluster's servers.
    pub server_tls: Arc<crate::net::tls::ServerTls>,
}

/// A user: how clients prove they are it, and what Switchyard logs in to servers with.
pub struct UserRuntime {
    pub name: String,
    /// Resolved (an environment variable has been read).
    pub password: Option<String>,
    pub client_auth: ClientAuth,
}

impl std::fmt::Debug for UserRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRuntime")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

/// Build a runtime for `config`.
pub fn build(config: &Arc<Config>) -> Result<DbRuntime, BuildError> {
    let mut clusters = HashMap::new();
    for (i, c) in config.postgres.clusters.iter().enumerate() {
        let mut users = HashMap::new();
        for (j, u) in c.users.iter().enumerate() {
            let password = match &u.password {
                None => None,
                Some(Secret::Value(v)) => Some(v.clone()),
                Some(Secret::Env(var)) => {
                    Some(std::env::var(var).map_err(|e| BuildError::Invalid {
                        path: format!("postgres.clusters[{i}].users[{j}].password_env"),
                        message: match e {
                            std::env::VarError::NotPresent => {
                                format!("environment variable {var} is not set")
                            }
                            std::env::VarError::NotUnicode(_) => {
                                format!("environment variable {var} is not valid UTF-8")
                            }
                        },
                    })?)
                }
            };
            if password.is_none() && u.client_auth != ClientAuth::Trust {
                return Err(BuildError::Invalid {
                    path: format!("postgres.clusters[{i}].users[{j}]"),
                    message: "a password is needed unless client_auth = \"trust\"".into(),
                });
            }
            users.insert(
                u.name.clone(),
                Arc::new(UserRuntime {
                    name: u.name.clone(),
                    password,
                    client_auth: u.client_auth,
                }),
            );
        }
        let primary = c
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::Primary)
            .map(|n| n.addr.clone())
            .ok_or_else(|| BuildError::Invalid {
                path: format!("postgres.clusters[{i}].nodes"),
                message: "no node with role = \"primary\"".into(),
            })?;
        let replicas = c
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Replica)
            .map(|n| n.addr.clone())
            .collect();
        let (tls, server_tls) =
            crate::net::tls::for_cluster(c, i).map_err(|e| BuildError::Invalid {
                path: e.path,
                message: e.message,
            })?;
        clusters.insert(
            c.name.clone(),
            Arc::new(ClusterRuntime {
                name: c.name.clone(),
                listen: c.listen,
                pool_mode: c.pool_mode,
                primary,
                replicas,
                users,
                pool: c.pool.clone(),
                config: c.clone(),
                classifier: c
                    .routing
                    .read_write_split
                    .then(|| Arc::new(Classifier::new(&c.routing))),
                tls,
                server_tls,
            }),
        );
    }
    Ok(DbRuntime {
        config: config.clone(),
        clusters,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(text: &str) -> Arc<Config> {
        Arc::new(switchyard_config::parse(text).unwrap())
    }

    const CLUSTER: &str = r#"
[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:0"
nodes = [{ addr = "127.0.0.1:5432", role = "primary" }, { addr = "db2:5433", role = "replica" }]
users = [
  { name = "app", password = "pw" },
  { name = "ops", password_env = "SWITCHYARD_TEST_RUNTIME_UNSET", client_auth = "md5" },
  { name = "cron", client_auth = "trust" },
]
"#;

    #[test]
    fn a_missing_password_variable_refuses_the_config() {
        let e = build(&config(CLUSTER)).unwrap_err();
        assert!(
            e.to_string().contains("users[1].password_env")
                && e.to_string().contains("SWITCHYARD_TEST_RUNTIME_UNSET"),
            "{e}"
        );
    }

    #[test]
    fn builds_clusters_with_their_primary_and_users() {
        let text = CLUSTER.replace("SWITCHYARD_TEST_RUNTIME_UNSET", "PATH");
        let rt = build(&config(&text)).unwrap();
        let c = &rt.clusters["main"];
        assert_eq!(c.primary.to_string(), "127.0.0.1:5432");
        assert_eq!(c.replicas[0].to_string(), "db2:5433");
        assert_eq!(c.users["app"].client_auth, ClientAuth::ScramSha256);
        assert_eq!(c.users["app"].password.as_deref(), Some("pw"));
        assert_eq!(c.users["ops"].client_auth, ClientAuth::Md5);
        assert!(c.users["cron"].password.is_none());
        assert!(!format!("{:?}", c.users["app"]).contains("pw\""));
    }
}
