//! Following the failover decisions of other Switchyards (`failover.etcd`): one task per
//! cluster with an etcd lease configured keeps a watch on `<prefix>/<cluster>/decision`,
//! which the lease holder writes right after its promotion ([`super::lease::Decision`]).
//! When a decision replaces the primary this router writes to, the old primary is fenced and
//! writes go to the new one at once, as on the deciding sidecar: a sidecar that did not take
//! part (its own checks still pass, or `auto_promote` is off) stops writing to the old
//! primary within the watch's delay, not after its own detection.
//!
//! The new primary's pool is warmed at once ([`crate::server::pool::NodePool::warm_like`]):
//! as many connections as the old primary had, for the key it was last logged in with. With
//! a shared config (`[store] kind = "etcd"`) the follower records nothing itself: the
//! decider's change reaches it through the store. A rejoin decision lifts the fence
//! ([`super::rejoin::follow_rejoin`]).
//!
//! Only decisions made while the watch runs are followed: one found in etcd at start is
//! history (the config has recorded it, or an operator has changed the roles since). A
//! decision about another primary than this router's is ignored (with a warning): the roles
//! here changed otherwise, and an operator decides. A broken watch is reopened from the last
//! revision seen, so no decision made meanwhile is missed (after a compaction, from now).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use etcd_client::EventType;
use switchyard_config::EtcdSettings;
use tokio::task::JoinHandle;

use super::apply::apply_roles;
use super::lease::{self, Arbiter, Decision};
use super::rejoin::follow_rejoin;
use super::roles::RoleChange;
use super::state::Attempt;
use crate::ha::handles::Ha;

/// How often the supervisor compares the running watches with the config.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// Longest pause before a broken watch is reopened.
const MAX_BACK_OFF: Duration = Duration::from_secs(2);

