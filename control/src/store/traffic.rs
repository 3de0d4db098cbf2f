//! Fleet-wide traffic counters, for verifying a blue/green flip on every node's traffic.
//!
//! Each node publishes its own per-pool counters in its registration record (see
//! `fleet.rs`) and keeps the other nodes' latest records; [`FleetTraffic::pool_counts`] is
//! this node's counters plus everyone else's, so the verifier judges the error ratio of
//! the whole fleet, also of traffic that never reached this node. A node that drops out
//! takes its counts with it (the verifier treats a shrinking total as a reset).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use switchyard_config::Config;

use crate::plane::{PoolCounts, TrafficStats};

/// This node's counters plus the other nodes' last published ones.
pub struct FleetTraffic {
    local: Arc<dyn TrafficStats>,
    node: String,
    /// Node id → its published `traffic` object.
    others: Mutex<HashMap<String, Value>>,
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

    /// Take in the registered nodes' records (this node's own is skipped).
    pub fn update(&self, members: &[Value]) {
        let others = members
            .iter()
            .filter_map(|m| {
                let id = m["id"].as_str()?;
                (id != self.node).then(|| (id.to_string(), m["traffic"].clone()))
            })
            .collect();
        *self.others.lock().unwrap_or_else(|p| p.into_inner()) = others;
    }
}

impl TrafficStats for FleetTraffic {
    fn pool_counts(&self, upstream: &str, pool: &str) -> Option<PoolCounts> {
        let mut total = self.local.pool_counts(upstream, pool)?;
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        for t in others.values() {
            let c = &t[upstream][pool];
            total.requests += c["requests"].as_u64().unwrap_or(0);
            total.errors += c["errors"].as_u64().unwrap_or(0);
        }
        Some(total)
    }

    /// This node's view only: a rollout is driven on one instance (the fleet's backends'
    /// counters are not shared yet).
    fn backend(&self, addr: &str) -> Option<crate::plane::BackendView> {
        self.local.backend(addr)
    }
}
