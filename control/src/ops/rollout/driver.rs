//! The task that drives a rollout, batch by batch: drain → replace → wait ready → slow start →
//! verify on live traffic → next batch. A failing batch stops the rollout and stays drained; an
//! abort puts the drains and weights from before the rollout back.
//!
//! Every wait polls the HTTP plane's view of the batch's backends ([`TrafficStats::backend`])
//! and the abort flag; slow start and the verification (the flip's judgement over the
//! batch's own counters, so a batch answering 5% errors is caught even when retries hide
//! them from the clients, and its p99 against the others') are in [`super::gate`].

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use super::edits::{batch_states, restore, set_states};
use super::replace::{call_webhook, run_command, Batch};
use super::request::Replace;
use super::status::{Entry, RolloutState, Step, StepRecord};
use crate::applier::Applier;
use crate::plane::{PoolCounts, TrafficStats};
use crate::store::drain::wait_drained;
use switchyard_config::{Config, RolloutCommand, RolloutWebhook};

/// The replace method, looked up in the config when the rollout starts.
pub(super) enum Resolved {
    Command(String, RolloutCommand),
    Webhook(String, RolloutWebhook),
    External,
}

/// Look the replace method of a request up in the running config.
pub(super) fn resolve(config: &Config, replace: &Replace) -> Result<Resolved, String> {
    match replace {
        Replace::Command(n) => match config.rollout.commands.get(n) {
            Some(c) => Ok(Resolved::Command(n.clone(), c.clone())),
            None => Err(format!(
                "no [rollout.commands.{n}] in the running config (it has {:?})",
                config.rollout.commands.keys().collect::<Vec<_>>()
            )),
        },
        Replace::Webhook(n) => match config.rollout.webhooks.get(n) {
            Some(w) => Ok(Resolved::Webhook(n.clone(), w.clone())),
            None => Err(format!(
                "no [rollout.webhooks.{n}] in the running config (it has {:?})",
                config.rollout.webhooks.keys().collect::<Vec<_>>()
            )),
        },
        Replace::External => Ok(Resolved::External),
    }
}

/// Why a batch did not finish.
pub(super) enum Stop {
    /// The batch failed and stays out of rotation.
    Failed(String),
    /// The batch was not started (it would leave too few backends): nothing to undo.
    Refused(String),
    Aborted,
    /// This node lost the rollout's lease: another node drives it now; touch nothing.
    Lost,
}

pub(super) struct Driver {
    pub entry: Arc<Entry>,
    pub applier: Arc<Applier>,
    pub traffic: Arc<dyn TrafficStats>,
    pub replace: Resolved,
    pub abort: watch::Receiver<bool>,
    pub poll: Duration,
}

impl Driver {
    pub async fn run(mut self) {
        let status = self.entry.get();
        let (upstream, n) = (status.upstream.clone(), status.batches.len());
        // Where to begin: batch 1, or, for a rollout taken over, the step in progress.
        let first = status.current.unwrap_or(0).min(n.saturating_sub(1));
        let resumed = status.batches.get(first).map_or(Step::Pending, |b| b.step);
        for i in first..n {
            let from = if i == first { resumed } else { Step::Pending };
            self.entry.update(|s| s.current = Some(i));
            let done = match from {
                Step::Done => Ok(()),
                _ => self.batch(i, from).await,
            };
            // A batch done before a takeover was already resumed unless still paused.
            let pause = i != first || from != Step::Done || status.state == RolloutState::Paused;
            let stop = match done {
                Ok(()) => {
                    if status.request.pause_between_batches
                        && i + 1 < n
                        && pause
                        && !self.pause(i).await
                    {
                        Some(Stop::Aborted)
                    } else {
                        None
                    }
                }
                Err(stop) => Some(stop),
            };
            match stop {
                None => {}
                Some(Stop::Aborted) => return self.aborted(i).await,
                Some(Stop::Failed(reason)) => return self.failed(i, reason, true).await,
                Some(Stop::Refused(reason)) => return self.failed(i, reason, false).await,
                Some(Stop::Lost) => {
                    tracing::warn!(%upstream, batch = i + 1, "rollout left to the node that took its lease");
                    return;
                }
            }
        }
        let unverified: Vec<String> = (self.entry.get().batches.iter())
            .filter(|b| b.step == Step::Unverified)
            .map(|b| b.index.to_string())
            .collect();
        if !unverified.is_empty() {
            tracing::warn!(%upstream, batches = n, "rollout done, not every batch verified");
            return self.finish(
                RolloutState::Unverified,
                format!(
                    "{n} batch(es) replaced; batch(es) {} had too little traffic to be verified",
                    unverified.join(", ")
                ),
            );
        }
        tracing::info!(%upstream, batches = n, "rollout succeeded");
        self.finish(
            RolloutState::Succeeded,
            format!("{n} batch(es) replaced and verified"),
        );
    }

