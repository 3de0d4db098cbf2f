//! Starting, aborting and resuming a rollout: check the request against the running config
//! (the upstream, its pool, its active health check, the named command or webhook),
//! refuse it when the first batch would leave fewer than `min_available` healthy backends,
//! record the upstream's drains and weights for `abort`, cut the backends into batches and
//! hand them to the [`Driver`].

use std::sync::Arc;
use std::time::Duration;

use switchyard_config::BackendState;
use time::OffsetDateTime;

use super::driver::{resolve, Driver, Resolved};
use super::edits::restore;
use super::kept::{keep, kept};
use super::request::RolloutRequest;
use super::shared::{publish, read, Lease};
use super::status::{
    BatchStatus, Before, Entry, RolloutState, RolloutStatus, Rollouts, Step, StepRecord,
};
use crate::applier::Applier;
use crate::audit::AuditEntry;
use crate::history::Actor;
use crate::ops::claim::{Kind, Taken};
use crate::ops::flips::FlipState;
use crate::ops::ledger;
use crate::plane::TrafficStats;

/// How often the driver looks at the batch's backends.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// Why a rollout request was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// A rollout of the upstream is going on, or the batch would leave too few backends.
    #[error("{message}")]
    Conflict {
        message: String,
        current: Option<Box<RolloutStatus>>,
    },
    #[error("{0}")]
    Unavailable(String),
}

impl Rollouts {
    /// Start a rollout of `upstream` as `req` asks; its driver runs in a task. With a shared
    /// store it first takes the upstream's driver lease (`409` naming the holder when
    /// another node has it) and publishes its state there at every change.
    pub async fn start(
        &self,
        applier: Arc<Applier>,
        traffic: Option<Arc<dyn TrafficStats>>,
        actor: Actor,
        upstream: &str,
        req: RolloutRequest,
    ) -> Result<RolloutStatus, RolloutError> {
        let traffic = traffic.ok_or_else(|| {
            RolloutError::Unavailable("no HTTP plane: a rollout cannot watch its backends".into())
        })?;
        let current = applier.current();
        let config = &current.snapshot.config;
        let up = config.http.upstreams.get(upstream).ok_or_else(|| {
            RolloutError::NotFound(format!("no upstream {upstream:?} in the running config"))
        })?;
        let bad = |m: String| Err(RolloutError::BadRequest(m));
        let Some(hc) = &up.health_check else {
            return bad(format!("upstream {upstream:?} has no health_check: a rollout waits for the active check to pass on each replaced backend"));
        };
        if req.version.is_some() && hc.version_header.is_none() {
            return bad(format!("\"version\" needs http.upstreams.{upstream}.health_check.version_header: the header the check reads the version from"));
        }
        if let Some(p) = &req.pool {
            if !up.pools.contains_key(p) {
                let known: Vec<&String> = up.pools.keys().collect();
                return bad(format!(
                    "upstream {upstream:?} has no pool {p:?} (it has {known:?})"
                ));
            }
        }
        let replace = resolve(config, &req.replace).map_err(RolloutError::BadRequest)?;
        let mut before = Before::default();
        let (mut targets, mut skipped) = (Vec::new(), Vec::new());
        for (name, pool) in &up.pools {
            before.pool_weights.insert(name.clone(), pool.weight);
            for b in &pool.backends {
                let addr = b.addr.to_string();
                let drained = b.state == BackendState::Drain;
                before.drained.insert(addr.clone(), drained);
                if req.pool.as_ref().is_some_and(|p| p != name) {
                    continue;
                }
                match drained {
                    true => skipped.push(addr),
                    false => targets.push(addr),
                }
            }
        }
        if targets.is_empty() {
            return bad(format!(
                "upstream {upstream:?} has no backend in rotation to replace"
            ));
        }
        let size = req.batch_size.of(targets.len());
        let healthy = up
            .pools
            .values()
            .filter(|p| p.weight > 0)
            .flat_map(|p| p.backends.iter())
            .filter(|b| b.state == BackendState::Enabled)
            .filter(|b| {
                traffic
                    .backend(&b.addr.to_string())
                    .is_some_and(|v| v.healthy)
            })
            .count();
        if healthy.saturating_sub(size) < req.min_available {
            return Err(RolloutError::Conflict {
                message: format!("a batch of {size} would leave {} healthy backend(s) in rotation of {healthy}, fewer than min_available = {}", healthy.saturating_sub(size), req.min_available),
                current: None,
            });
        }
        let batches = targets
            .chunks(size)
            .enumerate()
            .map(|(index, b)| BatchStatus {
                index: index + 1,
                backends: b.to_vec(),
                step: Step::Pending,
                steps: Vec::new(),
                replace_output: None,
                verified: None,
                latency: None,
                reason: None,
            })
            .collect();
        let status = RolloutStatus {
            upstream: upstream.to_string(),
            state: RolloutState::Running,
            actor: actor.name.clone(),
            started_at: OffsetDateTime::now_utc(),
            finished_at: None,
            request: req,
            batches,
            current: Some(0),
            failed_batch: None,
            reason: None,
            skipped,
            before,
            driver: applier.store().etcd().map(|s| s.node().to_string()),
            takeovers: Vec::new(),
        };
        // One operation per upstream on this node: not while a flip of it is verified.
        let taken = self
            .claims
            .take(upstream, Kind::Rollout)
            .map_err(|held| RolloutError::Conflict {
                message: format!("{} of upstream {upstream:?} is going on: wait for its outcome before a rollout", held.as_str()),
                current: self.latest(upstream).filter(|_| held == Kind::Rollout).map(Box::new),
            })?;
        // With a shared store, one node drives a rollout of this upstream for the fleet.
        let lease = match applier.store().etcd() {
            None => None,
            Some(store) => match Lease::take(store, upstream).await {
                // Under the lease, a flip another node verifies (or whose verifier died and
                // is being taken over) still keeps the upstream: its record says so.
                Ok(Some(lease)) if flip_verifying_in(store, upstream).await => {
                    lease.release().await;
                    return Err(RolloutError::Conflict {
                        message: format!("a flip of upstream {upstream:?} is being verified: wait for its outcome before a rollout"),
                        current: None,
                    });
                }
                Ok(Some(lease)) => Some(lease),
                Ok(None) => {
                    let current = read(store, upstream).await;
                    let holder = current
                        .as_ref()
                        .and_then(|c| c.driver.clone())
                        .unwrap_or_else(|| "another node".into());
                    return Err(RolloutError::Conflict {
                        message: format!("a rollout of upstream {upstream:?} is driven by node {holder:?}; abort it there or wait for its outcome"),
                        current: current.map(Box::new),
                    });
                }
                Err(e) => {
                    return Err(RolloutError::Unavailable(format!(
                        "config store unreachable, the rollout's lease cannot be taken: {e}"
                    )))
                }
            },
        };
        let entry = Entry::new(status.clone());
        if let Err(current) = self.claim(upstream, entry.clone()) {
            if let Some(lease) = lease {
                lease.release().await;
            }
            return Err(RolloutError::Conflict {
                message: format!(
                    "a rollout of upstream {upstream:?} is {}; abort it or wait for its outcome",
                    serde_json::json!(current.state)
                ),
                current: Some(current),
            });
        }
        let version = current.snapshot.version;
        applier.runtime().audit.record(&AuditEntry {
            time: OffsetDateTime::now_utc(),
            actor: actor.name,
            remote: actor.remote,
            action: "upstream.rollout".into(),
            version_before: version,
            version_after: version,
            result: "started",
            error: None,
            detail: Some(serde_json::json!({ "upstream": upstream, "request": status.request, "batches": status.batches.iter().map(|b| &b.backends).collect::<Vec<_>>() })),
        });
        tracing::info!(upstream, batches = status.batches.len(), "rollout started");
        match lease {
            Some(lease) => drop(tokio::spawn(publish(entry.clone(), lease))),
            None if applier.keeps_state() => {
                drop(tokio::spawn(keep(entry.clone(), applier.clone())))
            }
            None => {}
        }
        spawn_driver(entry, applier, traffic, replace, Some(taken));
        Ok(status)
    }

