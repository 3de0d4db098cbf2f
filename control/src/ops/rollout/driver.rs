//! The task that drives a rollout, batch by batch: drain → replace → wait ready → slow start →
//! verify on live traffic → next batch. A failing batch stops the rollout and stays drained; an
//! abort puts the drains and weights from before the rollout back.
//!
//! Every wait polls the HTTP plane's view of the batch's backends ([`TrafficStats::backend`])
//! and the abort flag. The drain, the replace and the wait for readiness are in
//! [`super::steps`]; slow start and the verification (the flip's judgement over the
//! batch's own counters, so a batch answering 5% errors is caught even when retries hide
//! them from the clients, and its p99 against the others') are in [`super::gate`].

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::edits::{batch_states, restore, set_states};
use super::request::Replace;
use super::status::{Entry, RolloutState, Step, StepRecord};
use crate::applier::Applier;
use crate::plane::TrafficStats;
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
    /// The upstream's claim on this node, held until the rollout is over.
    pub _claim: Option<crate::ops::claim::Taken>,
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
