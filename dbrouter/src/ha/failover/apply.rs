//! How role changes take effect in the router at once, before and whether or not the control
//! plane's writer records them ([`apply_roles`]), and the fences a new config must respect
//! ([`check_fences`], [`install`]).

use std::sync::Arc;

use switchyard_config::{Config, NodeRole};

use super::roles::{change_roles, RoleChange};
use super::state::Failovers;
use crate::runtime::{self, BuildError, DbRuntime, Live};

/// Refuse a config that would undo a fence of this process: a node fenced after a failover
/// or switchover stays fenced until it is rejoined, so a config that makes it the primary
/// again, or drops its `fenced` mark, is refused (an operator's stale file must not undo a
/// failover).
pub fn check_fences(failovers: &Failovers, config: &Config) -> Result<(), BuildError> {
    for (i, c) in config.postgres.clusters.iter().enumerate() {
        for (j, n) in c.nodes.iter().enumerate() {
            let addr = n.addr.to_string();
            let Some(fence) = failovers.fenced(&addr) else {
                continue;
            };
            if n.role == NodeRole::Primary || n.fenced.is_none() {
                return Err(BuildError::Invalid {
                    path: format!("postgres.clusters[{i}].nodes[{j}]"),
                    message: format!(
                        "node {addr} was fenced ({}); it gets no traffic until an operator rejoins it (POST /v1/clusters/{}/nodes/{addr}/rejoin)",
                        fence.reason, c.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Make `runtime` the live one. Nodes its config marks fenced are remembered as fenced (see
/// [`check_fences`]).
pub fn install(live: &Live, failovers: &Failovers, runtime: DbRuntime) {
    for c in &runtime.config.postgres.clusters {
        for n in &c.nodes {
            if let Some(reason) = &n.fenced {
                let addr = n.addr.to_string();
                if failovers.fenced(&addr).is_none() {
                    failovers.fence(&addr, reason);
                }
            }
        }
    }
    live.store(runtime);
}

/// Apply a role change to the running runtime at once, before (and whether or not) the
/// control plane records it in the config: after a promotion, writes must go to the new
/// primary without waiting for the writer.
pub fn apply_roles(live: &Live, failovers: &Failovers, change: &RoleChange) -> Result<(), String> {
    let rt = live.load().ok_or("no config applied yet")?;
    let mut config = (*rt.config).clone();
    let cluster = config
        .postgres
        .clusters
        .iter_mut()
        .find(|c| c.name == change.cluster)
        .ok_or_else(|| format!("no cluster named {:?}", change.cluster))?;
    change_roles(cluster, change);
    let built = runtime::build(&Arc::new(config)).map_err(|e| e.to_string())?;
    install(live, failovers, built);
    Ok(())
}
