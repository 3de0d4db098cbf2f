//! The flip verifier: a task that reads the new pool's traffic counters every poll interval
//! for the flip's window, and rolls the flip back as soon as the pool's error ratio breaches.
//! With a shared store it holds the fleet's verifier lease for the upstream and publishes
//! its progress, so another node can finish the window if this one dies
//! ([`super::ledger`], [`super::takeover`]).
//!
//! The judgement itself ([`judge`]) is a pure function of the counts seen since the flip
//! and the [`Verify`] settings, so it is tested without clocks or traffic.

use std::sync::Arc;

use switchyard_config::edit::{set_pool_weights, EditError};
use tokio::time::Instant;

use super::flips::{finish, Claim, FlipState, FlipStatus, Flips};
use super::ledger::{Shared, PUBLISH_EVERY};
use super::request::Verify;
use crate::applier::{Applier, ApplyOutcome, EditRequest};
use crate::history::{Actor, Origin};
use crate::plane::{PoolCounts, TrafficStats};

/// The actor named in the history and audit log for automatic rollbacks.
pub const VERIFIER: &str = "flip-verifier";

/// What the counts say so far.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Keep watching.
    Continue,
    /// Roll back, for this reason.
    Breach(String),
    /// The window is over; enough traffic and no breach.
    Verified(String),
    /// The window is over with too little traffic to tell.
    Unverified(String),
}

/// Judge the counts `seen` since the flip to `pool`. A breach needs `min_requests`
/// requests and an error ratio strictly above `max_error_ratio`.
pub(super) fn judge(seen: PoolCounts, verify: &Verify, pool: &str, window_over: bool) -> Verdict {
    let PoolCounts { requests, errors } = seen;
    let enough = requests >= verify.min_requests && requests > 0;
    let ratio = if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    };
    if enough && ratio > verify.max_error_ratio {
        return Verdict::Breach(format!(
            "{pool} error ratio {ratio:.2} ({errors}/{requests}) > {}",
            verify.max_error_ratio
        ));
    }
    let window = humantime::format_duration(verify.window);
    match (window_over, enough) {
        (false, _) => Verdict::Continue,
        (true, true) => Verdict::Verified(format!(
            "{pool} error ratio {ratio:.4} ({errors}/{requests}) <= {} over {window}",
            verify.max_error_ratio
        )),
        (true, false) => Verdict::Unverified(format!(
            "only {requests} request(s) to {pool} in {window} (need {}): weights kept, not verified",
            verify.min_requests
        )),
    }
}

/// Counts since a baseline, robust to the counters being reset (a rebuilt plane starts
/// from zero): a value below the last one read counts from zero.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    last: PoolCounts,
    pub total: PoolCounts,
}

impl Seen {
    pub fn new(baseline: PoolCounts) -> Self {
        Seen {
            last: baseline,
            total: PoolCounts::default(),
        }
    }

    /// Counts resumed by another verifier: `total` seen so far, the counters now at `last`.
    pub fn resume(last: PoolCounts, total: PoolCounts) -> Self {
        Seen { last, total }
    }

    pub fn update(&mut self, now: PoolCounts) {
        let delta = |now: u64, last: u64| now.checked_sub(last).unwrap_or(now);
        self.total.requests += delta(now.requests, self.last.requests);
        self.total.errors += delta(now.errors, self.last.errors);
        self.last = now;
    }
}

/// One flip being verified. Owns the upstream's [`Claim`] until it ends; with a shared
/// store, also the fleet's verifier lease ([`Shared`]), and publishes its progress there.
pub(super) struct Verifier {
    pub flips: Flips,
    pub applier: Arc<Applier>,
    pub traffic: Arc<dyn TrafficStats>,
    /// The flip as applied.
    pub status: FlipStatus,
    pub baseline: PoolCounts,
    /// A verification taken over from a verifier that died: when the window ends, and the
    /// counts seen so far.
    pub resume: Option<(Instant, Seen)>,
    pub shared: Option<Shared>,
    pub _claim: Claim,
}

