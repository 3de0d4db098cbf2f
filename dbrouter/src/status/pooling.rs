//! Transaction pooling in `/v1/status`: each cluster's `effective_pool_mode` and its nodes'
//! counters ([`crate::pooling::transaction::report`]).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};
use switchyard_config::PoolMode;

use crate::pooling::transaction::TxNodes;
use crate::runtime::DbRuntime;

/// Add transaction pooling to the Postgres plane's status document: each cluster's
/// `effective_pool_mode` (its configured mode: both are implemented) and, summed over its
/// nodes, `transactions_total`, `pinned_clients_total`, `prepared_injections_total`,
/// `parameter_replays_total` and the number of distinct prepared statements.
pub fn augment(rt: &DbRuntime, nodes: &TxNodes, doc: &mut Value) {
    let Some(clusters) = doc.get_mut("clusters").and_then(Value::as_array_mut) else {
        return;
    };
    for c in clusters {
        let Some(name) = c.get("name").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let Some(cluster) = rt.clusters.get(&name) else {
            continue;
        };
        let mode = match cluster.pool_mode {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        };
        let (mut transactions, mut pins, mut injections, mut replays, mut statements) =
            (0, 0, 0, 0, 0);
        for addr in std::iter::once(&cluster.primary).chain(&cluster.replicas) {
            let node = nodes.get(&name, &addr.to_string());
            transactions += node.counters.transactions.load(Relaxed);
            pins += node.counters.pins.load(Relaxed);
            injections += node.counters.injections.load(Relaxed);
            replays += node.counters.replays.load(Relaxed);
            statements += node.statements.len();
        }
        c["effective_pool_mode"] = json!(mode);
        c["transaction_pooling"] = json!({
            "transactions_total": transactions,
            "pinned_clients_total": pins,
            "prepared_injections_total": injections,
            "parameter_replays_total": replays,
            "prepared_statements": statements,
        });
    }
}
