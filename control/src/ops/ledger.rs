//! Flips on a shared store (etcd), the store's side: the verifier lease and the flip's
//! record, below the verifier ([`super::verify`]) and the takeover ([`super::takeover`]).
//!
//! - The verifier holds `<prefix>/flip-verifiers/<upstream>` under an etcd lease
//!   ([`crate::store::hold`]): taken before the flip is applied, so two nodes never flip one
//!   upstream at once, and given back when the verification ends.
//! - The flip's state lives in `<prefix>/flips/<upstream>` ([`FlipRecord`]: the status with
//!   its target pool, start, window and thresholds, the fleet's counters when it started, the
//!   counts seen so far, and the verifier's id), written by the holder only (fenced on the
//!   lease key), at the start, every [`PUBLISH_EVERY`] and at the end.
//! - Every node reads the records ([`super::takeover`]) and finishes a verification whose
//!   verifier died.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::flips::FlipStatus;
use crate::plane::PoolCounts;
use crate::store::hold::Held;
use crate::store::EtcdStore;

/// How often the verifier writes its progress to the store, at most.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// A flip as the fleet's store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlipRecord {
    pub status: FlipStatus,
    /// The new pool's fleet-wide counters when the flip was applied.
    pub baseline: PoolCounts,
    /// The node verifying it.
    pub verifier: String,
}

/// The right to verify a flip of one upstream for the fleet, held by this node.
pub(super) struct Shared {
    store: Arc<EtcdStore>,
    held: Held,
    baseline: PoolCounts,
}

pub(super) fn record_key(store: &EtcdStore, upstream: &str) -> String {
    format!("{}/flips/{upstream}", store.settings().prefix)
}

pub(super) fn verifier_key(store: &EtcdStore, upstream: &str) -> String {
    format!("{}/flip-verifiers/{upstream}", store.settings().prefix)
}

/// The record of `upstream`'s latest flip, if any.
pub(super) async fn read(store: &EtcdStore, upstream: &str) -> Option<FlipRecord> {
    let key = record_key(store, upstream);
    let all: Vec<FlipRecord> = store.json_under(key, "reading a flip").await.ok()?;
    all.into_iter().find(|r| r.status.upstream == upstream)
}

impl Shared {
    /// Take the verifier lease of `upstream`. `Ok(None)`: another node holds it.
    pub async fn take(store: &Arc<EtcdStore>, upstream: &str) -> Result<Option<Shared>, String> {
        let held = store
            .hold(&verifier_key(store, upstream), store.node())
            .await?;
        Ok(held.map(|held| Shared {
            store: store.clone(),
            held,
            baseline: PoolCounts::default(),
        }))
    }

    pub fn set_baseline(&mut self, baseline: PoolCounts) {
        self.baseline = baseline;
    }

    /// Whether the lease certainly still runs (see [`Held::valid`]).
    pub fn valid(&self) -> bool {
        self.held.valid()
    }

    /// Write `status` as the flip's record. `false`: this node no longer holds the lease
    /// (another took the verification over), or the store could not be reached.
    pub async fn publish(&self, status: &FlipStatus) -> bool {
        let record = FlipRecord {
            status: status.clone(),
            baseline: self.baseline,
            verifier: self.store.node().to_string(),
        };
        let Ok(text) = serde_json::to_string(&record) else {
            return false;
        };
        let key = record_key(&self.store, &status.upstream);
        match self.held.put(&key, &text).await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(upstream = %status.upstream, error = %e, "publishing a flip's progress failed");
                // Unreachable for now: the lease may still run, keep verifying.
                self.held.valid()
            }
        }
    }

    /// Give the lease back.
    pub async fn release(self) {
        self.held.release().await;
    }
}
