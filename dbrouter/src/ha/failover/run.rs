//! The failover watcher: one task for the plane that looks at every cluster's primary as the
//! monitor sees it, starts a failover when it is down (with `failover.auto_promote`), and,
//! while it is up, keeps what the primary says about its synchronous standbys (needed after
//! it is gone: with synchronous replication, only one of those may be promoted).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::Client;

use super::probe::{self, NodeLogin};
use super::procedure::{self, Request};
use super::state::Failovers;
use crate::ha::handles::Ha;
use crate::runtime::ClusterRuntime;

/// Longest pause between two automatic attempts that did not complete.
const MAX_BACK_OFF: Duration = Duration::from_secs(5);

/// How often the synchronous-standby state of a healthy primary is read.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Pause between two looks at the monitor's verdicts (cheap: no I/O), and the shortest
/// between a failed attempt and the next.
const FLOOR: Duration = Duration::from_millis(50);

/// Watch every cluster's primary until the task is dropped.
pub async fn run(ha: Ha) {
    // Per cluster: the primary's address, a connection to it, and when it was last asked.
    let mut sync_conns: HashMap<String, (String, Client, Instant)> = HashMap::new();
    loop {
        let pause = FLOOR;
        if let Some(rt) = ha.live.load() {
            sync_conns.retain(|name, _| rt.clusters.contains_key(name));
            for (name, c) in &rt.clusters {
                let settings = &c.config.failover;
                let state = ha.failovers.cluster(name);
                let primary = c.primary.to_string();
                let Some(view) = ha.monitor.view(&primary) else {
                    continue;
                };
                if !view.down {
                    if view.reachable && state.phase().is_none() {
                        state.clear_hold_back();
                        state.reset_failures();
                        sync_probe(&ha.failovers, c, &primary, &mut sync_conns).await;
                    }
                    continue;
                }
                sync_conns.remove(name);
                if state.phase().is_some() {
                    continue;
                }
                if !settings.auto_promote {
                    state.hold_back(format!(
                        "the primary {primary} is down and failover.auto_promote is off: promote a replica with POST /v1/clusters/{name}/promote"
                    ));
                    continue;
                }
                let cool_down = state.back_off(settings.check_interval.max(FLOOR), MAX_BACK_OFF);
                if state.since_last_end().is_some_and(|d| d < cool_down) {
                    continue;
                }
                let error = view.last_error.as_ref();
                let reason = format!(
                    "the primary {primary} failed {} checks in a row (last: {}: {})",
                    view.consecutive_failures,
                    error.map_or("unknown", |e| e.kind.as_str()),
                    error.map_or("", |e| e.message.as_str()),
                );
                let failing_since = view.failing_since.map(|at| {
                    SystemTime::now()
                        .checked_sub(at.elapsed())
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                });
                let req = Request::Failover {
                    reason,
                    failing_since,
                };
                match procedure::start(ha.clone(), name, req) {
                    Ok(f) => {
                        tracing::warn!(cluster = %name, primary = %primary, "postgres primary is down: failing over");
                        tokio::spawn(f);
                    }
                    Err(e) => tracing::debug!(cluster = %name, error = %e, "failover not started"),
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Read the synchronous-standby state of a healthy primary, once per [`SYNC_EVERY`], on a
/// connection kept for it.
async fn sync_probe(
    failovers: &Failovers,
    c: &ClusterRuntime,
    primary: &str,
    conns: &mut HashMap<String, (String, Client, Instant)>,
) {
    let limit = c.config.failover.check_timeout;
    if let Some((addr, client, at)) = conns.get(&c.name) {
        if addr == primary && !client.is_closed() {
            if at.elapsed() < SYNC_EVERY {
                return;
            }
        } else {
            conns.remove(&c.name);
        }
    }
    if !conns.contains_key(&c.name) {
        let Some(login) = NodeLogin::new(c, &c.primary) else {
            return;
        };
        match probe::open(&login, limit).await {
            Ok(client) => {
                conns.insert(
                    c.name.clone(),
                    (primary.to_string(), client, Instant::now()),
                );
            }
            Err(_) => return,
        }
    }
    let Some((_, client, at)) = conns.get_mut(&c.name) else {
        return;
    };
    *at = Instant::now();
    match probe::sync_state(client, limit).await {
        Ok(s) => failovers.cluster(&c.name).set_sync(Some(s)),
        Err(e) => {
            tracing::debug!(cluster = %c.name, error = %e, "reading synchronous standbys failed");
            conns.remove(&c.name);
        }
    }
}
