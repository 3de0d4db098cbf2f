//! What the Postgres plane reports: per-cluster counters that outlive reloads
//! ([`ClusterStats`], kept by cluster name in the plane) and the `/v1/status` document.
//!
//! Counters are atomics bumped at the point of the event, with the matching Prometheus
//! series (`switchyard_postgres_*`, labelled by cluster) updated beside them. Gauges are moved
//! by guards ([`ClientGuard`], [`ServerGuard`]) so that every way out of a session, error or
//! not, gives the count back.
//!
//! Each node in the document carries what the node monitor saw last (observed role,
//! reachable, down, last error kind, WAL positions, lag in bytes and seconds, WAL receiver
//! state) beside its configuration and its pool's counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use switchyard_config::{Cluster, Node};

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
    let now = Instant::now();
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
            let nodes: Vec<Value> = c.nodes.iter().map(|n| node(plane, c, n, now)).collect();
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
                "failover": plane.failover.status_of(&c.name),
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
        "clusters": clusters,
    })
}

/// One node of `cluster` in `/v1/status`: its configuration, what the monitor saw last, its
/// lag and its pool. Monitor fields are `null` before the first check.
fn node(plane: &DbPlane, cluster: &Cluster, n: &Node, now: Instant) -> Value {
    let addr = n.addr.to_string();
    let (open, idle) = plane.pool_counts(&cluster.name, &addr);
    let pool = json!({ "open": open, "in_use": open.saturating_sub(idle), "idle": idle });
    let Some(view) = plane.monitor.view(&addr) else {
        return json!({
            "addr": n.addr, "role": n.role, "fenced": n.fenced, "fence": plane.failover.fenced(&addr),
            "checked": false,
            "observed_role": null, "reachable": null, "down": false, "consecutive_failures": 0,
            "last_error": null, "lag_bytes": null, "lag_seconds": null, "streaming": null,
            "pool": pool,
        });
    };
    let lag = plane.monitor.lag_of(cluster, &view, now);
    let observed = view.observed.as_ref();
    let replica = observed.filter(|o| o.in_recovery);
    json!({
        "addr": n.addr,
        "role": n.role,
        "fenced": n.fenced,
        "fence": plane.failover.fenced(&addr),
        "checked": true,
        "observed_role": observed.map(|o| if o.in_recovery { "replica" } else { "primary" }),
        "reachable": view.reachable,
        "down": view.down,
        "consecutive_failures": view.consecutive_failures,
        "last_error": view.last_error,
        "last_check_ms_ago": view.checked_at.map(|t| now.saturating_duration_since(t).as_millis() as u64),
        "checks": { "ok": view.checks_ok, "failed": view.checks_failed },
        "lag_bytes": lag.bytes,
        "lag_seconds": lag.seconds,
        "streaming": replica.map(|o| o.streaming()),
        "wal_receiver": replica.and_then(|o| o.wal_receiver.clone()),
        "lsn": {
            "current": observed.and_then(|o| o.current_lsn),
            "receive": replica.and_then(|o| o.receive_lsn),
            "replay": replica.and_then(|o| o.replay_lsn),
        },
        "pool": pool,
    })
}
