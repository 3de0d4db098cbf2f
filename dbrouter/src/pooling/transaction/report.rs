//! What transaction pooling reports: counters per node ([`TxCounters`], kept with the node's
//! [`super::TxNode`] so they outlive reloads) and the matching Prometheus series. Their place
//! in `/v1/status` is [`crate::status`]'s.
//!
//! Prometheus: `switchyard_postgres_transactions_total` (client turns on a server
//! connection, each ended by an idle `ReadyForQuery`), `switchyard_postgres_pinned_clients_total`
//! (by reason), `switchyard_postgres_prepared_injections_total` (a `Parse` sent for a client
//! on a server connection that lacked its statement) and
//! `switchyard_postgres_parameter_replays_total`, labelled by cluster and node, and
//! `switchyard_postgres_queries_routed_total` (by cluster, target and reason).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
            replays: metrics::counter!("switchyard_postgres_parameter_replays_total", "cluster" => c, "node" => n),
            routed: Vec::new(),
        }
    }

    /// A turn of `cluster` routed to `target` for `reason` (each pair's series is looked up
    /// once per session, not once per turn; the cluster's name is not kept: an idle client
    /// keeps this).
    pub fn routed(&mut self, cluster: &str, target: &'static str, reason: &'static str) {
        let known = self
            .routed
            .iter()
            .find(|(t, r, _)| *t == target && *r == reason);
        if let Some((_, _, counter)) = known {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!("switchyard_postgres_queries_routed_total", "cluster" => cluster.to_string(), "target" => target, "reason" => reason);
        counter.increment(1);
        // Exact room: a session meets few pairs, and an idle one keeps this list.
        self.routed.reserve_exact(1);
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

    /// A client of `cluster` pinned to its connection to `node`, for `reason`.
    pub fn pin(&self, c: &TxCounters, cluster: &str, node: &str, reason: &'static str) {
        c.pins.fetch_add(1, Relaxed);
        metrics::counter!("switchyard_postgres_pinned_clients_total", "cluster" => cluster.to_string(), "node" => node.to_string(), "reason" => reason).increment(1);
    }
}
