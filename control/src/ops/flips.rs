//! [`Flips`]: the flips of the process, the latest one per upstream (for
//! `GET /v1/upstreams/{name}/flip`; with a shared store, also the ones other nodes verify)
//! and a [`Claim`] per upstream being verified, so two flips of one upstream never overlap
//! on this node, nor a flip and a rollout (the claim is the upstream's, [`super::claim`],
//! shared with the rollouts; with a shared store, the leases keep them apart on the fleet).
//! Below the flip operation ([`super::flip`]), its verifier ([`super::verify`]) and the
//! fleet's flip records ([`super::shared`]); imports none of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::claim::{Claims, Kind, Taken};
use super::request::Verify;
use crate::applier::lock;

/// How often a verifier reads the traffic counters.
pub const DEFAULT_POLL: Duration = Duration::from_millis(150);

/// Where a flip is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipState {
    /// Applied; the window is running.
    Verifying,
    /// The window ended without a breach after at least `min_requests` requests.
    Verified,
    /// The window ended without a breach but with too little traffic to tell, or there
    /// were no traffic counters to read. The weights stay.
    Unverified,
    /// The error ratio breached; the previous weights were put back.
    RolledBack,
    /// Verification could not finish (the pool vanished, the rollback was refused, …).
    Failed,
}

impl FlipState {
    /// The state as shown in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FlipState::Verifying => "verifying",
            FlipState::Verified => "verified",
            FlipState::Unverified => "unverified",
            FlipState::RolledBack => "rolled_back",
            FlipState::Failed => "failed",
        }
    }
}

/// A flip's progress or outcome, as `GET /v1/upstreams/{name}/flip` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlipStatus {
    pub upstream: String,
    pub to: String,
    pub state: FlipState,
    /// Who asked for the flip.
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(flatten)]
    pub verify: Verify,
    /// Pool weights before the flip: what a rollback restores.
    pub previous_weights: BTreeMap<String, u32>,
    /// Pool weights the flip applied.
    pub weights: BTreeMap<String, u32>,
    /// Requests to, and failed requests of, the `to` pool since the flip was applied.
    pub requests: u64,
    pub errors: u64,
    /// Why the flip ended as it did (breach, too little traffic, failure).
    pub reason: Option<String>,
    /// The config version the flip applied, and the one its rollback applied.
    pub flip_version: u64,
    pub rollback_version: Option<u64>,
    /// With a shared store, the node verifying the flip (the one that took it over, after
    /// its first verifier died).
    #[serde(default)]
    pub verifier: Option<String>,
}

/// The flips of this process. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Flips {
    inner: Arc<Inner>,
}

struct Inner {
    poll: Duration,
    latest: Mutex<HashMap<String, FlipStatus>>,
    /// The upstreams' claims, shared with the rollouts ([`super::Ops`]).
    claims: Claims,
}

impl Default for Flips {
    fn default() -> Self {
        Flips::with_poll_interval(DEFAULT_POLL)
    }
}

impl Flips {
    /// Flips whose verifiers read the counters every `poll`.
    pub fn with_poll_interval(poll: Duration) -> Self {
        Flips::with_claims(poll, Claims::default())
    }

    /// Flips that share `claims` with other operations on upstreams (the rollouts).
    pub(super) fn with_claims(poll: Duration, claims: Claims) -> Self {
        Flips {
            inner: Arc::new(Inner {
                poll,
                latest: Mutex::default(),
                claims,
            }),
        }
    }

    pub(super) fn poll(&self) -> Duration {
        self.inner.poll
    }

    /// The latest flip of `upstream` since start-up.
    pub fn latest(&self, upstream: &str) -> Option<FlipStatus> {
        lock(&self.inner.latest).get(upstream).cloned()
    }

    /// The latest flip of every upstream that had one (with a shared store, the fleet's).
    pub fn all(&self) -> BTreeMap<String, FlipStatus> {
        lock(&self.inner.latest)
            .iter()
            .map(|(u, s)| (u.clone(), s.clone()))
            .collect()
    }

    /// Change the recorded status of `upstream`'s flip of `version`.
    pub(super) fn update(&self, upstream: &str, version: u64, f: impl FnOnce(&mut FlipStatus)) {
        if let Some(s) = lock(&self.inner.latest)
            .get_mut(upstream)
            .filter(|s| s.flip_version == version)
        {
            f(s);
        }
    }

    pub(super) fn record(&self, status: FlipStatus) {
        lock(&self.inner.latest).insert(status.upstream.clone(), status);
    }

    /// Take in a flip's state as the fleet's store has it (verified by another node, or
    /// finished by one), unless this node verifies that upstream now or knows a newer flip.
    pub(super) fn observe(&self, status: FlipStatus) {
        if self.verifying(&status.upstream) {
            return;
        }
        let mut latest = lock(&self.inner.latest);
        let newer = latest
            .get(&status.upstream)
            .is_none_or(|s| s.flip_version <= status.flip_version);
        if newer {
            latest.insert(status.upstream.clone(), status);
        }
    }

    /// Whether this node verifies a flip of `upstream` now.
    pub(super) fn verifying(&self, upstream: &str) -> bool {
        self.inner.claims.holder(upstream) == Some(Kind::Flip)
    }
}

/// Mark a flip finished with `state` and count it.
pub(super) fn finish(status: &mut FlipStatus, state: FlipState, reason: String) {
    status.state = state;
    status.reason = Some(reason);
    status.finished_at = Some(OffsetDateTime::now_utc());
    metrics::counter!(
        "switchyard_http_flips_total",
        "upstream" => status.upstream.clone(),
        "outcome" => state.as_str()
    )
    .increment(1);
}

/// The right to flip an upstream, held from before the apply until verification ends.
/// Dropping it (normally, or because the runtime shut the task down) releases the upstream
/// and marks a flip still `verifying` as `failed`.
pub(super) struct Claim {
    flips: Flips,
    upstream: String,
    /// Whether dropping it marks a flip still `verifying` as failed (not for a claim given
    /// back before it verified anything).
    armed: bool,
    /// The upstream's claim; dropped after the flip's status is settled.
    _taken: Taken,
}

impl Claim {
    /// Claim `upstream` for a flip; `Err` with what holds it (a flip, or a rollout).
    pub(super) fn take(flips: &Flips, upstream: &str) -> Result<Claim, Kind> {
        let taken = flips.inner.claims.take(upstream, Kind::Flip)?;
        Ok(Claim {
            flips: flips.clone(),
            upstream: upstream.to_string(),
            armed: true,
            _taken: taken,
        })
    }

    /// Give the claim back before verifying anything: the flip shown stays as it is.
    pub(super) fn give_back(mut self) {
        self.armed = false;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.flips.inner.latest)
            .get_mut(&self.upstream)
            .filter(|s| self.armed && s.state == FlipState::Verifying)
        {
            finish(
                s,
                FlipState::Failed,
                "verification stopped before the window ended".into(),
            );
        }
    }
}
