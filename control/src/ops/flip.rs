//! Blue/green flips: send all of an upstream's traffic to one pool, then watch that pool's
//! error ratio for a window and put the previous weights back on their own if it breaches.
//!
//! [`Flips`] owns the flips of the process: the latest one per upstream (for
//! `GET /v1/upstreams/{name}/flip`) and a claim per upstream being verified, so two flips of
//! one upstream never overlap. The verification itself runs in a task, see
//! [`super::verify`]. Flips are not persisted: a restart forgets them and leaves the weights
//! as the last applied config has them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use switchyard_config::edit::{set_pool_weights, EditError};
use switchyard_config::Config;
use time::OffsetDateTime;

use super::request::{FlipRequest, Verify};
use super::verify::Verifier;
use crate::applier::{lock, Applier, ApplyError, ApplyOutcome, EditRequest};
use crate::history::{Actor, Origin};
use crate::plane::TrafficStats;

/// How often a verifier reads the traffic counters.
pub const DEFAULT_POLL: Duration = Duration::from_millis(150);

/// Where a flip is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

/// A flip that was applied (`status` is `Some`), or that changed nothing because the pool
/// already had all the traffic (`status` is `None`).
#[derive(Debug)]
pub struct FlipStarted {
    pub outcome: ApplyOutcome,
    pub status: Option<FlipStatus>,
}

/// Why a flip did not start.
#[derive(Debug, thiserror::Error)]
pub enum FlipError {
    /// A flip of this upstream is being verified (its status, when known).
    #[error("a flip of upstream {upstream:?} is being verified; wait for its outcome")]
    Busy {
        upstream: String,
        current: Option<Box<FlipStatus>>,
    },
    #[error("{0}")]
    Apply(ApplyError),
}

impl FlipError {
    /// The flip being verified, for a [`FlipError::Busy`].
    pub fn current(&self) -> Option<&FlipStatus> {
        match self {
            FlipError::Busy { current, .. } => current.as_deref(),
            FlipError::Apply(_) => None,
        }
    }
}

/// The flips of this process. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Flips {
    inner: Arc<Inner>,
}

struct Inner {
    poll: Duration,
    latest: Mutex<HashMap<String, FlipStatus>>,
    verifying: Mutex<HashSet<String>>,
}

impl Default for Flips {
    fn default() -> Self {
        Flips::with_poll_interval(DEFAULT_POLL)
    }
}

