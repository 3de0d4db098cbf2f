//! The monitor's tasks: a supervisor that keeps one check loop per node address of the
//! running config (started, kept and stopped across reloads, like the HTTP plane's active
//! health checks), and the loop itself, which re-reads its settings from the live runtime
//! before every check, records the outcome in the plane's [`super::NodeMonitor`], and moves
//! the metrics:
//!
//! - `switchyard_postgres_monitor_checks_total{cluster,node,result}` (`ok` or an error kind),
//! - `switchyard_postgres_node_up{cluster,node,role}` (0 once marked down; role as
//!   configured),
//! - `switchyard_postgres_replica_lag_bytes{cluster,node}` and
//!   `switchyard_postgres_replica_lag_seconds{cluster,node}` for replicas, with the cluster's
//!   `routing.max_replica_lag_bytes` and `max_replica_lag` beside them as
//!   `switchyard_postgres_replica_lag_limit_bytes` and `…_limit_seconds` when set.
//!
//! A node listed by several clusters is checked once, with the settings and login of the
//! first cluster listing it; its metrics carry each cluster's label.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::{Cluster, NodeRole};
use tokio::task::JoinHandle;

use super::check::{self, Login, MonitorConn};
use super::state::{CheckError, ErrorKind, NodeMonitor, Observed, Transition};
use crate::runtime::Live;

