//! What the Postgres plane reports: per-cluster counters that outlive reloads
//! ([`ClusterStats`], kept by cluster name in the plane) and the `/v1/status` document.
//!
//! Counters are atomics bumped at the point of the event, with the matching Prometheus
//! series (`switchyard_postgres_*`, labelled by cluster) updated beside them. Gauges are moved
//! by guards ([`ClientGuard`], [`ServerGuard`]) so that every way out of a session, error or
//! not, gives the count back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::DbPlane;

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

/// A cluster listener bound at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub cluster: String,
    /// `listen` as configured when it was bound.
    pub configured: SocketAddr,
    /// The address actually bound (differs when the port was 0).
    pub bound: SocketAddr,
}

/// The `/v1/status` document of the Postgres plane.
pub fn status(plane: &DbPlane) -> Value {
    let Some(rt) = plane.runtime() else {
        return json!({ "serving": false, "configured": false });
    };
    let serving = plane.serving();
    let mut restart_required = Vec::new();
    let clusters: Vec<Value> = rt
        .config
        .postgres
        .clusters
        .iter()
        .map(|c| {
            let bound = serving.iter().find(|s| s.cluster == c.name);
            match bound {
                None if !serving.is_empty() || plane.started() => restart_required.push(format!(
                    "postgres.clusters.{}: added after start; restart to serve it",
                    c.name
                )),
                Some(s) if s.configured != c.listen => restart_required.push(format!(
                    "postgres.clusters.{}.listen changed to {}: still serving on {}; restart to move it",
                    c.name, c.listen, s.bound
                )),
                _ => {}
            }
            let stats = plane.stats(&c.name);
            let nodes: Vec<Value> = c
                .nodes
                .iter()
                .map(|n| {
                    let (open, idle) = plane.pool_counts(&c.name, &n.addr.to_string());
                    json!({
                        "addr": n.addr, "role": n.role, "fenced": n.fenced,
                        "pool": { "open": open, "in_use": open.saturating_sub(idle), "idle": idle },
                    })
                })
                .collect();
            json!({
                "name": c.name,
                "listen": c.listen,
                "bound": bound.map(|s| s.bound),
                "serving": bound.is_some(),
                "pool_mode": c.pool_mode,
                // Session mode is all the router does yet (see the crate docs).
                "effective_pool_mode": "session",
                "clients": stats.clients.load(Relaxed),
                "clients_total": stats.clients_total.load(Relaxed),
                "server_connections": stats.server_connections.load(Relaxed),
                "auth_failures_total": stats.auth_failures_total.load(Relaxed),
                "cancel_requests_total": stats.cancel_requests_total.load(Relaxed),
                "nodes": nodes,
            })
        })
        .collect();
    for s in &serving {
        if !rt.clusters.contains_key(&s.cluster) {
            restart_required.push(format!(
                "postgres.clusters.{}: removed; its listener on {} refuses new clients until a restart",
                s.cluster, s.bound
            ));
        }
    }
    json!({
        "serving": !serving.is_empty(),
        "restart_required": restart_required,
        "note": "session pooling to the primary only: a client holds one server connection for its whole session; transaction pooling, read/write split and failover are not implemented yet",
        "clusters": clusters,
    })
}
