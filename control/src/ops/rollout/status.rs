//! A rollout's state as `GET /v1/upstreams/{name}/rollout` shows it, batch by batch, and
//! [`Rollouts`]: the latest rollout per upstream with the handles that stop or resume it.
//! Below the driver ([`super::driver`]); imports none of the other rollout files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

use super::request::RolloutRequest;
use crate::applier::lock;
use crate::ops::claim::Claims;
use crate::plane::PoolCounts;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    /// Between batches, waiting for `POST …/rollout/resume`.
    Paused,
    /// Every batch replaced and verified.
    Succeeded,
    /// Every batch replaced, but at least one saw too little traffic to be verified
    /// (fewer than `min_requests` even after its window was extended).
    Unverified,
    /// A batch failed: it stays out of rotation, the rest keep serving.
    Failed,
    /// Stopped by `POST …/rollout/abort`: drains and weights are as before the rollout.
    Aborted,
}

impl RolloutState {
    pub fn is_over(self) -> bool {
        matches!(
            self,
            RolloutState::Succeeded
                | RolloutState::Unverified
                | RolloutState::Failed
                | RolloutState::Aborted
        )
    }
}

/// The step a batch is in (or ended in), in the order a batch goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Pending,
    Draining,
    Replacing,
    WaitingReady,
    /// Back in rotation, its weight ramping up over the upstream's `slow_start`.
    SlowStart,
    Verifying,
    Done,
    /// Kept in rotation with too little traffic to tell (as a flip's `unverified`).
    Unverified,
    Failed,
    Aborted,
}

/// One step of a batch: when it ran, what it measured and why it moved on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// What the step saw, and why it ended (`"0 in flight after 120ms"`).
    pub note: Option<String>,
}

/// One batch of backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchStatus {
    pub index: usize,
    pub backends: Vec<String>,
    pub step: Step,
    pub steps: Vec<StepRecord>,
    /// The replace command's exit and output (its last 8 KiB), or the webhook's answer.
    pub replace_output: Option<String>,
    /// Requests and failed requests of the batch during its verification window.
    pub verified: Option<PoolCounts>,
    /// The p99 comparison with the backends not yet replaced, when `max_p99_ratio` is set.
    pub latency: Option<LatencyCheck>,
    /// Why the batch failed.
    pub reason: Option<String>,
}

/// A batch's p99 against the backends not yet replaced, over the same window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyCheck {
    /// Upper bound of the histogram bucket holding the batch's p99, in milliseconds.
    pub batch_p99_ms: Option<f64>,
    pub others_p99_ms: Option<f64>,
    pub batch_requests: u64,
    pub others_requests: u64,
    pub max_p99_ratio: f64,
}

/// A rollout's progress or outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub upstream: String,
    pub state: RolloutState,
    /// Who started it.
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub request: RolloutRequest,
    pub batches: Vec<BatchStatus>,
    /// The batch being worked on (or that failed).
    pub current: Option<usize>,
    pub failed_batch: Option<usize>,
    /// Why the rollout ended (or is paused).
    pub reason: Option<String>,
    /// Backends of the upstream that were drained before it started, left as they are.
    pub skipped: Vec<String>,
    /// What `abort` puts back: every backend's state and every pool's weight at the start.
    pub before: Before,
    /// With a shared store, the node driving the rollout (the one that took it over, after
    /// the one before died).
    #[serde(default)]
    pub driver: Option<String>,
    /// Each takeover: which node's lease ran out, where, and who went on.
    #[serde(default)]
    pub takeovers: Vec<String>,
}

/// The upstream's drains and weights when the rollout started.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Before {
    /// Backend address to `true` when it was drained.
    pub drained: BTreeMap<String, bool>,
    pub pool_weights: BTreeMap<String, u32>,
}

/// One rollout and the handles of its driver.
pub(super) struct Entry {
    pub status: Mutex<RolloutStatus>,
    pub abort: watch::Sender<bool>,
    pub resume: Notify,
    /// Bumped on every change of the status (the store's publisher follows it).
    pub changed: watch::Sender<u64>,
    /// Set when this node lost the rollout's lease: the driver stops without touching
    /// anything (another node goes on).
    pub lost: watch::Sender<bool>,
    /// A rollout another node drives, as the store shows it (no driver here).
    pub remote: bool,
}

impl Entry {
    pub fn new(status: RolloutStatus) -> Arc<Entry> {
        Entry::with(status, false)
    }

    fn with(status: RolloutStatus, remote: bool) -> Arc<Entry> {
        Arc::new(Entry {
            status: Mutex::new(status),
            abort: watch::channel(false).0,
            resume: Notify::new(),
            changed: watch::channel(0).0,
            lost: watch::channel(false).0,
            remote,
        })
    }

    pub fn get(&self) -> RolloutStatus {
        lock(&self.status).clone()
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut RolloutStatus) -> R) -> R {
        let r = f(&mut lock(&self.status));
        self.changed.send_modify(|n| *n += 1);
        r
    }
}

/// The rollouts of this process: the latest per upstream.
#[derive(Clone, Default)]
pub struct Rollouts {
    latest: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    /// The upstreams' claims, shared with the flips ([`crate::ops::Ops`]).
    pub(super) claims: Claims,
}

impl Rollouts {
    /// Rollouts that share `claims` with other operations on upstreams (the flips).
    pub(crate) fn with_claims(claims: Claims) -> Self {
        Rollouts {
            latest: Arc::default(),
            claims,
        }
    }

    /// The latest rollout of `upstream`, running or over.
    pub fn latest(&self, upstream: &str) -> Option<RolloutStatus> {
        let entry = lock(&self.latest).get(upstream).cloned();
        entry.map(|e| e.get())
    }

    pub(super) fn entry(&self, upstream: &str) -> Option<Arc<Entry>> {
        lock(&self.latest).get(upstream).cloned()
    }

    /// Record `entry` as the rollout of `upstream`, unless one is still going on (that one
    /// is returned).
    pub(super) fn claim(
        &self,
        upstream: &str,
        entry: Arc<Entry>,
    ) -> Result<(), Box<RolloutStatus>> {
        let mut map = lock(&self.latest);
        if let Some(current) = map.get(upstream) {
            let status = current.get();
            if !status.state.is_over() {
                return Err(Box::new(status));
            }
        }
        map.insert(upstream.to_string(), entry);
        Ok(())
    }

    /// Record `entry` as the rollout of `upstream` whatever was there (a rollout this node
    /// takes over).
    pub(super) fn replace(&self, upstream: &str, entry: Arc<Entry>) {
        lock(&self.latest).insert(upstream.to_string(), entry);
    }

    /// Take in a rollout as the fleet's store has it (driven by another node, or finished),
    /// unless this node drives that upstream's rollout, or knows a newer one of its own.
    pub(super) fn observe(&self, status: RolloutStatus) {
        let mut map = lock(&self.latest);
        match map.get(&status.upstream) {
            Some(e) if e.remote => {
                e.update(|s| *s = status);
            }
            Some(e) if e.get().started_at >= status.started_at => {}
            _ => {
                map.insert(status.upstream.clone(), Entry::with(status, true));
            }
        }
    }

    /// Whether this node drives a rollout of `upstream` now.
    pub(super) fn driving(&self, upstream: &str) -> bool {
        lock(&self.latest)
            .get(upstream)
            .is_some_and(|e| !e.remote && !e.get().state.is_over())
    }
}
