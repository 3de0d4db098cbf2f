//! Blue/green flips: send all of an upstream's traffic to one pool, then watch that pool's
//! error ratio for a window and put the previous weights back on their own if it breaches.
//!
//! [`Flips`] owns the flips of the process: the latest one per upstream (for
//! `GET /v1/upstreams/{name}/flip`) and a claim per upstream being verified, so two flips of
//! one upstream never overlap. The verification itself runs in a task, see
//! [`super::verify`]. With a file store, flips are not persisted: a restart forgets them and
//! leaves the weights as the last applied config has them. With a shared store the verifier
//! holds the fleet's lease for the upstream and keeps the flip's state in etcd
//! ([`super::ledger`]), so another node finishes it if this one dies.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_config::edit::{set_pool_weights, EditError};
use switchyard_config::Config;
use time::OffsetDateTime;

use super::claim::Kind;
use super::flips::{finish, Claim, FlipState, FlipStatus, Flips};
use super::ledger::{self, Shared};
use super::request::FlipRequest;
use super::rollout;
use super::verify::Verifier;
use crate::applier::{Applier, ApplyError, ApplyOutcome, EditRequest};
use crate::history::{Actor, Origin};
use crate::plane::TrafficStats;

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
    /// A rollout of this upstream is going on (on this node, or on the fleet).
    #[error("a rollout of upstream {upstream:?} is going on: abort it or wait for its outcome before a flip")]
    RolloutRunning { upstream: String },
    #[error("{0}")]
    Apply(ApplyError),
    /// The shared store could not be reached to take the flip's verifier lease.
    #[error("config store unreachable, the flip's verifier lease cannot be taken: {0}")]
    Unavailable(String),
}

impl FlipError {
    /// The flip being verified, for a [`FlipError::Busy`].
    pub fn current(&self) -> Option<&FlipStatus> {
        match self {
            FlipError::Busy { current, .. } => current.as_deref(),
            FlipError::RolloutRunning { .. } | FlipError::Apply(_) | FlipError::Unavailable(_) => {
                None
            }
        }
    }
}

impl Flips {
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
        let claim = match Claim::take(self, upstream) {
            Ok(claim) => claim,
            Err(Kind::Rollout) => {
                return Err(FlipError::RolloutRunning {
                    upstream: upstream.to_string(),
                })
            }
            Err(Kind::Flip) => {
                return Err(FlipError::Busy {
                    upstream: upstream.to_string(),
                    current: self.latest(upstream).map(Box::new),
                })
            }
        };
        // With a shared store, one node verifies a flip of this upstream for the whole fleet.
        let mut shared = match applier.store().etcd().cloned() {
            None => None,
            Some(store) => match Shared::take(&store, upstream).await {
                // Under the lease, a rollout another node drives (or whose driver died and
                // is being taken over) still keeps the upstream: its record says so.
                Ok(Some(s)) if rollout::running_in(&store, upstream).await => {
                    s.release().await;
                    claim.give_back();
                    return Err(FlipError::RolloutRunning {
                        upstream: upstream.to_string(),
                    });
                }
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    claim.give_back();
                    let current = ledger::read(&store, upstream).await;
                    return Err(FlipError::Busy {
                        upstream: upstream.to_string(),
                        current: current.map(|r| Box::new(r.status)),
                    });
                }
                Err(e) => {
                    claim.give_back();
                    return Err(FlipError::Unavailable(e));
                }
            },
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
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                if let Some(s) = shared.take() {
                    s.release().await;
                }
                return Err(FlipError::Apply(e));
            }
        };
        let plan = plan.into_inner().unwrap_or_else(|p| p.into_inner());
        let (ApplyOutcome::Applied { after, .. }, Some(plan)) = (&outcome, plan) else {
            if let Some(s) = shared.take() {
                s.release().await;
            }
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
            verifier: shared
                .as_ref()
                .and_then(|_| applier.store().etcd().map(|s| s.node().to_string())),
        };
        tracing::info!(upstream, to = %req.to, version = status.flip_version, "flip applied; verifying");
        let baseline = traffic
            .as_ref()
            .and_then(|t| Some((t.clone(), t.pool_counts(upstream, &req.to)?)));
        match baseline {
            Some((traffic, baseline)) => {
                self.record(status.clone());
                if let Some(s) = shared.as_mut() {
                    s.set_baseline(baseline);
                    s.publish(&status).await;
                }
                let verifier = Verifier {
                    flips: self.clone(),
                    applier,
                    traffic,
                    status: status.clone(),
                    baseline,
                    resume: None,
                    shared,
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
                if let Some(s) = shared {
                    s.publish(&status).await;
                    s.release().await;
                }
            }
        }
        Ok(FlipStarted {
            outcome,
            status: Some(status),
        })
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