impl Verifier {
    pub async fn run(mut self) {
        let (upstream, pool) = (self.status.upstream.clone(), self.status.to.clone());
        let (deadline, mut seen) = self.resume.take().unwrap_or_else(|| {
            (
                Instant::now() + self.status.verify.window,
                Seen::new(self.baseline),
            )
        });
        let mut published = Instant::now();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(self.flips.poll().min(left)).await;
            let Some(counts) = self.traffic.pool_counts(&upstream, &pool) else {
                let reason = format!(
                    "pool {pool:?} of upstream {upstream:?} no longer has traffic counters (removed from the config?)"
                );
                tracing::warn!(%upstream, %pool, "flip verification stopped: {reason}");
                return self.end(FlipState::Failed, reason, None).await;
            };
            seen.update(counts);
            let version = self.status.flip_version;
            self.flips.update(&upstream, version, |s| {
                (s.requests, s.errors) = (seen.total.requests, seen.total.errors);
            });
            if published.elapsed() >= PUBLISH_EVERY {
                if !self.publish().await {
                    tracing::warn!(%upstream, %pool, "this node lost the flip's verifier lease; another node finishes the verification");
                    return;
                }
                published = Instant::now();
            }
            let window_over = Instant::now() >= deadline;
            match judge(seen.total, &self.status.verify, &pool, window_over) {
                Verdict::Continue => {}
                Verdict::Breach(reason) => {
                    if self.shared.as_ref().is_some_and(|s| !s.valid()) {
                        tracing::warn!(%upstream, "breach seen, but the verifier lease may have run out: not rolling back; another node finishes the verification");
                        return;
                    }
                    return self.roll_back(reason).await;
                }
                Verdict::Verified(reason) => {
                    tracing::info!(%upstream, %pool, "flip verified: {reason}");
                    return self.end(FlipState::Verified, reason, None).await;
                }
                Verdict::Unverified(reason) => {
                    tracing::warn!(%upstream, %pool, "flip not verified: {reason}");
                    return self.end(FlipState::Unverified, reason, None).await;
                }
            }
        }
    }

    /// Write this node's view of the flip to the store (with a shared store). `false` when
    /// the lease is lost.
    async fn publish(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let version = self.status.flip_version;
        match self.flips.latest(&self.status.upstream) {
            Some(s) if s.flip_version == version => shared.publish(&s).await,
            _ => true,
        }
    }

    /// Put the weights from before the flip back (for the pools that still exist), as a new
    /// version from [`Origin::Rollback`] by [`VERIFIER`].
    async fn roll_back(self, reason: String) {
        let upstream = self.status.upstream.as_str();
        tracing::warn!(upstream, pool = %self.status.to, "flip breached, rolling back: {reason}");
        let previous = &self.status.previous_weights;
        let req = EditRequest {
            action: "upstream.flip.rollback",
            actor: Actor::system(VERIFIER),
            origin: Origin::Rollback,
            expect_version: None,
            detail: Some(serde_json::json!({
                "upstream": upstream,
                "reason": reason,
                "flip_version": self.status.flip_version,
                "weights": previous,
            })),
        };
        let result = self
            .applier
            .apply_edit(req, |s| {
                let Some(up) = s.config.http.upstreams.get(upstream) else {
                    return Err(EditError::UnknownUpstream {
                        upstream: upstream.to_string(),
                    });
                };
                let list: Vec<(String, u32)> = previous
                    .iter()
                    .filter(|(p, _)| up.pools.contains_key(*p))
                    .map(|(p, w)| (p.clone(), *w))
                    .collect();
                set_pool_weights(&s.source, upstream, &list)
            })
            .await;
        match result {
            Ok(ApplyOutcome::Applied { after, .. }) => {
                metrics::counter!("switchyard_http_flip_rollbacks_total", "upstream" => upstream.to_string())
                    .increment(1);
                let version = after.snapshot.version;
                self.end(FlipState::RolledBack, reason, Some(version)).await;
            }
            Ok(_) => {
                let reason = format!("{reason} (the previous weights were already in place)");
                self.end(FlipState::RolledBack, reason, None).await;
            }
            Err(e) => {
                tracing::error!(upstream, "flip rollback refused: {e}");
                self.end(
                    FlipState::Failed,
                    format!("{reason}; rollback refused: {e}"),
                    None,
                )
                .await;
            }
        }
    }

    /// Record the outcome (here, and with a shared store for the fleet), and give the
    /// verifier lease back.
    async fn end(mut self, state: FlipState, reason: String, rollback_version: Option<u64>) {
        let version = self.status.flip_version;
        self.flips.update(&self.status.upstream, version, |s| {
            s.rollback_version = rollback_version;
            finish(s, state, reason);
        });
        if !self.publish().await {
            tracing::warn!(upstream = %self.status.upstream, "the flip's outcome could not be recorded in the store (the verifier lease was lost)");
        }
        if let Some(shared) = self.shared.take() {
            shared.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_needs_min_requests_and_a_ratio_strictly_above_the_limit() {
        let v = Verify::default();
        let counts = |requests, errors| PoolCounts { requests, errors };
        assert_eq!(judge(counts(19, 19), &v, "green", false), Verdict::Continue);
        assert!(matches!(
            judge(counts(20, 1), &v, "green", false),
            Verdict::Breach(_)
        ));
        let exact = Verify {
            max_error_ratio: 0.05,
            ..v
        };
        assert_eq!(
            judge(counts(20, 1), &exact, "green", false),
            Verdict::Continue
        );
        assert!(matches!(
            judge(counts(20, 0), &v, "green", true),
            Verdict::Verified(_)
        ));
        assert!(matches!(
            judge(counts(3, 0), &v, "green", true),
            Verdict::Unverified(_)
        ));
        let lenient = Verify {
            max_error_ratio: 1.0,
            ..v
        };
        assert!(matches!(
            judge(counts(20, 20), &lenient, "green", true),
            Verdict::Verified(_)
        ));
    }

    #[test]
    fn seen_counts_deltas_across_a_counter_reset() {
        let mut seen = Seen::new(PoolCounts {
            requests: 100,
            errors: 10,
        });
        seen.update(PoolCounts {
            requests: 110,
            errors: 12,
        });
        seen.update(PoolCounts {
            requests: 4,
            errors: 1,
        }); // the plane was rebuilt
        assert_eq!(
            seen.total,
            PoolCounts {
                requests: 14,
                errors: 3
            }
        );
    }
}