impl Flips {
    /// Flips whose verifiers read the counters every `poll`.
    pub fn with_poll_interval(poll: Duration) -> Self {
        Flips {
            inner: Arc::new(Inner {
                poll,
                latest: Mutex::default(),
                verifying: Mutex::default(),
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

    /// Change the recorded status of `upstream`'s flip of `version`.
    pub(super) fn update(&self, upstream: &str, version: u64, f: impl FnOnce(&mut FlipStatus)) {
        if let Some(s) = lock(&self.inner.latest)
            .get_mut(upstream)
            .filter(|s| s.flip_version == version)
        {
            f(s);
        }
    }

    /// Flip `upstream` to `req.to`: apply the new weights as `upstream.flip`, then verify
    /// in a task with `traffic` (without counters the flip stays, `unverified`).
    pub async fn start(
        &self,
        applier: Arc<Applier>,
        traffic: Option<Arc<dyn TrafficStats>>,
        actor: Actor,
        upstream: &str,
        req: FlipRequest,
    ) -> Result<FlipStarted, FlipError> {
        let Some(claim) = Claim::take(self, upstream) else {
            return Err(FlipError::Busy {
                upstream: upstream.to_string(),
                current: self.latest(upstream).map(Box::new),
            });
        };
        let detail =
            serde_json::json!({ "upstream": upstream, "to": req.to, "verify": req.verify });
        let edit = EditRequest {
            action: "upstream.flip",
            actor: actor.clone(),
            origin: Origin::Api,
            expect_version: None,
            detail: Some(detail),
        };
        // The edit may run more than once (a lost compare-and-swap on a shared store reruns
        // it on the newer document): the plan of the last run is the one applied.
        let plan = std::sync::Mutex::new(None);
        let outcome = applier
            .apply_edit(edit, |s| {
                let p = Plan::new(&s.config, upstream, &req.to)?;
                let text = set_pool_weights(&s.source, upstream, &p.list())?;
                *crate::applier::lock(&plan) = Some(p);
                Ok(text)
            })
            .await
            .map_err(FlipError::Apply)?;
        let plan = plan.into_inner().unwrap_or_else(|p| p.into_inner());
        let (ApplyOutcome::Applied { after, .. }, Some(plan)) = (&outcome, plan) else {
            return Ok(FlipStarted {
                outcome,
                status: None,
            });
        };
        let mut status = FlipStatus {
            upstream: upstream.to_string(),
            to: req.to.clone(),
            state: FlipState::Verifying,
            actor: actor.name,
            started_at: OffsetDateTime::now_utc(),
            finished_at: None,
            verify: req.verify,
            previous_weights: plan.previous,
            weights: plan.next,
            requests: 0,
            errors: 0,
            reason: None,
            flip_version: after.snapshot.version,
            rollback_version: None,
        };
        tracing::info!(upstream, to = %req.to, version = status.flip_version, "flip applied; verifying");
        let baseline = traffic
            .as_ref()
            .and_then(|t| Some((t.clone(), t.pool_counts(upstream, &req.to)?)));
        match baseline {
            Some((traffic, baseline)) => {
                self.record(status.clone());
                let verifier = Verifier {
                    flips: self.clone(),
                    applier,
                    traffic,
                    status: status.clone(),
                    baseline,
                    _claim: claim,
                };
                tokio::spawn(verifier.run());
            }
            None => {
                let reason = match traffic {
                    None => "no HTTP plane to count requests: the flip was not verified".into(),
                    Some(_) => format!(
                        "the HTTP plane has no counters for pool {:?} of upstream {upstream:?}: the flip was not verified",
                        req.to
                    ),
                };
                tracing::warn!(upstream, to = %req.to, "{reason}");
                finish(&mut status, FlipState::Unverified, reason);
                self.record(status.clone());
            }
        }
        Ok(FlipStarted {
            outcome,
            status: Some(status),
        })
    }

    fn record(&self, status: FlipStatus) {
        lock(&self.inner.latest).insert(status.upstream.clone(), status);
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
}

impl Claim {
    fn take(flips: &Flips, upstream: &str) -> Option<Claim> {
        lock(&flips.inner.verifying)
            .insert(upstream.to_string())
            .then(|| Claim {
                flips: flips.clone(),
                upstream: upstream.to_string(),
            })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.flips.inner.latest)
            .get_mut(&self.upstream)
            .filter(|s| s.state == FlipState::Verifying)
        {
            finish(
                s,
                FlipState::Failed,
                "verification stopped before the window ended".into(),
            );
        }
        lock(&self.flips.inner.verifying).remove(&self.upstream);
    }
}

/// The weights before and after a flip.
struct Plan {
    previous: BTreeMap<String, u32>,
    next: BTreeMap<String, u32>,
}

impl Plan {
    /// The `to` pool keeps its weight (100 if it had none); every other pool gets 0.
    fn new(config: &Config, upstream: &str, to: &str) -> Result<Plan, EditError> {
        let up = config
            .http
            .upstreams
            .get(upstream)
            .ok_or_else(|| EditError::UnknownUpstream {
                upstream: upstream.to_string(),
            })?;
        if !up.pools.contains_key(to) {
            return Err(EditError::UnknownPool {
                upstream: upstream.to_string(),
                pools: vec![to.to_string()],
                known: up.pools.keys().cloned().collect(),
            });
        }
        let previous: BTreeMap<String, u32> = up
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), p.weight))
            .collect();
        let next = previous
            .iter()
            .map(|(n, w)| match (n == to, *w) {
                (true, 0) => (n.clone(), 100),
                (true, w) => (n.clone(), w),
                (false, _) => (n.clone(), 0),
            })
            .collect();
        Ok(Plan { previous, next })
    }

    fn list(&self) -> Vec<(String, u32)> {
        self.next.iter().map(|(n, w)| (n.clone(), *w)).collect()
    }
}
