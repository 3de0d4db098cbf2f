//! Each node registers itself under `<prefix>/members/<node>` with a lease: its id,
//! addresses, binary version, the version and hash it runs, its last error and a heartbeat.
//! The record is refreshed when any of that changes and at least every third of the lease
//! TTL; a node that stops (or loses etcd for longer than the TTL) drops out by itself. The
//! record also carries the node's traffic counters for fleet-wide flip and rollout
//! verification (`traffic.rs`).
//! [`fleet`] is `GET /v1/fleet`: every node, and whether all run the newest version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::traffic::FleetTraffic;
use super::EtcdStore;
use crate::applier::Applier;

/// What a node says about itself besides its applied state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    /// Addresses others reach this node at (`control`, `http`, `postgres`…).
    pub addresses: serde_json::Value,
    pub binary_version: String,
}

/// SHA-256 of a shared document's text: the same on every node that runs it.
pub fn doc_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn record(
    applier: &Applier,
    store: &EtcdStore,
    info: &NodeInfo,
    traffic: Option<&FleetTraffic>,
) -> serde_json::Value {
    let applied = applier.current();
    let config = &applied.snapshot.config;
    let counts = traffic.map(|t| t.publish(config));
    let backends = traffic.map(|t| t.publish_backends(config));
    serde_json::json!({
        "traffic": counts,
        "backend_traffic": backends,
        "in_flight": super::drain::in_flight(applier),
        "id": store.node(),
        "addresses": info.addresses,
        "binary_version": info.binary_version,
        "applied_version": applied.snapshot.version,
        "applied_hash": doc_hash(&applied.snapshot.source),
        "last_error": applier.last_error().map(|e| e.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
    })
}

/// Keep this node registered until the process ends. With `traffic`, the node's pool
/// counters are published (at most every [`PUBLISH`]) and the other nodes' are read back.
pub async fn register(
    applier: Arc<Applier>,
    store: Arc<EtcdStore>,
    info: NodeInfo,
    traffic: Option<Arc<FleetTraffic>>,
) {
    let ttl = store.settings().lease_ttl;
    let refresh = ttl / 3;
    let mut lease: Option<i64> = None;
    let mut last: Option<(serde_json::Value, Instant)> = None;
    let mut renewed = Instant::now();
    loop {
        let now = record(&applier, &store, &info, traffic.as_deref());
        let due = last.as_ref().is_none_or(|(v, at)| {
            (*v != now && at.elapsed() >= PUBLISH) || at.elapsed() >= refresh
        });
        if due {
            // The lease is renewed every third of its TTL; puts in between only refresh
            // the record (a put under an expired lease fails, and a new one is granted).
            let renew = renewed.elapsed() >= refresh;
            match beat(&store, &mut lease, &now, ttl, renew).await {
                Ok(()) => {
                    if renew {
                        renewed = Instant::now();
                    }
                    last = Some((now, Instant::now()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "registration failed; retrying");
                    lease = None;
                    last = None;
                }
            }
        }
        if let Some(t) = &traffic {
            if let Ok(members) = store.members().await {
                t.update(&members);
            }
        }
        tokio::time::sleep(PUBLISH).await;
    }
}

/// How often a changed record (new version, new error, traffic) is published at most.
pub const PUBLISH: Duration = Duration::from_millis(200);

async fn beat(
    store: &EtcdStore,
    lease: &mut Option<i64>,
    record: &serde_json::Value,
    ttl: Duration,
    renew: bool,
) -> Result<(), String> {
    let mut client = store.client().await?;
    let id = match *lease {
        Some(id) if !renew => id,
        Some(id) => {
            let (mut keeper, mut replies) = client
                .lease_keep_alive(id)
                .await
                .map_err(|e| format!("lease keep-alive: {e}"))?;
            keeper
                .keep_alive()
                .await
                .map_err(|e| format!("lease keep-alive: {e}"))?;
            let reply = tokio::time::timeout(store.settings().timeout, replies.message())
                .await
                .map_err(|_| "lease keep-alive timed out".to_string())?
                .map_err(|e| format!("lease keep-alive: {e}"))?;
            match reply {
                Some(r) if r.ttl() > 0 => id,
                _ => return Err("lease expired".into()),
            }
        }
        None => {
            let granted = client
                .lease_grant(ttl.as_secs().max(2) as i64, None)
                .await
                .map_err(|e| format!("lease grant: {e}"))?;
            *lease = Some(granted.id());
            granted.id()
        }
    };
    let mut value = record.clone();
    value["heartbeat"] = serde_json::json!(OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default());
    store.register(&value.to_string(), id).await
}

/// `GET /v1/fleet`: every registered node and whether they all run the newest version.
pub async fn fleet(store: &EtcdStore) -> Result<serde_json::Value, String> {
    let head = store.head().await?;
    let mut members = store.members().await?;
    members.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for m in &mut members {
        if let Some(m) = m.as_object_mut() {
            m.remove("traffic");
            m.remove("backend_traffic");
            m.remove("in_flight");
        }
    }
    let converged = !members.is_empty()
        && members
            .iter()
            .all(|m| m["applied_version"].as_u64() == Some(head.version));
    Ok(serde_json::json!({
        "version": head.version,
        "hash": doc_hash(&head.text),
        "converged": converged,
        "members": members,
    }))
}
