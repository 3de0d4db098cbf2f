//! Per-cluster failover state: the phase of the failover or switchover under way (a
//! `watch`, so paused writes wake the moment it ends), the history of attempts, and the last
//! decision not to fail over (shown in `/v1/status`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::watch;

use super::probe::SyncState;
use super::roles::FailoverSink;

/// Attempts kept per cluster.
const HISTORY_LEN: usize = 20;

/// What a failover or switchover is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asking the replicas whether the primary is really gone.
    Confirming,
    /// A switchover waits for running transactions to finish and the target to catch up.
    Draining,
    /// Promoting the chosen replica.
    Promoting,
    /// Re-pointing the other replicas and recording the change in the config.
    Reconfiguring,
}

/// Why and when a node was fenced.
#[derive(Debug, Clone, Serialize)]
pub struct Fence {
    pub reason: String,
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
}

/// One failover, switchover or manual promotion, finished or given up.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// `failover`, `promote` or `switchover`.
    pub kind: &'static str,
    /// Who asked (`failover` for the router itself).
    pub actor: String,
    #[serde(serialize_with = "ser_time")]
    pub started: SystemTime,
    /// When the primary's first failed check of the streak started (failovers only).
    #[serde(serialize_with = "ser_opt_time")]
    pub primary_failing_since: Option<SystemTime>,
    pub old_primary: String,
    pub new_primary: Option<String>,
    /// Why the primary was declared failed (failovers), or the operator's request.
    pub reason: String,
    /// How long detection took: first failed check to the start of the failover.
    pub detection_ms: Option<u64>,
    /// How long promoting took (`pg_promote` to `pg_is_in_recovery() = false`).
    pub promotion_ms: Option<u64>,
    /// From the start of the failover to writes going to the new primary.
    pub duration_ms: u64,
    /// `ok`, or why it stopped.
    pub outcome: String,
    /// WAL positions of the candidates when the choice was made, by node.
    pub lsns: Vec<(String, String)>,
    /// Replicas re-pointed at the new primary, and those that could not be.
    pub repointed: Vec<String>,
    pub not_repointed: Vec<(String, String)>,
    /// The config version that recorded it.
    pub config_version: Option<u64>,
}

/// Failover state of one cluster.
#[derive(Debug)]
pub struct ClusterFailover {
    phase: watch::Sender<Option<Phase>>,
    history: Mutex<VecDeque<Attempt>>,
    /// The latest decision not to fail over, with when it was made.
    held_back: Mutex<Option<(SystemTime, String)>>,
    /// When the last attempt ended (so a failed one is not retried at once).
    last_end: Mutex<Option<Instant>>,
    /// The primary's synchronous replication as last seen while it was up.
    sync: Mutex<Option<SyncState>>,
    /// Attempts in a row that did not complete (the next one waits longer).
    failures: std::sync::atomic::AtomicU32,
    /// The primary the running attempt replaces: writes bound for it wait.
    replacing: Mutex<Option<String>>,
}

impl Default for ClusterFailover {
    fn default() -> Self {
        ClusterFailover {
            phase: watch::Sender::new(None),
            history: Mutex::default(),
            held_back: Mutex::default(),
            last_end: Mutex::default(),
            sync: Mutex::default(),
            failures: Default::default(),
            replacing: Mutex::default(),
        }
    }
}

impl ClusterFailover {
    /// The phase under way, if any.
    pub fn phase(&self) -> Option<Phase> {
        *self.phase.borrow()
    }

    /// Claim the cluster for a failover or switchover of `primary`. `false` when one
    /// already runs.
    pub fn begin(&self, phase: Phase, primary: &str) -> bool {
        let mut replacing = lock(&self.replacing);
        let began = self.phase.send_if_modified(|p| {
            if p.is_some() {
                return false;
            }
            *p = Some(phase);
            true
        });
        if began {
            *replacing = Some(primary.to_string());
        }
        began
    }

    /// The primary the running attempt replaces, while one runs.
    pub fn replacing(&self) -> Option<String> {
        self.phase().and(lock(&self.replacing).clone())
    }

