//! Drains that wait (`POST …/backends/{addr}/drain?wait=30s`): after the drain is applied,
//! wait until no node has a request in flight to the backend, or say which still do.
//!
//! Each node's in-flight counts come from its HTTP plane's status; with a shared store
//! every node publishes them in its registration record (`fleet.rs`), and a node counts as
//! drained only once it runs the drain's version (before that it still sends new requests).

use std::time::Duration;

use serde_json::{json, Value};

use super::EtcdStore;
use crate::applier::Applier;

/// This node's in-flight requests per backend: `{"upstream": {"addr": n}}`.
pub fn in_flight(applier: &Applier) -> Value {
    let mut out = serde_json::Map::new();
    let Some(http) = applier.planes().iter().find(|p| p.name() == "http") else {
        return Value::Object(out);
    };
    let status = http.status();
    for (name, up) in status["upstreams"].as_object().into_iter().flatten() {
        let mut backends = serde_json::Map::new();
        for pool in up["pools"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, p)| p)
        {
            for b in pool["backends"].as_array().into_iter().flatten() {
                if let Some(addr) = b["addr"].as_str() {
                    let n = b["in_flight"].as_u64().unwrap_or(0);
                    let seen = backends.get(addr).and_then(Value::as_u64).unwrap_or(0);
                    backends.insert(addr.to_string(), json!(seen + n));
                }
            }
        }
        out.insert(name.clone(), Value::Object(backends));
    }
    Value::Object(out)
}

/// Wait up to `wait` until every node running at least `version` has nothing in flight to
/// `addr` of `upstream` (every registered node, with a store; this node, without). Answers
/// `{"drained": bool, "instances": [{"id", "applied_version", "in_flight"}], "waiting_on": [...]}`.
pub async fn wait_drained(
    applier: &Applier,
    store: Option<&EtcdStore>,
    version: u64,
    upstream: &str,
    addr: &str,
    wait: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let members = match store {
            Some(s) => s.members().await.unwrap_or_default(),
            None => vec![json!({
                "id": "local",
                "applied_version": applier.current().snapshot.version,
                "in_flight": in_flight(applier),
            })],
        };
        let instances: Vec<Value> = members
            .iter()
            .map(|m| {
                json!({
                    "id": m["id"],
                    "applied_version": m["applied_version"],
                    "in_flight": m["in_flight"][upstream][addr].as_u64().unwrap_or(0),
                })
            })
            .collect();
        let waiting_on: Vec<Value> = instances
            .iter()
            .filter(|i| {
                i["in_flight"].as_u64() != Some(0)
                    || i["applied_version"].as_u64().unwrap_or(0) < version
            })
            .map(|i| i["id"].clone())
            .collect();
        let drained = waiting_on.is_empty() && !instances.is_empty();
        if drained || tokio::time::Instant::now() >= deadline {
            return json!({
                "drained": drained,
                "instances": instances,
                "waiting_on": waiting_on,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
