//! Finishing the rollouts of nodes that died (shared store only), as flips are finished
//! ([`crate::ops::takeover`]): every node reads the fleet's rollout records every
//! [`TAKEOVER_EVERY`], shows them in `GET /v1/upstreams/{name}/rollout`, and when a record
//! says `running` or `paused` but its driver's lease key is gone (etcd dropped it one TTL
//! after the driver's last renewal), the node takes the lease and drives the rollout on
//! from the step the record shows: that step runs again (a drain and a replace again, a
//! wait for readiness or a verification from its start).
//!
//! The same loop picks up a rollout after a restart of the whole fleet: the record is in
//! etcd, the lease is not.

use std::sync::Arc;

use super::shared::{driver_key, publish, read, records_prefix, Lease};
use super::start::drive_on;
use super::status::{RolloutStatus, Rollouts};
use crate::applier::Applier;
use crate::ops::takeover::TAKEOVER_EVERY;
use crate::plane::TrafficStats;
use crate::store::EtcdStore;

/// Read the rollout records every [`TAKEOVER_EVERY`] until the process ends: show them, and
/// drive on every rollout whose driver is gone.
pub async fn takeover(
    rollouts: Rollouts,
    applier: Arc<Applier>,
    traffic: Arc<dyn TrafficStats>,
    store: Arc<EtcdStore>,
) {
    loop {
        tokio::time::sleep(TAKEOVER_EVERY).await;
        let Ok(records) = store
            .json_under::<RolloutStatus>(records_prefix(&store), "reading the rollouts")
            .await
        else {
            continue;
        };
        for r in records {
            let upstream = r.upstream.clone();
            let going = !r.state.is_over();
            if rollouts.driving(&upstream) {
                continue;
            }
            rollouts.observe(r);
            if !going
                || store
                    .exists(&driver_key(&store, &upstream))
                    .await
                    .unwrap_or(true)
            {
                continue;
            }
            take_over(&rollouts, &applier, &traffic, &store, &upstream).await;
        }
    }
}

/// Take the rollout of `upstream` over, if it is still orphaned.
async fn take_over(
    rollouts: &Rollouts,
    applier: &Arc<Applier>,
    traffic: &Arc<dyn TrafficStats>,
    store: &Arc<EtcdStore>,
    upstream: &str,
) {
    let Ok(Some(lease)) = Lease::take(store, upstream).await else {
        return;
    };
    // Read again under the lease: the driver may have finished in between.
    let Some(mut status) = read(store, upstream).await.filter(|r| !r.state.is_over()) else {
        return lease.release().await;
    };
    let dead = status.driver.clone().unwrap_or_else(|| "?".into());
    let node = store.node().to_string();
    let batch = status.current.unwrap_or(0);
    let step = status.batches.get(batch).map(|b| b.step);
    let step = serde_json::to_value(step).unwrap_or_default();
    tracing::warn!(upstream, %dead, batch = batch + 1, %step, "the rollout's driver is gone; this node drives it on");
    metrics::counter!("switchyard_http_rollout_takeovers_total", "upstream" => upstream.to_string())
        .increment(1);
    status.driver = Some(node.clone());
    let line = format!(
        "node {dead:?} stopped renewing its lease at batch {} ({step}); node {node:?} went on from that step",
        batch + 1
    );
    let stopped = format!("node {dead:?} stopped driving (its lease ran out)");
    drive_on(rollouts, applier, traffic, status, stopped, line, |entry| {
        tokio::spawn(publish(entry, lease));
    });
}
