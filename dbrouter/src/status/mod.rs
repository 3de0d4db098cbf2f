//! The Postgres plane's `/v1/status` document ([`status`]), read from the parts' own state
//! ([`Sources`]): the counters ([`crate::stats`]), the pools, the monitor's verdicts and the
//! failover state, admission ([`admission`]) and transaction pooling ([`pooling`]).
//!
//! Reads everything, changes nothing; no part imports it.
//!
//! Each node in the document carries what the node monitor saw last (observed role,
//! reachable, down, last error kind, WAL positions, lag in bytes and seconds, WAL receiver
//! state) beside its configuration and its pool's counts.

pub mod admission;
pub mod pooling;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use switchyard_config::{Cluster, Node};

use crate::client::admission::Admission;
use crate::ha::failover::Failovers;
use crate::ha::monitor::NodeMonitor;
use crate::pooling::transaction::TxNodes;
use crate::runtime::DbRuntime;
use crate::server::pool::Pools;
use crate::stats::Stats;

/// A cluster listener bound at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub cluster: String,
    /// `listen` as configured when it was bound.
    pub configured: SocketAddr,
    /// The address actually bound (differs when the port was 0).
    pub bound: SocketAddr,
}

/// What the document is read from.
#[derive(Debug)]
pub struct Sources<'a> {
    /// The live runtime (`None` before the first config).
    pub runtime: Option<Arc<DbRuntime>>,
    /// The listeners bound at start-up, and whether start-up ran.
    pub serving: Vec<Serving>,
    pub started: bool,
    pub stats: &'a Stats,
    pub pools: &'a Pools,
    pub monitor: &'a NodeMonitor,
    pub failovers: &'a Failovers,
    pub admission: &'a Admission,
    pub tx_nodes: &'a TxNodes,
}

/// The `/v1/status` document of the Postgres plane.
pub fn status(src: &Sources) -> Value {
    let mut doc = base(src);
    if let Some(rt) = &src.runtime {
        pooling::augment(rt, src.tx_nodes, &mut doc);
        admission::augment(rt, src.admission, &mut doc);
    }
    doc
}

/// Clusters, listeners and nodes.
fn base(src: &Sources) -> Value {
    let Some(rt) = src.runtime.clone() else {
        return json!({ "serving": false, "configured": false });
    };
    let serving = &src.serving;
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
                None if !serving.is_empty() || src.started => restart_required.push(format!(
                    "postgres.clusters.{}: added after start; restart to serve it",
                    c.name
                )),
                Some(s) if s.configured != c.listen => restart_required.push(format!(
                    "postgres.clusters.{}.listen changed to {}: still serving on {}; restart to move it",
                    c.name, c.listen, s.bound
                )),
                _ => {}
            }
            let stats = src.stats.get(&c.name);
            let nodes: Vec<Value> = c.nodes.iter().map(|n| node(src, c, n, now)).collect();
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
                "failover": src.failovers.status_of(&c.name),
            })
        })
        .collect();
    for s in serving {
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
fn node(src: &Sources, cluster: &Cluster, n: &Node, now: Instant) -> Value {
    let addr = n.addr.to_string();
    let (open, idle) = src.pools.counts(&cluster.name, &addr);
    let pool = json!({ "open": open, "in_use": open.saturating_sub(idle), "idle": idle });
    let Some(view) = src.monitor.view(&addr) else {
        return json!({
            "addr": n.addr, "role": n.role, "fenced": n.fenced, "fence": src.failovers.fenced(&addr),
            "checked": false,
            "observed_role": null, "reachable": null, "down": false, "consecutive_failures": 0,
            "last_error": null, "lag_bytes": null, "lag_seconds": null, "streaming": null,
            "pool": pool,
        });
    };
    let lag = src.monitor.lag_of(cluster, &view, now);
    let observed = view.observed.as_ref();
    let replica = observed.filter(|o| o.in_recovery);
    json!({
        "addr": n.addr,
        "role": n.role,
        "fenced": n.fenced,
        "fence": src.failovers.fenced(&addr),
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
