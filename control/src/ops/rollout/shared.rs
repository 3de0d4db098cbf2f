//! Rollouts on a shared store (etcd), the store's side: the driver's lease and the rollout's
//! record, the same way a flip keeps its verifier's ([`crate::ops`]'s ledger).
//!
//! - The driver holds `<prefix>/rollout-drivers/<upstream>` under an etcd lease
//!   ([`crate::store::hold`]): taken before the rollout starts, so one node drives a rollout
//!   of an upstream for the whole fleet, and given back when the rollout ends.
//! - The rollout's state lives in `<prefix>/rollouts/<upstream>`: the whole
//!   [`RolloutStatus`] (the request, the batches and the step each is in, the drains and
//!   weights from before), written by the holder only (fenced on the lease key) at every
//!   change ([`publish`]). Every node reads the records ([`super::takeover`]): `GET` shows
//!   them anywhere, and a rollout whose driver's lease is gone is taken over.

use std::sync::Arc;
use std::time::Duration;

use super::status::{Entry, RolloutStatus};
use crate::store::hold::Held;
use crate::store::EtcdStore;

/// How often the publisher checks, without a change, that the lease still runs.
const CHECK_EVERY: Duration = Duration::from_millis(500);

pub(super) fn records_prefix(store: &EtcdStore) -> String {
    format!("{}/rollouts/", store.settings().prefix)
}

pub(super) fn driver_key(store: &EtcdStore, upstream: &str) -> String {
    format!("{}/rollout-drivers/{upstream}", store.settings().prefix)
}

/// The record of `upstream`'s latest rollout, if any.
pub(super) async fn read(store: &EtcdStore, upstream: &str) -> Option<RolloutStatus> {
    let key = format!("{}{upstream}", records_prefix(store));
    let all: Vec<RolloutStatus> = store.json_under(key, "reading a rollout").await.ok()?;
    all.into_iter().find(|r| r.upstream == upstream)
}

/// Whether the store has a rollout of `upstream` that is not over (driven, paused, or
/// waiting to be taken over). An unreadable store counts as yes: a flip waits.
pub(crate) async fn running_in(store: &EtcdStore, upstream: &str) -> bool {
    let key = format!("{}{upstream}", records_prefix(store));
    match store
        .json_under::<RolloutStatus>(key, "reading a rollout")
        .await
    {
        Ok(all) => all
            .iter()
            .any(|r| r.upstream == upstream && !r.state.is_over()),
        Err(_) => true,
    }
}

/// The right to drive a rollout of one upstream for the fleet, held by this node.
pub(super) struct Lease {
    store: Arc<EtcdStore>,
    held: Held,
}

impl Lease {
    /// Take the driver lease of `upstream`. `Ok(None)`: another node holds it.
    pub async fn take(store: &Arc<EtcdStore>, upstream: &str) -> Result<Option<Lease>, String> {
        let held = store
            .hold(&driver_key(store, upstream), store.node())
            .await?;
        Ok(held.map(|held| Lease {
            store: store.clone(),
            held,
        }))
    }

    /// Write `status` as the rollout's record. `false`: this node no longer holds the lease
    /// (another node took the rollout over), or cannot tell that it still does.
    pub async fn publish(&self, status: &RolloutStatus) -> bool {
        let Ok(text) = serde_json::to_string(status) else {
            return false;
        };
        let key = format!("{}{}", records_prefix(&self.store), status.upstream);
        match self.held.put(&key, &text).await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(upstream = %status.upstream, error = %e, "publishing a rollout's progress failed");
                // Unreachable for now: the lease may still run, keep driving.
                self.held.valid()
            }
        }
    }

    /// Give the lease back.
    pub async fn release(self) {
        self.held.release().await;
    }
}

/// Publish `entry`'s status at every change until the rollout is over, then give the lease
/// back. When the lease is lost (fenced out, or not renewed for a TTL), tell the driver to
/// stop ([`Entry::lost`]).
pub(super) async fn publish(entry: Arc<Entry>, lease: Lease) {
    let mut changed = entry.changed.subscribe();
    let mut dirty = true;
    loop {
        let status = entry.get();
        if (dirty && !lease.publish(&status).await) || !lease.held.valid() {
            tracing::warn!(upstream = %status.upstream, "this node lost the rollout's lease; it stops driving it (another node takes it over)");
            entry.lost.send_replace(true);
            return;
        }
        if status.state.is_over() {
            return lease.release().await;
        }
        // Wait for a change (marked seen before the next read), or check the lease again.
        dirty = matches!(
            tokio::time::timeout(CHECK_EVERY, changed.changed()).await,
            Ok(Ok(()))
        );
        changed.borrow_and_update();
    }
}
