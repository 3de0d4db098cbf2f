//! What transaction pooling reports: counters per node ([`TxCounters`], kept in the node's
//! pool so they outlive reloads), the matching Prometheus series, and their place in
//! `/v1/status` ([`augment`]).
//!
//! Prometheus: `switchyard_postgres_transactions_total` (client turns on a server
//! connection, each ended by an idle `ReadyForQuery`), `switchyard_postgres_pinned_clients_total`
//! (by reason), `switchyard_postgres_prepared_injections_total` (a `Parse` sent for a client
//! on a server connection that lacked its statement) and
//! `switchyard_postgres_parameter_replays_total`, labelled by cluster and node, and
//! `switchyard_postgres_queries_routed_total` (by cluster, target and reason).
//!
//! TODO: fold [`augment`] into `crate::status` once the node monitor's changes there land.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Value};
use switchyard_config::PoolMode;

use crate::DbPlane;

/// Transaction pooling counters of one node.
#[derive(Debug, Default)]
pub struct TxCounters {
    pub transactions: AtomicU64,
    pub pins: AtomicU64,
    pub injections: AtomicU64,
    pub replays: AtomicU64,
}

/// One session's handles on the Prometheus series (looked up once, bumped per event).
#[derive(Debug, Clone)]
pub struct TxMetrics {
    cluster: String,
    node: String,
    transactions: metrics::Counter,
    injections: metrics::Counter,
    replays: metrics::Counter,
    /// `switchyard_postgres_queries_routed_total` by target and reason, as met.
    routed: Vec<(&'static str, &'static str, metrics::Counter)>,
}

impl TxMetrics {
    pub fn new(cluster: &str, node: &str) -> Self {
        let (c, n) = (cluster.to_string(), node.to_string());
        TxMetrics {
            transactions: metrics::counter!("switchyard_postgres_transactions_total", "cluster" => c.clone(), "node" => n.clone()),
            injections: metrics::counter!("switchyard_postgres_prepared_injections_total", "cluster" => c.clone(), "node" => n.clone()),
            replays: metrics::counter!("switchyard_postgres_parameter_replays_total", "cluster" => c.clone(), "node" => n.clone()),
            cluster: c,
            node: n,
            routed: Vec::new(),
        }
    }

    /// A turn routed to `target` for `reason` (each pair's series is looked up once per
    /// session, not once per turn).
    pub fn routed(&mut self, target: &'static str, reason: &'static str) {
        let known = self
            .routed
            .iter()
            .find(|(t, r, _)| *t == target && *r == reason);
        if let Some((_, _, counter)) = known {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!("switchyard_postgres_queries_routed_total", "cluster" => self.cluster.clone(), "target" => target, "reason" => reason);
        counter.increment(1);
        self.routed.push((target, reason, counter));
    }

    pub fn transaction(&self, c: &TxCounters) {
        c.transactions.fetch_add(1, Relaxed);
        self.transactions.increment(1);
    }

    pub fn injection(&self, c: &TxCounters) {
        c.injections.fetch_add(1, Relaxed);
        self.injections.increment(1);
    }

    pub fn replay(&self, c: &TxCounters) {
        c.replays.fetch_add(1, Relaxed);
        self.replays.increment(1);
    }

    pub fn pin(&self, c: &TxCounters, reason: &'static str) {
        c.pins.fetch_add(1, Relaxed);
        metrics::counter!("switchyard_postgres_pinned_clients_total", "cluster" => self.cluster.clone(), "node" => self.node.clone(), "reason" => reason).increment(1);
    }
}

/// Add transaction pooling to the Postgres plane's status document: each cluster's
/// `effective_pool_mode` (its configured mode: both are implemented) and, summed over its
/// nodes, `transactions_total`, `pinned_clients_total`, `prepared_injections_total`,
/// `parameter_replays_total` and the number of distinct prepared statements.
pub fn augment(plane: &DbPlane, doc: &mut Value) {
    let Some(rt) = plane.runtime() else { return };
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
        let nodes = std::iter::once(&cluster.primary).chain(&cluster.replicas);
        for node in nodes {
            let pool = plane.pool(&name, &node.to_string());
            transactions += pool.tx.transactions.load(Relaxed);
            pins += pool.tx.pins.load(Relaxed);
            injections += pool.tx.injections.load(Relaxed);
            replays += pool.tx.replays.load(Relaxed);
            statements += pool.statements.len();
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