    /// Move the running attempt to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(Some(phase));
    }

    /// End the running attempt, recording it (when given). Paused writes wake.
    pub fn end(&self, attempt: Option<Attempt>) {
        if let Some(a) = attempt {
            self.remember(a);
        }
        *lock(&self.last_end) = Some(Instant::now());
        *lock(&self.replacing) = None;
        self.phase.send_replace(None);
    }

    /// Keep `attempt` in the history without touching the phase (a decision of another
    /// Switchyard, followed).
    pub fn remember(&self, attempt: Attempt) {
        let mut h = lock(&self.history);
        h.push_back(attempt);
        while h.len() > HISTORY_LEN {
            h.pop_front();
        }
    }

    /// Record what the primary said about its synchronous standbys.
    pub fn set_sync(&self, sync: Option<SyncState>) {
        *lock(&self.sync) = sync;
    }

    /// The primary's synchronous replication as last seen.
    pub fn sync(&self) -> Option<SyncState> {
        lock(&self.sync).clone()
    }

    /// Count an attempt's result: failures in a row lengthen the pause before the next.
    pub fn note_result(&self, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if ok {
            self.failures.store(0, Relaxed);
        } else {
            self.failures.fetch_add(1, Relaxed);
        }
    }

    /// How long to wait after the last attempt before the next: `base`, doubled for each
    /// failure in a row, at most `cap`.
    pub fn back_off(&self, base: Duration, cap: Duration) -> Duration {
        let n = self
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(16);
        base.saturating_mul(1 << n).min(cap)
    }

    /// Forget failures (the primary answers again).
    pub fn reset_failures(&self) {
        self.failures.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time since the last attempt ended.
    pub fn since_last_end(&self) -> Option<Duration> {
        lock(&self.last_end).map(|t| t.elapsed())
    }

    /// Record a decision not to fail over (cleared by the next attempt).
    pub fn hold_back(&self, why: String) {
        let mut slot = lock(&self.held_back);
        let changed = slot.as_ref().is_none_or(|(_, w)| *w != why);
        if changed {
            tracing::warn!(reason = %why, "postgres failover held back");
        }
        *slot = Some((SystemTime::now(), why));
    }

    /// Clear the held-back note (the primary is fine again, or a failover started).
    pub fn clear_hold_back(&self) {
        *lock(&self.held_back) = None;
    }

    /// Wait until no attempt runs, at most `limit`. `true` when none runs.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let mut rx = self.phase.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|p| p.is_none()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The attempts kept, oldest first.
    pub fn history(&self) -> Vec<Attempt> {
        lock(&self.history).iter().cloned().collect()
    }

    /// For `/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let held = lock(&self.held_back).clone();
        serde_json::json!({
            "phase": self.phase(),
            "held_back": held.map(|(at, why)| serde_json::json!({
                "at": humantime::format_rfc3339_millis(at).to_string(),
                "reason": why,
            })),
            "synchronous_standbys": self.sync().filter(|s| s.synchronous).map(|s| s.standbys),
            "history": self.history(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

/// Failover state of every cluster, by name, and what this process has fenced.
#[derive(Default)]
pub struct Failovers {
    clusters: DashMap<String, Arc<ClusterFailover>>,
    /// Nodes fenced by this process, by address, until rejoined.
    fenced: DashMap<String, Fence>,
    sink: OnceLock<Arc<dyn FailoverSink>>,
}

impl std::fmt::Debug for Failovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failovers")
            .field("clusters", &self.clusters.len())
            .field("fenced", &self.fenced.len())
            .field("sink", &self.sink.get().is_some())
            .finish()
    }
}

impl Failovers {
    /// Plug in the control plane's writer (once, at start-up).
    pub fn set_sink(&self, sink: Arc<dyn FailoverSink>) {
        let _ = self.sink.set(sink);
    }

    pub(crate) fn sink(&self) -> Option<Arc<dyn FailoverSink>> {
        self.sink.get().cloned()
    }

    /// The state of `cluster` (created on first use).
    pub fn cluster(&self, cluster: &str) -> Arc<ClusterFailover> {
        crate::registry::shared(&self.clusters, cluster)
    }

    /// Whether a failover or switchover of `cluster` is under way.
    #[inline]
    pub fn running(&self, cluster: &str) -> bool {
        self.clusters
            .get(cluster)
            .is_some_and(|c| c.phase().is_some())
    }

    /// The primary of `cluster` that a running failover or switchover replaces.
    pub fn replacing(&self, cluster: &str) -> Option<String> {
        self.clusters.get(cluster).and_then(|c| c.replacing())
    }

    /// Wait until no failover of `cluster` runs, at most `limit`. `true` when none runs.
    pub async fn wait_idle(&self, cluster: &str, limit: Duration) -> bool {
        let Some(c) = self.clusters.get(cluster).map(|c| c.clone()) else {
            return true;
        };
        c.wait_idle(limit).await
    }

    /// Remember that `addr` was fenced.
    pub fn fence(&self, addr: &str, reason: &str) {
        self.fenced.insert(
            addr.to_string(),
            Fence {
                reason: reason.to_string(),
                at: SystemTime::now(),
            },
        );
    }

    /// Forget the fence of `addr` (the operator rejoined it).
    pub fn unfence(&self, addr: &str) {
        self.fenced.remove(addr);
    }

    /// Why and when this process fenced `addr`, if it did.
    pub fn fenced(&self, addr: &str) -> Option<Fence> {
        self.fenced.get(addr).map(|f| f.clone())
    }

    /// Status of every cluster that had a failover, for `/v1/status`.
    pub fn status_of(&self, cluster: &str) -> serde_json::Value {
        match self.clusters.get(cluster) {
            Some(c) => c.status(),
            None => serde_json::json!({ "phase": null, "history": [] }),
        }
    }
}
