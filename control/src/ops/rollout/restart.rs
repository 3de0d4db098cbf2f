//! A restart on a file store: the rollouts that [`super::kept`] wrote into the state file
//! are read back when Switchyard starts. A finished one is shown by `GET` (a failed one can
//! still be aborted); an unfinished one is driven on from the step in progress through
//! [`super::start::drive_on`], as a takeover on etcd is, once its backends have had their
//! first health check.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::kept::keep;
use super::start::drive_on;
use super::status::{Entry, RolloutStatus, Rollouts};
use crate::applier::Applier;
use crate::plane::TrafficStats;

/// How long a resumed rollout waits at most for the first health check of its upstream's
/// backends, so that its first step does not count them down for want of a check.
const FIRST_CHECKS: Duration = Duration::from_secs(10);

/// Take in the rollouts the state file kept: show the finished ones, drive on the others.
pub async fn resume_kept(
    rollouts: Rollouts,
    applier: Arc<Applier>,
    traffic: Arc<dyn TrafficStats>,
) {
    for value in applier.kept_rollouts() {
        let status: RolloutStatus = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a rollout kept in the state file is not readable; it is dropped");
                continue;
            }
        };
        let upstream = status.upstream.clone();
        if status.state.is_over() {
            rollouts.replace(&upstream, Entry::new(status));
            continue;
        }
        wait_first_checks(&applier, &*traffic, &upstream).await;
        let batch = status.current.unwrap_or(0);
        let step = status.batches.get(batch).map(|b| b.step);
        let step = serde_json::to_value(step).unwrap_or_default();
        tracing::warn!(%upstream, batch = batch + 1, %step, "a rollout was going on when Switchyard stopped; it goes on from that step");
        let line = format!(
            "Switchyard restarted at batch {} ({step}); the rollout went on from that step",
            batch + 1
        );
        let stopped = "Switchyard stopped during this step".to_string();
        let keeper = applier.clone();
        drive_on(
            &rollouts,
            &applier,
            &traffic,
            status,
            stopped,
            line,
            |entry| {
                tokio::spawn(keep(entry, keeper));
            },
        );
    }
}

/// Wait (at most [`FIRST_CHECKS`]) until every backend of `upstream` has had an active
/// health check since this process started.
async fn wait_first_checks(applier: &Applier, traffic: &dyn TrafficStats, upstream: &str) {
    let deadline = Instant::now() + FIRST_CHECKS;
    loop {
        let current = applier.current();
        let unchecked = (current.snapshot.config.http.upstreams.get(upstream))
            .into_iter()
            .flat_map(|u| u.pools.values())
            .flat_map(|p| p.backends.iter())
            .any(|b| {
                traffic
                    .backend(&b.addr.to_string())
                    .is_none_or(|v| v.last_check.is_none())
            });
        if !unchecked || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
