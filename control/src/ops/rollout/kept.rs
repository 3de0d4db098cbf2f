//! Rollouts on a file store, kept over a restart: the rollout's whole [`RolloutStatus`] is
//! written into the state file (`store.state_file`, beside the version and the history) at
//! every change ([`keep`]), and when Switchyard starts [`super::restart::resume_kept`] reads them back:
//! a finished rollout is shown by `GET` (and a failed one can still be aborted), an
//! unfinished one is driven on from the step in progress, as a node taking a rollout over
//! from a dead one does on etcd ([`super::takeover`]): that step runs again (a drain and a
//! replace again, a wait for readiness or a verification from its start). A rollout paused
//! between batches stays paused until `resume`.
//!
//! With `store.state_file = "off"` nothing is kept, and a restart forgets the rollout.

use std::sync::Arc;

use super::status::{Entry, RolloutStatus};
use crate::applier::Applier;

/// Write `entry`'s status into the state file at every change until the rollout is over.
pub(super) async fn keep(entry: Arc<Entry>, applier: Arc<Applier>) {
    let mut changed = entry.changed.subscribe();
    loop {
        changed.borrow_and_update();
        let status = entry.get();
        kept(&applier, &status);
        if status.state.is_over() || changed.changed().await.is_err() {
            return;
        }
    }
}

/// Write `status` into the state file once (a change after the rollout ended: an abort of a
/// failed one).
pub(super) fn kept(applier: &Applier, status: &RolloutStatus) {
    match serde_json::to_value(status) {
        Ok(value) => applier.keep_rollout(&status.upstream, value),
        Err(e) => {
            tracing::warn!(upstream = %status.upstream, error = %e, "cannot keep the rollout's state")
        }
    }
}
