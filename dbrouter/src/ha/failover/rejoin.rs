//! Rejoin: lift the fence of a node an operator has rebuilt as a replica (for example with
//! `pg_rewind` and a `standby.signal`). Refused while the node is not in recovery, so an old
//! primary that merely came back can never take traffic again by mistake.

use super::apply::apply_roles;
use super::probe::{self, NodeLogin};
use super::roles::RoleChange;
use crate::ha::handles::Ha;

/// Why a rejoin was refused: an HTTP-like status and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: String) -> Refusal {
    Refusal { status, message }
}

/// Rejoin `node` of `cluster` as a replica: check it is one, then record the change (the
/// config's writer versions and audits it). Returns the new config version.
pub async fn rejoin(
    ha: &Ha,
    cluster: &str,
    node: &str,
    actor: &str,
) -> Result<Option<u64>, Refusal> {
    let rt = ha
        .live
        .cluster(cluster)
        .ok_or_else(|| refuse(404, format!("no cluster named {cluster:?}")))?;
    let addr = switchyard_config::parse_address(node)
        .map_err(|why| refuse(400, format!("invalid node address {node:?}: {why}")))?;
    let n = rt
        .config
        .nodes
        .iter()
        .find(|n| n.addr == addr)
        .ok_or_else(|| refuse(404, format!("cluster {cluster:?} has no node {addr}")))?;
    let name = addr.to_string();
    if n.fenced.is_none() && ha.failovers.fenced(&name).is_none() {
        return Err(refuse(409, format!("{addr} is not fenced")));
    }
    let login = NodeLogin::new(&rt, &addr)
        .ok_or_else(|| refuse(409, "the cluster has no user to log in with".into()))?;
    let limit = rt
        .config
        .failover
        .check_timeout
        .max(std::time::Duration::from_secs(1));
    let report = probe::report(&login, limit)
        .await
        .map_err(|e| refuse(409, format!("{addr} cannot be checked: {e}")))?;
    if !report.in_recovery {
        return Err(refuse(
            409,
            format!("{addr} is not in recovery: rebuild it as a replica of the current primary (pg_rewind, standby.signal) before rejoining it"),
        ));
    }
    let change = RoleChange {
        cluster: cluster.to_string(),
        primary: None,
        fence: Vec::new(),
        demote: Vec::new(),
        unfence: vec![name.clone()],
        action: "postgres.rejoin",
        actor: actor.to_string(),
        detail: serde_json::json!({ "cluster": cluster, "node": name, "streaming": report.streaming }),
    };
    let before = ha.failovers.fenced(&name);
    ha.failovers.unfence(&name);
    let Some(sink) = ha.failovers.sink() else {
        return apply_roles(&ha.live, &ha.failovers, &change)
            .map(|()| None)
            .map_err(|e| refuse(409, e));
    };
    match sink.apply(change).await {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            if let Some(f) = before {
                ha.failovers.fence(&name, &f.reason);
            }
            Err(refuse(409, format!("recording the rejoin failed: {e}")))
        }
    }
}