    /// One batch through its steps, from `from` (a rollout taken over re-runs the step in
    /// progress: a drain and a replace are run again, a wait for readiness or a verification
    /// starts over).
    async fn batch(&mut self, i: usize, from: Step) -> Result<(), Stop> {
        let s = self.entry.get();
        let upstream = s.upstream.as_str();
        let backends = s.batches[i].backends.clone();
        self.check_abort()?;
        let detail = serde_json::json!({ "upstream": upstream, "batch": i + 1, "backends": backends, "started_by": s.actor });
        let replaced_at = match from <= Step::Replacing {
            true => self.drain_and_replace(i, &backends, &detail).await?,
            false => std::time::Instant::now(),
        };
        if from <= Step::WaitingReady {
            self.ready(i, &backends, replaced_at).await?;
        }
        self.verify(i, &backends, detail).await
    }

    /// Drain batch `i`, wait for its requests in flight, and have it replaced; when the
    /// replace ended.
    async fn drain_and_replace(
        &mut self,
        i: usize,
        backends: &[String],
        detail: &serde_json::Value,
    ) -> Result<std::time::Instant, Stop> {
        let s = self.entry.get();
        let (upstream, req) = (s.upstream.as_str(), &s.request);
        // Would taking this batch out leave too few healthy backends?
        let serving = self.healthy_enabled(upstream, backends);
        if serving < req.min_available {
            return Err(Stop::Refused(format!(
                "batch {}: taking it out would leave {serving} healthy backend(s) in rotation, fewer than min_available = {}",
                i + 1,
                req.min_available
            )));
        }

        self.step(i, Step::Draining);
        let drain = batch_states(backends, true);
        set_states(
            &self.applier,
            "upstream.rollout.drain",
            upstream,
            &drain,
            None,
            detail.clone(),
        )
        .await
        .map_err(|e| Stop::Failed(format!("drain refused: {e}")))?;
        let started = Instant::now();
        let deadline = started + req.drain_timeout;
        let left = loop {
            let in_flight: u64 = backends
                .iter()
                .filter_map(|a| self.traffic.backend(a))
                .map(|v| v.in_flight)
                .sum();
            if in_flight == 0 || Instant::now() >= deadline {
                break in_flight;
            }
            self.sleep().await?;
        };
        // With a shared store, every node must run the drain and have nothing in flight.
        let mut waiting_on = Vec::new();
        if let Some(store) = self.applier.store().etcd().cloned() {
            let version = self.applier.current().snapshot.version;
            for addr in backends {
                let wait = deadline.saturating_duration_since(Instant::now());
                let d =
                    wait_drained(&self.applier, Some(&store), version, upstream, addr, wait).await;
                for n in d["waiting_on"].as_array().into_iter().flatten() {
                    waiting_on.push(n.as_str().unwrap_or("?").to_string());
                }
            }
            self.check_abort()?;
        }
        let waited = humantime::format_duration(round(started.elapsed()));
        self.note(
            i,
            match (left, waiting_on.is_empty()) {
                (0, true) => format!("no request in flight after {waited}"),
                (0, false) => format!(
                    "drain_timeout reached with requests still in flight on node(s) {}; going on",
                    waiting_on.join(", ")
                ),
                (n, _) => {
                    format!("drain_timeout reached with {n} request(s) still in flight; going on")
                }
            },
        );

        self.step(i, Step::Replacing);
        let batch = Batch {
            upstream,
            number: i + 1,
            backends,
            version: req.version.as_deref(),
        };
        let replaced = match &self.replace {
            Resolved::Command(name, cmd) => run_command(cmd, &batch, &self.abort)
                .await
                .map_err(|e| format!("command {name:?}: {e}")),
            Resolved::Webhook(name, hook) => call_webhook(hook, &batch)
                .await
                .map_err(|e| format!("webhook {name:?}: {e}")),
            Resolved::External => Ok("replaced by an external tool".to_string()),
        };
        self.check_abort()?;
        let replaced_at = std::time::Instant::now();
        match replaced {
            Ok(output) => {
                self.entry
                    .update(|s| s.batches[i].replace_output = Some(output));
                self.note(
                    i,
                    format!(
                        "replaced in {}",
                        humantime::format_duration(round(started.elapsed()))
                    ),
                );
            }
            Err(why) => {
                self.entry
                    .update(|s| s.batches[i].replace_output = Some(why.clone()));
                return Err(Stop::Failed(format!("replace failed: {why}")));
            }
        }
        Ok(replaced_at)
    }

