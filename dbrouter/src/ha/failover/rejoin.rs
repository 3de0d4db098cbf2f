//! Rejoin: lift the fence of a node an operator has rebuilt as a replica (for example with
//! `pg_rewind` and a `standby.signal`). Refused while the node is not in recovery, so an old
//! primary that merely came back can never take traffic again by mistake.
//!
//! With `failover.etcd` the rejoin runs once for the fleet: it takes the cluster's failover
//! lease (409 naming the holder while a failover or another operation runs), publishes a
//! rejoin decision before changing the config, and every other sidecar lifts its fence
//! when the decision reaches it ([`follow_rejoin`]).

use super::apply::apply_roles;
use super::lease::{self, Decision};
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
    // Held until the end of this function: dropping it stops its renewals, and it is
    // revoked explicitly below.
    let held = match &rt.config.failover.etcd {
        Some(etcd) => Some(
            lease::claim_for_operator(etcd, cluster)
                .await
                .map_err(|(status, why)| refuse(status, why))?,
        ),
        None => None,
    };
    let result = checked_rejoin(ha, &rt, &addr, &login, held.as_ref(), actor).await;
    if let Some((arbiter, lease)) = held {
        if let Err(e) = arbiter.revoke(lease.id).await {
            tracing::warn!(cluster, error = %e, "giving the failover lease back failed (it expires by itself)");
        }
    }
    result
}

/// The rejoin once the lease (if any) is held: check the node is in recovery, publish the
/// decision to the other sidecars, then record the change.
async fn checked_rejoin(
    ha: &Ha,
    rt: &crate::runtime::ClusterRuntime,
    addr: &switchyard_config::Address,
    login: &NodeLogin,
    held: Option<&(lease::Arbiter, lease::Lease)>,
    actor: &str,
) -> Result<Option<u64>, Refusal> {
    let (cluster, name) = (rt.name.as_str(), addr.to_string());
    let limit = rt
        .config
        .failover
        .check_timeout
        .max(std::time::Duration::from_secs(1));
    let report = probe::report(login, limit)
        .await
        .map_err(|e| refuse(409, format!("{addr} cannot be checked: {e}")))?;
    if !report.in_recovery {
        return Err(refuse(
            409,
            format!("{addr} is not in recovery: rebuild it as a replica of the current primary (pg_rewind, standby.signal) before rejoining it"),
        ));
    }
    if let Some((arbiter, lease)) = held {
        let decision = Decision {
            primary: rt.primary.to_string(),
            old_primary: rt.primary.to_string(),
            by: lease::identity(),
            at_ms: lease::now_ms(),
            reason: format!("{actor} rejoined {name}"),
            rejoined: Some(name.clone()),
        };
        // Before the config changes: a sidecar still fencing the node would refuse it.
        arbiter
            .record(cluster, lease, &decision)
            .await
            .map_err(|e| {
                refuse(
                    503,
                    format!("publishing the rejoin to the fleet failed: {e}"),
                )
            })?;
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

/// Another Switchyard rejoined `node` (its decision arrived through the watch): lift the
/// fence here too. With a shared config the rejoining Switchyard's change reaches this one
/// through the store (re-applied if it arrived first and was refused for the fence);
/// with a config of its own, this router records the change in it.
pub(super) fn follow_rejoin(ha: &Ha, cluster: &str, node: &str, decision: &Decision) {
    let Some(rt) = ha.live.cluster(cluster) else {
        return;
    };
    if !rt.config.nodes.iter().any(|n| n.addr.to_string() == node) {
        tracing::warn!(
            cluster,
            node,
            "a rejoin decision names a node this router does not have: not followed"
        );
        return;
    }
    let was = ha.failovers.fenced(node);
    ha.failovers.unfence(node);
    tracing::warn!(cluster, node, by = %decision.by, "postgres node rejoined by another Switchyard: fence lifted");
    let Some(sink) = ha.failovers.sink() else {
        return;
    };
    if sink.shared() {
        sink.resync();
        return;
    }
    let change = RoleChange {
        cluster: cluster.to_string(),
        primary: None,
        fence: Vec::new(),
        demote: Vec::new(),
        unfence: vec![node.to_string()],
        action: "postgres.rejoin",
        actor: decision.by.clone(),
        detail: serde_json::json!({ "cluster": cluster, "node": node, "decided_by": decision.by }),
    };
    if let Err(e) = apply_roles(&ha.live, &ha.failovers, &change) {
        tracing::error!(cluster, error = %e, "following a rejoin failed");
        if let Some(f) = was {
            ha.failovers.fence(node, &f.reason);
        }
        return;
    }
    let (cluster, node) = (cluster.to_string(), node.to_string());
    tokio::spawn(async move {
        if let Err(e) = sink.apply(change).await {
            tracing::error!(cluster = %cluster, node = %node, error = %e, "the followed rejoin could not be recorded in the config");
        }
    });
}
