//! Fleet-wide traffic counters, for verifying a blue/green flip or a rollout's batch on
//! every node's traffic.
//!
//! Each node publishes its own per-pool counters (`traffic`) and per-backend counters
//! (`backend_traffic`: requests, failures and the latency buckets, trailing empty buckets
//! left out) in its registration record (see `fleet.rs`), and keeps the other nodes' latest
//! records. [`FleetTraffic::pool_counts`] is this node's counters plus everyone else's, so
//! the flip verifier judges the error ratio of the whole fleet, also of traffic that never
//! reached this node; a node that drops out takes its counts with it (the verifier treats
//! a shrinking total as a reset). [`FleetTraffic::backend_by_node`] keeps the nodes apart,
//! so a rollout's gate takes each node's difference on its own (a node that joins or
//! restarts mid-window adds nothing it did not count in the window).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use switchyard_config::Config;

use crate::plane::{BackendView, LatencyCounts, PoolCounts, TrafficStats};

/// This node's counters plus the other nodes' last published ones.
pub struct FleetTraffic {
    local: Arc<dyn TrafficStats>,
    node: String,
    /// Node id → its published `traffic` and `backend_traffic` objects.
    others: Mutex<HashMap<String, (Value, Value)>>,
}

impl FleetTraffic {
    pub fn new(local: Arc<dyn TrafficStats>, node: &str) -> FleetTraffic {
        FleetTraffic {
            local,
            node: node.to_string(),
            others: Mutex::new(HashMap::new()),
        }
    }

    /// This node's counters for every pool of `config`:
    /// `{"upstream": {"pool": {"requests": N, "errors": M}}}`.
    pub fn publish(&self, config: &Config) -> Value {
        let mut out = serde_json::Map::new();
        for (name, upstream) in &config.http.upstreams {
            let mut pools = serde_json::Map::new();
            for pool in upstream.pools.keys() {
                if let Some(c) = self.local.pool_counts(name, pool) {
                    pools.insert(pool.clone(), serde_json::json!(c));
                }
            }
            out.insert(name.clone(), Value::Object(pools));
        }
        Value::Object(out)
    }

    /// This node's counters of every backend of `config` it has seen:
    /// `{"addr": {"requests": N, "errors": M, "latency": [bucket counts]}}`.
    pub fn publish_backends(&self, config: &Config) -> Value {
        let mut out = serde_json::Map::new();
        let addrs = (config.http.upstreams.values())
            .flat_map(|u| u.pools.values())
            .flat_map(|p| p.backends.iter())
            .map(|b| b.addr.to_string());
        for addr in addrs {
            let Some(v) = self.local.backend(&addr) else {
                continue;
            };
            let used = v
                .latency
                .counts
                .iter()
                .rposition(|c| *c > 0)
                .map_or(0, |i| i + 1);
            let latency = &v.latency.counts[..used];
            out.insert(
                addr,
                serde_json::json!({ "requests": v.counts.requests, "errors": v.counts.errors, "latency": latency }),
            );
        }
        Value::Object(out)
    }

    /// Take in the registered nodes' records (this node's own is skipped).
    pub fn update(&self, members: &[Value]) {
        let others = members
            .iter()
            .filter_map(|m| {
                let id = m["id"].as_str()?;
                let published = (m["traffic"].clone(), m["backend_traffic"].clone());
                (id != self.node).then(|| (id.to_string(), published))
            })
            .collect();
        *self.others.lock().unwrap_or_else(|p| p.into_inner()) = others;
    }
}

impl TrafficStats for FleetTraffic {
    fn pool_counts(&self, upstream: &str, pool: &str) -> Option<PoolCounts> {
        let mut total = self.local.pool_counts(upstream, pool)?;
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        for (t, _) in others.values() {
            let c = &t[upstream][pool];
            total.requests += c["requests"].as_u64().unwrap_or(0);
            total.errors += c["errors"].as_u64().unwrap_or(0);
        }
        Some(total)
    }

    fn backend(&self, addr: &str) -> Option<BackendView> {
        self.local.backend(addr)
    }

    /// This node's counters of `addr` (under `""`), then every other node's that published
    /// them.
    fn backend_by_node(&self, addr: &str) -> Vec<(String, PoolCounts, LatencyCounts)> {
        let Some(own) = self.local.backend(addr) else {
            return Vec::new();
        };
        let bounds = own.latency.bounds_us;
        let mut all = vec![(String::new(), own.counts, own.latency)];
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        for (node, (_, backends)) in others.iter() {
            let b = &backends[addr];
            let Some(requests) = b["requests"].as_u64() else {
                continue;
            };
            let counts = PoolCounts {
                requests,
                errors: b["errors"].as_u64().unwrap_or(0),
            };
            let latency = LatencyCounts {
                bounds_us: bounds,
                counts: (b["latency"].as_array().into_iter().flatten())
                    .map(|c| c.as_u64().unwrap_or(0))
                    .collect(),
            };
            all.push((node.clone(), counts, latency));
        }
        all
    }
}