/// Keep one decision watch per cluster with `failover.etcd` until the task is dropped.
pub async fn run(ha: Ha) {
    let mut watches: HashMap<String, (EtcdSettings, Task)> = HashMap::new();
    loop {
        let desired: HashMap<String, EtcdSettings> = ha
            .live
            .load()
            .map(|rt| {
                rt.clusters
                    .iter()
                    .filter_map(|(name, c)| Some((name.clone(), c.config.failover.etcd.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        watches.retain(|name, (settings, task)| {
            desired.get(name) == Some(settings) && !task.0.is_finished()
        });
        for (name, settings) in desired {
            if let Entry::Vacant(slot) = watches.entry(name) {
                let name = slot.key().clone();
                let task = Task(tokio::spawn(watch(ha.clone(), name, settings.clone())));
                slot.insert((settings, task));
            }
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

/// A watch task, aborted when dropped: the watches stop with the supervisor.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follow the decisions about `cluster` until aborted.
async fn watch(ha: Ha, cluster: String, settings: EtcdSettings) {
    let me = lease::identity();
    let mut resume: Option<i64> = None;
    let mut back_off = Duration::from_millis(100);
    loop {
        match watch_once(&ha, &cluster, &settings, &me, &mut resume).await {
            Ok(()) => back_off = Duration::from_millis(100),
            Err(e) => {
                tracing::debug!(cluster = %cluster, error = %e, "failover decision watch broke; reopening");
                tokio::time::sleep(back_off).await;
                back_off = (back_off * 2).min(MAX_BACK_OFF);
            }
        }
    }
}

/// Open the watch (from `resume` + 1, or from now) and follow it until it breaks. `Ok` means
/// start again from now (the revision was compacted).
async fn watch_once(
    ha: &Ha,
    cluster: &str,
    settings: &EtcdSettings,
    me: &str,
    resume: &mut Option<i64>,
) -> Result<(), String> {
    let arbiter = Arbiter::connect(settings).await?;
    let key = arbiter.key(cluster, "decision");
    let start = match *resume {
        Some(rev) => rev + 1,
        None => {
            let rev = arbiter.revision(&key).await?;
            *resume = Some(rev);
            rev + 1
        }
    };
    let mut stream = arbiter.watch(&key, start).await?;
    tracing::debug!(cluster, key = %key, start, "watching failover decisions");
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err("the watch ended".into()),
            Err(e) => return Err(e.to_string()),
        };
        if msg.canceled() {
            if msg.compact_revision() > 0 {
                *resume = None;
                return Ok(());
            }
            return Err(format!("the watch was canceled: {}", msg.cancel_reason()));
        }
        for event in msg.events() {
            let Some(kv) = event.kv() else { continue };
            *resume = Some(resume.unwrap_or(0).max(kv.mod_revision()));
            if event.event_type() != EventType::Put {
                continue;
            }
            match serde_json::from_slice::<Decision>(kv.value()) {
                Ok(d) if d.by == me => {}
                Ok(d) => match &d.rejoined {
                    Some(node) => follow_rejoin(ha, cluster, node, &d),
                    None => follow(ha, cluster, &d),
                },
                Err(e) => {
                    tracing::warn!(cluster, key = %key, error = %e, "not a failover decision; ignored")
                }
            }
        }
    }
}

/// Make `decision` this router's roles: fence the old primary, route writes to the new one,
/// and record the change in the config.
fn follow(ha: &Ha, cluster: &str, decision: &Decision) {
    let Some(rt) = ha.live.cluster(cluster) else {
        return;
    };
    let current = rt.primary.to_string();
    if current == decision.primary {
        // The shared config brought the change first: only the pool is left to warm.
        warm(ha, cluster, &decision.old_primary, 0);
        return;
    }
    if current != decision.old_primary {
        tracing::warn!(cluster, primary = %current, decided_old = %decision.old_primary, new = %decision.primary,
            "a failover decision about another primary than this router's: not followed");
        return;
    }
    let known = rt
        .config
        .nodes
        .iter()
        .any(|n| n.addr.to_string() == decision.primary);
    if !known || ha.failovers.fenced(&decision.primary).is_some() {
        tracing::warn!(cluster, new = %decision.primary,
            "a failover decision names a node this router does not have, or has fenced: not followed");
        return;
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(decision.at_ms);
    let reason = format!(
        "failover at {} decided by {}: {}",
        humantime::format_rfc3339_seconds(at),
        decision.by,
        decision.reason
    );
    let change = RoleChange {
        cluster: cluster.to_string(),
        primary: Some(decision.primary.clone()),
        fence: vec![(current.clone(), reason.clone())],
        demote: Vec::new(),
        unfence: Vec::new(),
        action: "postgres.failover",
        actor: "failover".into(),
        detail: serde_json::json!({
            "cluster": cluster,
            "old_primary": current,
            "new_primary": decision.primary,
            "reason": reason,
            "decided_by": decision.by,
        }),
    };
    ha.failovers.fence(&current, &reason);
    if let Err(e) = apply_roles(&ha.live, &ha.failovers, &change) {
        tracing::error!(cluster, error = %e, "following a failover decision failed");
        return;
    }
    let old_pool = ha.pools.get(cluster, &current);
    let was_open = old_pool.counts().0;
    old_pool.clear();
    warm(ha, cluster, &current, was_open);
    let lag_ms = lease::now_ms().saturating_sub(decision.at_ms);
    tracing::warn!(cluster, old = %current, new = %decision.primary, by = %decision.by, lag_ms,
        "postgres primary changed by another Switchyard's failover: followed");
    metrics::counter!("switchyard_postgres_failovers_total", "cluster" => cluster.to_string(), "kind" => "followed", "outcome" => "ok").increment(1);
    let mut attempt = Attempt {
        kind: "followed",
        actor: decision.by.clone(),
        started: at,
        primary_failing_since: None,
        old_primary: current,
        new_primary: Some(decision.primary.clone()),
        reason,
        detection_ms: None,
        promotion_ms: None,
        duration_ms: lag_ms,
        outcome: "ok".into(),
        lsns: Vec::new(),
        repointed: Vec::new(),
        not_repointed: Vec::new(),
        config_version: None,
    };
    let state = ha.failovers.cluster(cluster);
    // With a shared config the deciding Switchyard's change reaches this one through the
    // store: recording it here too would make a second version and a second audit line.
    let Some(sink) = ha.failovers.sink().filter(|s| !s.shared()) else {
        state.remember(attempt);
        return;
    };
    let cluster = cluster.to_string();
    tokio::spawn(async move {
        match sink.apply(change).await {
            Ok(v) => attempt.config_version = Some(v),
            Err(e) => {
                tracing::error!(cluster = %cluster, error = %e, "the followed failover could not be recorded in the config; the router keeps routing to the new primary");
                attempt.outcome = format!("followed, but recording it in the config failed: {e}");
            }
        }
        state.remember(attempt);
    });
}

/// Pre-open connections to the cluster's primary (just changed from `old`, whose pool had
/// `was_open` connections) in the background, so the first writes after the failover do not
/// pay for logins.
fn warm(ha: &Ha, cluster: &str, old: &str, was_open: usize) {
    let Some(rt) = ha.live.cluster(cluster) else {
        return;
    };
    let primary = rt.primary.clone();
    let old = ha.pools.get(cluster, old);
    let stats = ha.stats.get(cluster);
    ha.pools
        .get(cluster, &primary.to_string())
        .warm_like(&old, &rt, &primary, &stats, was_open);
}