/// How often the supervisor compares the running loops with the config.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// Monitor every node of the running config (`live`) into `monitor` until the task is
/// dropped.
pub async fn run(live: Live, monitor: Arc<NodeMonitor>) {
    let mut loops: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let desired: HashSet<String> = live
            .load()
            .map(|rt| {
                rt.config
                    .postgres
                    .clusters
                    .iter()
                    .flat_map(|c| c.nodes.iter().map(|n| n.addr.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        loops.retain(|addr, task| {
            let keep = desired.contains(addr) && !task.is_finished();
            if !keep {
                task.abort();
                monitor.forget(addr);
                tracing::info!(node = %addr, "postgres node monitor stopped");
            }
            keep
        });
        for addr in desired {
            if let Entry::Vacant(slot) = loops.entry(addr) {
                let addr = slot.key().clone();
                tracing::info!(node = %addr, "postgres node monitor started");
                slot.insert(tokio::spawn(watch(live.clone(), monitor.clone(), addr)));
            }
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

/// What one check of a node needs, read from the live runtime.
struct Target {
    login: Option<Login>,
    interval: Duration,
    timeout: Duration,
    threshold: u32,
}

impl Target {
    /// `None` once no cluster lists `addr`.
    fn find(live: &Live, addr: &str) -> Option<Target> {
        let rt = live.load()?;
        let c = listing(&rt.config.postgres.clusters, addr).next()?.0;
        let node = c.nodes.iter().find(|n| n.addr.to_string() == addr)?;
        let cluster = rt.clusters.get(&c.name)?;
        let login = c.users.first().map(|u| Login {
            host: node.addr.host.clone(),
            port: node.addr.port,
            user: u.name.clone(),
            password: cluster.users.get(&u.name).and_then(|u| u.password.clone()),
            tls: cluster.server_tls.clone(),
        });
        Some(Target {
            login,
            interval: c.failover.check_interval,
            timeout: c.failover.check_timeout,
            threshold: c.failover.failure_threshold,
        })
    }
}

/// Clusters listing `addr`, with its configured role in each.
fn listing<'a>(
    clusters: &'a [Cluster],
    addr: &'a str,
) -> impl Iterator<Item = (&'a Cluster, NodeRole)> + 'a {
    clusters.iter().filter_map(move |c| {
        c.nodes
            .iter()
            .find(|n| n.addr.to_string() == addr)
            .map(|n| (c, n.role))
    })
}

/// Check `addr` on its interval until no cluster lists it.
async fn watch(live: Live, monitor: Arc<NodeMonitor>, addr: String) {
    let mut conn: Option<MonitorConn> = None;
    let mut seen_in_recovery: Option<bool> = None;
    while let Some(target) = Target::find(&live, &addr) {
        let started = Instant::now();
        let next = tokio::time::Instant::now() + target.interval;
        let outcome = match &target.login {
            Some(login) => check::check(&mut conn, login, target.timeout).await,
            None => Err(CheckError::new(
                ErrorKind::Auth,
                "the cluster has no users: the monitor logs in as the first one",
            )),
        };
        if let Ok(o) = &outcome {
            if seen_in_recovery != Some(o.in_recovery) {
                seen_in_recovery = Some(o.in_recovery);
                report_role(&live, &addr, o);
            }
        }
        let result = outcome.as_ref().err().map_or("ok", |e| e.kind.as_str());
        let transition = monitor.record(&addr, started, outcome, target.threshold);
        publish(&live, &monitor, &addr, result, transition);
        tokio::time::sleep_until(next).await;
    }
}

/// Log what role `addr` turned out to have when it differs from the config.
fn report_role(live: &Live, addr: &str, o: &Observed) {
    let Some(rt) = live.load() else { return };
    for (c, role) in listing(&rt.config.postgres.clusters, addr) {
        let configured_replica = role == NodeRole::Replica;
        if configured_replica != o.in_recovery {
            let observed = if o.in_recovery { "replica" } else { "primary" };
            tracing::warn!(cluster = %c.name, node = %addr, configured = ?role, observed, "postgres node's role differs from the config; it gets no reads as a replica");
        }
    }
}

/// Metrics and logs after a check of `addr`.
fn publish(
    live: &Live,
    monitor: &NodeMonitor,
    addr: &str,
    result: &'static str,
    transition: Option<Transition>,
) {
    let Some(rt) = live.load() else { return };
    let Some(view) = monitor.view(addr) else {
        return;
    };
    let now = Instant::now();
    for (c, role) in listing(&rt.config.postgres.clusters, addr) {
        let (cluster, node) = (c.name.clone(), addr.to_string());
        let role_label = match role {
            NodeRole::Primary => "primary",
            NodeRole::Replica => "replica",
        };
        metrics::counter!("switchyard_postgres_monitor_checks_total", "cluster" => cluster.clone(), "node" => node.clone(), "result" => result).increment(1);
        metrics::gauge!("switchyard_postgres_node_up", "cluster" => cluster.clone(), "node" => node.clone(), "role" => role_label)
            .set(if view.down { 0.0 } else { 1.0 });
        if role == NodeRole::Replica {
            let lag = monitor.lag_of(c, &view, now);
            if let Some(bytes) = lag.bytes {
                metrics::gauge!("switchyard_postgres_replica_lag_bytes", "cluster" => cluster.clone(), "node" => node.clone())
                    .set(bytes as f64);
            }
            if let Some(secs) = lag.seconds {
                metrics::gauge!("switchyard_postgres_replica_lag_seconds", "cluster" => cluster.clone(), "node" => node.clone())
                    .set(secs);
            }
            // The limits beside the lag, so an alert compares the two series as they are.
            if let Some(limit) = c.routing.max_replica_lag_bytes {
                metrics::gauge!("switchyard_postgres_replica_lag_limit_bytes", "cluster" => cluster.clone(), "node" => node.clone())
                    .set(limit as f64);
            }
            if let Some(limit) = c.routing.max_replica_lag {
                metrics::gauge!("switchyard_postgres_replica_lag_limit_seconds", "cluster" => cluster.clone(), "node" => node.clone())
                    .set(limit.as_secs_f64());
            }
        }
        let error = view.last_error.as_ref();
        let kind = error.map_or("", |e| e.kind.as_str());
        let message = error.map_or("", |e| e.message.as_str());
        match (transition, role) {
            (Some(Transition::Down), NodeRole::Primary) => tracing::error!(
                cluster = %cluster, node = %addr, kind, error = message,
                failures = view.consecutive_failures,
                "postgres primary is down"
            ),
            (Some(Transition::Down), NodeRole::Replica) => tracing::warn!(
                cluster = %cluster, node = %addr, kind, error = message,
                failures = view.consecutive_failures,
                "postgres replica is down: it gets no reads until it answers again"
            ),
            (Some(Transition::Up), _) => {
                tracing::info!(cluster = %cluster, node = %addr, role = role_label, "postgres node is up again")
            }
            (None, _) => {}
        }
    }
}
