//! Finishing the flips of nodes that died (shared store only): every node reads the fleet's
//! flip records every [`TAKEOVER_EVERY`]. It shows them in `GET /v1/upstreams/{name}/flip`,
//! and when a record says `verifying` but its verifier's lease key is gone (etcd dropped it
//! one TTL after the verifier's last renewal), the node takes the lease and finishes the
//! verification: the rest of the window, from the counts the dead verifier published last,
//! on the whole fleet's counters. Its commit or rollback is a change of the shared document,
//! so it applies everywhere.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::flips::{Claim, FlipState, Flips};
use super::ledger::{read, verifier_key, FlipRecord, Shared};
use super::verify::{Seen, Verifier};
use crate::applier::Applier;
use crate::plane::{PoolCounts, TrafficStats};
use crate::store::EtcdStore;

/// How often every node reads the flip records (shown, and taken over when orphaned).
pub const TAKEOVER_EVERY: Duration = Duration::from_millis(500);

/// Read the flip records every [`TAKEOVER_EVERY`] until the process ends: show them, and
/// finish every verification whose verifier is gone.
pub async fn takeover(
    flips: Flips,
    applier: Arc<Applier>,
    traffic: Arc<dyn TrafficStats>,
    store: Arc<EtcdStore>,
) {
    let prefix = format!("{}/flips/", store.settings().prefix);
    loop {
        tokio::time::sleep(TAKEOVER_EVERY).await;
        let Ok(records) = store
            .json_under::<FlipRecord>(prefix.clone(), "reading the flips")
            .await
        else {
            continue;
        };
        for r in records {
            let upstream = r.status.upstream.clone();
            let verifying = r.status.state == FlipState::Verifying;
            flips.observe(r.status);
            if !verifying || flips.verifying(&upstream) {
                continue;
            }
            if store
                .exists(&verifier_key(&store, &upstream))
                .await
                .unwrap_or(true)
            {
                continue;
            }
            take_over(&flips, &applier, &traffic, &store, &upstream).await;
        }
    }
}

/// Take the verification of `upstream`'s flip over, if it is still orphaned.
async fn take_over(
    flips: &Flips,
    applier: &Arc<Applier>,
    traffic: &Arc<dyn TrafficStats>,
    store: &Arc<EtcdStore>,
    upstream: &str,
) {
    let Ok(claim) = Claim::take(flips, upstream) else {
        return;
    };
    let Ok(Some(mut shared)) = Shared::take(store, upstream).await else {
        return claim.give_back();
    };
    // Read again under the lease: the verifier may have finished in between.
    let record = read(store, upstream)
        .await
        .filter(|r| r.status.state == FlipState::Verifying);
    let now = record
        .as_ref()
        .and_then(|r| traffic.pool_counts(upstream, &r.status.to));
    let (Some(record), Some(now)) = (record, now) else {
        shared.release().await;
        return claim.give_back();
    };
    let mut status = record.status;
    status.verifier = Some(store.node().to_string());
    tracing::warn!(upstream, pool = %status.to, dead = %record.verifier, version = status.flip_version,
        "the flip's verifier is gone; this node finishes the verification");
    metrics::counter!("switchyard_http_flip_takeovers_total", "upstream" => upstream.to_string())
        .increment(1);
    let end = status.started_at + status.verify.window;
    let left = (end - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    let left = Duration::try_from(left).unwrap_or_default();
    let seen = Seen::resume(
        now,
        PoolCounts {
            requests: status.requests,
            errors: status.errors,
        },
    );
    shared.set_baseline(record.baseline);
    flips.record(status.clone());
    let verifier = Verifier {
        flips: flips.clone(),
        applier: applier.clone(),
        traffic: traffic.clone(),
        baseline: record.baseline,
        resume: Some((Instant::now() + left, seen)),
        shared: Some(shared),
        status,
        _claim: claim,
    };
    tokio::spawn(verifier.run());
}