    /// Abort the rollout of `upstream` and wait (at most 10 s) for its drains and weights to
    /// be put back. A rollout that already failed has its drains and weights put back too.
    pub async fn abort(
        &self,
        applier: &Applier,
        upstream: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        // Another node's rollout: as the store has it now, not as last observed.
        let mine = self.entry(upstream).is_some_and(|e| !e.remote);
        if let (false, Some(store)) = (mine, applier.store().etcd()) {
            if let Some(fresh) = read(store, upstream).await {
                self.observe(fresh);
            }
        }
        let entry = self.entry(upstream).ok_or_else(|| {
            RolloutError::NotFound(format!(
                "no rollout of upstream {upstream:?} since Switchyard started"
            ))
        })?;
        let status = entry.get();
        if entry.remote && !status.state.is_over() {
            return Err(elsewhere(upstream, status));
        }
        match status.state {
            RolloutState::Succeeded | RolloutState::Unverified | RolloutState::Aborted => {
                return Err(RolloutError::Conflict {
                    message: format!(
                        "the rollout of {upstream:?} is over ({})",
                        serde_json::json!(status.state)
                    ),
                    current: Some(Box::new(status)),
                })
            }
            RolloutState::Failed => {
                // With a shared store, the record is rewritten under the driver's lease.
                let lease = match applier.store().etcd() {
                    None => None,
                    Some(store) => match Lease::take(store, upstream).await {
                        Ok(Some(lease)) => Some(lease),
                        Ok(None) => return Err(RolloutError::Conflict {
                            message: format!("another node holds the rollout lease of upstream {upstream:?}; try again"),
                            current: Some(Box::new(status)),
                        }),
                        Err(e) => return Err(RolloutError::Unavailable(format!(
                            "config store unreachable, the rollout's lease cannot be taken: {e}"
                        ))),
                    },
                };
                let detail = serde_json::json!({ "upstream": upstream, "after": "failed" });
                let reason = match restore(applier, upstream, &status.before, detail).await {
                    Ok(_) => "aborted after it failed: drains and weights are as before the rollout".to_string(),
                    Err(e) => format!("aborted after it failed, but putting the drains and weights back was refused: {e}"),
                };
                entry.update(|s| {
                    s.state = RolloutState::Aborted;
                    s.reason = Some(reason);
                });
                let status = entry.get();
                match lease {
                    Some(lease) => {
                        if !lease.publish(&status).await {
                            tracing::warn!(
                                upstream,
                                "the aborted rollout's record could not be written to the store"
                            );
                        }
                        lease.release().await;
                    }
                    None if applier.keeps_state() => kept(applier, &status),
                    None => {}
                }
                return Ok(status);
            }
            RolloutState::Running | RolloutState::Paused => {}
        }
        entry.abort.send_replace(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !entry.get().state.is_over() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(entry.get())
    }

    /// Continue a rollout paused between batches.
    pub fn resume(&self, upstream: &str) -> Result<RolloutStatus, RolloutError> {
        let entry = self.entry(upstream).ok_or_else(|| {
            RolloutError::NotFound(format!(
                "no rollout of upstream {upstream:?} since Switchyard started"
            ))
        })?;
        let status = entry.get();
        if entry.remote {
            return Err(elsewhere(upstream, status));
        }
        if status.state != RolloutState::Paused {
            return Err(RolloutError::Conflict {
                message: format!(
                    "the rollout of {upstream:?} is {}, not paused",
                    serde_json::json!(status.state)
                ),
                current: Some(Box::new(status)),
            });
        }
        // Running from now on, so that a follower never sees this pause again.
        entry.update(|s| {
            s.state = RolloutState::Running;
            s.reason = None;
        });
        entry.resume.notify_one();
        Ok(entry.get())
    }
}

/// Drive `entry`'s rollout in a task, from the step its status shows.
pub(super) fn spawn_driver(
    entry: Arc<Entry>,
    applier: Arc<Applier>,
    traffic: Arc<dyn TrafficStats>,
    replace: Resolved,
    claim: Option<Taken>,
) {
    let abort = entry.abort.subscribe();
    let driver = Driver {
        entry,
        applier,
        traffic,
        replace,
        abort,
        poll: POLL,
        _claim: claim,
    };
    tokio::spawn(driver.run());
}

/// Drive on, from the step in progress, a rollout whose driver stopped (`stopped` says how:
/// a node whose lease ran out, or a restart): that step's record is closed with `stopped`,
/// `line` is added to its takeovers, and it becomes this node's rollout of its upstream.
/// `follow` is given the entry to keep it (the store's publisher, or the state file's
/// keeper), before the driver starts.
pub(super) fn drive_on(
    rollouts: &Rollouts,
    applier: &Arc<Applier>,
    traffic: &Arc<dyn TrafficStats>,
    mut status: RolloutStatus,
    stopped: String,
    line: String,
    follow: impl FnOnce(Arc<Entry>),
) {
    let batch = status.current.unwrap_or(0);
    if let Some(open) = (status.batches.get_mut(batch))
        .and_then(|b| b.steps.last_mut())
        .filter(|r: &&mut StepRecord| r.ended_at.is_none())
    {
        open.ended_at = Some(OffsetDateTime::now_utc());
        open.note = Some(stopped);
    }
    status.takeovers.push(line);
    let upstream = status.upstream.clone();
    let replace = resolve(&applier.current().snapshot.config, &status.request.replace);
    let entry = Entry::new(status);
    rollouts.replace(&upstream, entry.clone());
    match replace {
        Ok(replace) => {
            follow(entry.clone());
            let claim = match rollouts.claims.take(&upstream, Kind::Rollout) {
                Ok(taken) => Some(taken),
                Err(held) => {
                    tracing::warn!(%upstream, "driving the rollout on while {} holds the upstream on this node", held.as_str());
                    None
                }
            };
            spawn_driver(entry, applier.clone(), traffic.clone(), replace, claim);
        }
        Err(why) => {
            entry.update(|s| {
                s.state = RolloutState::Failed;
                s.reason = Some(format!("cannot go on with the rollout: {why}"));
                s.finished_at = Some(OffsetDateTime::now_utc());
            });
            follow(entry);
        }
    }
}

/// Whether the store has a flip of `upstream` being verified (by a live verifier, or one
/// whose verifier died and is being taken over).
async fn flip_verifying_in(store: &crate::store::EtcdStore, upstream: &str) -> bool {
    ledger::read(store, upstream)
        .await
        .is_some_and(|r| r.status.state == FlipState::Verifying)
}

/// A rollout another node drives: abort or resume it there.
fn elsewhere(upstream: &str, status: RolloutStatus) -> RolloutError {
    let driver = status
        .driver
        .clone()
        .unwrap_or_else(|| "another node".into());
    RolloutError::Conflict {
        message: format!("the rollout of upstream {upstream:?} is driven by node {driver:?}: send this to that node"),
        current: Some(Box::new(status)),
    }
}