    /// Wait until every backend of batch `i` passes a health check that began after
    /// `replaced_at` (with the new version, when one is expected).
    async fn ready(
        &mut self,
        i: usize,
        backends: &[String],
        replaced_at: std::time::Instant,
    ) -> Result<(), Stop> {
        let req = self.entry.get().request;
        self.step(i, Step::WaitingReady);
        let started = Instant::now();
        let deadline = started + req.ready_timeout;
        loop {
            let waiting: Vec<String> = backends
                .iter()
                .filter_map(|a| self.not_ready(a, replaced_at, req.version.as_deref()))
                .collect();
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Stop::Failed(format!(
                    "not ready after ready_timeout = {}: {}",
                    humantime::format_duration(req.ready_timeout),
                    waiting.join("; ")
                )));
            }
            self.sleep().await?;
        }
        let seen = req
            .version
            .as_deref()
            .map(|v| format!(", version {v:?}"))
            .unwrap_or_default();
        self.note(
            i,
            format!(
                "health checks pass{seen} after {}",
                humantime::format_duration(round(started.elapsed()))
            ),
        );
        Ok(())
    }

    /// Put batch `i` back in rotation, then slow start and verify it ([`super::gate`]).
    async fn verify(
        &mut self,
        i: usize,
        backends: &[String],
        detail: serde_json::Value,
    ) -> Result<(), Stop> {
        let s = self.entry.get();
        let upstream = s.upstream.as_str();
        let enable = batch_states(backends, false);
        set_states(
            &self.applier,
            "upstream.rollout.enable",
            upstream,
            &enable,
            None,
            detail,
        )
        .await
        .map_err(|e| {
            Stop::Failed(format!(
                "putting the batch back in rotation was refused: {e}"
            ))
        })?;
        self.ramp_and_verify(i).await
    }

    /// Why `addr` is not ready yet (`None` once it is): a passing active check that ended
    /// after the replace, with the new version when one is expected.
    fn not_ready(
        &self,
        addr: &str,
        after: std::time::Instant,
        version: Option<&str>,
    ) -> Option<String> {
        let Some(view) = self.traffic.backend(addr) else {
            return Some(format!("{addr}: not checked yet"));
        };
        match view.last_check {
            Some((at, true, seen)) if at > after && view.healthy => match (version, seen) {
                (None, _) => None,
                (Some(v), Some(s)) if s == v => None,
                (Some(v), seen) => Some(format!("{addr}: reports version {seen:?}, not {v:?}")),
            },
            Some((at, false, _)) if at > after => Some(format!("{addr}: health check fails")),
            Some(_) if !view.healthy => Some(format!("{addr}: health check says down")),
            _ => Some(format!("{addr}: no health check since it was replaced")),
        }
    }

    /// Backends of the upstream in rotation and not down, outside `batch`.
    fn healthy_enabled(&self, upstream: &str, batch: &[String]) -> usize {
        let current = self.applier.current();
        let Some(up) = current.snapshot.config.http.upstreams.get(upstream) else {
            return 0;
        };
        up.pools
            .values()
            .filter(|p| p.weight > 0)
            .flat_map(|p| p.backends.iter())
            .filter(|b| b.state == switchyard_config::BackendState::Enabled)
            .map(|b| b.addr.to_string())
            .filter(|a| !batch.contains(a))
            .filter(|a| self.traffic.backend(a).is_some_and(|v| v.healthy))
            .count()
    }

    pub(super) fn counts(&self, backends: &[String]) -> PoolCounts {
        backends
            .iter()
            .filter_map(|a| self.traffic.backend(a))
            .fold(PoolCounts::default(), |t, v| PoolCounts {
                requests: t.requests + v.counts.requests,
                errors: t.errors + v.counts.errors,
            })
    }

    /// Wait for `resume` after batch `i`; `false` when aborted instead.
    async fn pause(&mut self, i: usize) -> bool {
        self.entry.update(|s| {
            s.state = RolloutState::Paused;
            s.reason = Some(format!(
                "batch {} verified; waiting for POST …/rollout/resume",
                i + 1
            ));
        });
        let entry = self.entry.clone();
        let resumed = tokio::select! {
            _ = entry.resume.notified() => true,
            _ = self.abort.wait_for(|a| *a) => false,
        };
        self.entry.update(|s| {
            s.state = RolloutState::Running;
            s.reason = None;
        });
        resumed
    }

    pub(super) fn check_abort(&self) -> Result<(), Stop> {
        if *self.entry.lost.borrow() {
            return Err(Stop::Lost);
        }
        if *self.abort.borrow() {
            return Err(Stop::Aborted);
        }
        Ok(())
    }

    pub(super) async fn sleep(&mut self) -> Result<(), Stop> {
        let poll = self.poll;
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = self.abort.wait_for(|a| *a) => {}
        }
        self.check_abort()
    }

    pub(super) fn step(&self, i: usize, step: Step) {
        self.entry.update(|s| {
            let b = &mut s.batches[i];
            b.step = step;
            b.steps.push(StepRecord {
                step,
                started_at: OffsetDateTime::now_utc(),
                ended_at: None,
                note: None,
            });
        });
    }

    pub(super) fn note(&self, i: usize, note: String) {
        self.entry.update(|s| {
            if let Some(r) = s.batches[i].steps.last_mut() {
                r.ended_at = Some(OffsetDateTime::now_utc());
                r.note = Some(note);
            }
        });
    }

    /// Batch `i` failed: keep it out of rotation (when it was taken out) and stop.
    async fn failed(self, i: usize, reason: String, drain: bool) {
        let s = self.entry.get();
        tracing::warn!(upstream = %s.upstream, batch = i + 1, "rollout stopped: {reason}");
        let mut reason = reason;
        if drain {
            let backends = &s.batches[i].backends;
            let detail = serde_json::json!({ "upstream": s.upstream, "batch": i + 1, "backends": backends, "reason": reason });
            if let Err(e) = set_states(
                &self.applier,
                "upstream.rollout.fail",
                &s.upstream,
                &batch_states(backends, true),
                None,
                detail,
            )
            .await
            {
                reason = format!("{reason}; taking the batch out of rotation was refused: {e}");
            }
        }
        self.note(i, reason.clone());
        self.entry.update(|s| {
            s.batches[i].step = Step::Failed;
            s.batches[i].reason = Some(reason.clone());
            s.failed_batch = Some(i);
        });
        self.finish(
            RolloutState::Failed,
            format!("batch {} failed: {reason}", i + 1),
        );
    }

    /// Aborted during batch `i`: drains and weights as before the rollout.
    async fn aborted(self, i: usize) {
        let s = self.entry.get();
        let detail =
            serde_json::json!({ "upstream": s.upstream, "batch": i + 1, "started_by": s.actor });
        let reason = match restore(&self.applier, &s.upstream, &s.before, detail).await {
            Ok(_) => "aborted: drains and weights are as before the rollout".to_string(),
            Err(e) => format!("aborted, but putting the drains and weights back was refused: {e}"),
        };
        self.note(i, reason.clone());
        self.entry.update(|s| s.batches[i].step = Step::Aborted);
        self.finish(RolloutState::Aborted, reason);
    }

    fn finish(&self, state: RolloutState, reason: String) {
        self.entry.update(|s| {
            s.state = state;
            s.reason = Some(reason);
            s.finished_at = Some(OffsetDateTime::now_utc());
        });
    }
}

/// A duration to the millisecond, for notes.
pub(super) fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
