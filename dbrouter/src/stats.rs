//! Per-cluster counters that outlive reloads ([`ClusterStats`], kept by cluster name in
//! [`Stats`]): the status sink every part that serves clients reports to.
//!
//! Counters are atomics bumped at the point of the event, with the matching Prometheus
//! series (`switchyard_postgres_*`, labelled by cluster) updated beside them. Gauges are moved
//! by guards ([`ClientGuard`], [`ServerGuard`]) so that every way out of a session, error or
//! not, gives the count back. `/v1/status` reads them ([`crate::status`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use dashmap::DashMap;

/// The counters of every cluster, by name (created on first use, kept across reloads).
#[derive(Debug, Default)]
pub struct Stats {
    clusters: DashMap<String, Arc<ClusterStats>>,
}

impl Stats {
    /// Counters of cluster `name`.
    pub fn get(&self, name: &str) -> Arc<ClusterStats> {
        crate::registry::shared_with(&self.clusters, name, || ClusterStats::new(name))
    }

    /// Client sessions open now, in every cluster.
    pub fn clients(&self) -> u64 {
        self.clusters.iter().map(|c| c.clients.load(Relaxed)).sum()
    }
}

/// One cluster's counters.
#[derive(Debug)]
pub struct ClusterStats {
    name: Arc<str>,
    /// Client connections open now (from accept to close, authenticated or not).
    pub clients: AtomicU64,
    pub clients_total: AtomicU64,
    /// Server connections open now (in use and idle in the pools).
    pub server_connections: AtomicU64,
    pub auth_failures_total: AtomicU64,
    pub cancel_requests_total: AtomicU64,
}

impl ClusterStats {
    pub fn new(name: &str) -> Self {
        ClusterStats {
            name: name.into(),
            clients: AtomicU64::new(0),
            clients_total: AtomicU64::new(0),
            server_connections: AtomicU64::new(0),
            auth_failures_total: AtomicU64::new(0),
            cancel_requests_total: AtomicU64::new(0),
        }
    }

    /// Count a client connection until the guard drops.
    pub fn client(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Relaxed);
        self.clients_total.fetch_add(1, Relaxed);
        metrics::counter!("switchyard_postgres_client_connections_total", "cluster" => self.name.to_string()).increment(1);
        metrics::gauge!("switchyard_postgres_clients", "cluster" => self.name.to_string())
            .increment(1.0);
        ClientGuard(self.clone())
    }

    /// Count a server connection to `node` until the guard drops.
    pub fn server(self: &Arc<Self>, node: &str) -> ServerGuard {
        self.server_connections.fetch_add(1, Relaxed);
        let gauge = metrics::gauge!("switchyard_postgres_server_connections", "cluster" => self.name.to_string(), "node" => node.to_string());
        gauge.increment(1.0);
        ServerGuard(self.clone(), gauge)
    }

    pub fn auth_failed(&self) {
        self.auth_failures_total.fetch_add(1, Relaxed);
        metrics::counter!("switchyard_postgres_auth_failures_total", "cluster" => self.name.to_string()).increment(1);
    }

    /// A `CancelRequest` arrived; `result` is `sent` or `unknown_key`.
    pub fn cancel_request(&self, result: &'static str) {
        self.cancel_requests_total.fetch_add(1, Relaxed);
        metrics::counter!("switchyard_postgres_cancel_requests_total", "cluster" => self.name.to_string(), "result" => result).increment(1);
    }

    /// A client was refused before or during its session; `sqlstate` is what it was told.
    pub fn client_error(&self, sqlstate: &'static str) {
        metrics::counter!("switchyard_postgres_client_errors_total", "cluster" => self.name.to_string(), "sqlstate" => sqlstate).increment(1);
    }
}

/// Holds one count of [`ClusterStats::clients`].
#[derive(Debug)]
pub struct ClientGuard(Arc<ClusterStats>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Relaxed);
        metrics::gauge!("switchyard_postgres_clients", "cluster" => self.0.name.to_string())
            .decrement(1.0);
    }
}

/// Holds one count of [`ClusterStats::server_connections`].
pub struct ServerGuard(Arc<ClusterStats>, metrics::Gauge);

impl std::fmt::Debug for ServerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerGuard")
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.server_connections.fetch_sub(1, Relaxed);
        self.1.decrement(1.0);
    }
}
