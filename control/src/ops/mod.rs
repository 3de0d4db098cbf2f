//! Runtime operations on HTTP upstreams, as the control API runs them: set pool weights,
//! drain or re-enable a backend, and blue/green flips that verify the new pool and roll
//! back on their own.
//!
//! Every operation is a change of the config like any other: it edits the running config's
//! text (comments and layout kept, see [`switchyard_config::edit`]) through
//! [`Applier::apply_edit`](crate::Applier::apply_edit), so it is validated, built, written
//! back to the file, versioned, kept in the history and audited. What outlives a single
//! request (a flip being verified) lives in [`Ops`], which the API state owns. With a shared
//! store, a flip's verifier holds an etcd lease per upstream and keeps the flip's state in
//! etcd, so another node finishes the verification if it dies ([`takeover`]).

mod backends;
mod claim;
mod flip;
mod flips;
mod ledger;
mod request;
pub mod rollout;
mod takeover;
mod verify;
mod weights;

pub use backends::set_backend_state;
pub use flip::{FlipError, FlipStarted};
pub use flips::{FlipState, FlipStatus, Flips};
pub use ledger::FlipRecord;
pub use request::{FlipRequest, Verify};
pub use takeover::{takeover, TAKEOVER_EVERY};
pub use weights::set_weights;

/// Long-lived state of runtime operations, shared by every API request.
#[derive(Clone)]
pub struct Ops {
    /// Blue/green flips: the latest per upstream, and the ones being verified.
    pub flips: Flips,
    /// Rolling releases: the latest per upstream.
    pub rollouts: rollout::Rollouts,
}

impl Default for Ops {
    /// Flips and rollouts that share one claim per upstream ([`claim`]): a flip being
    /// verified and a rollout never run on one upstream at once.
    fn default() -> Self {
        let claims = claim::Claims::default();
        Ops {
            flips: Flips::with_claims(flips::DEFAULT_POLL, claims.clone()),
            rollouts: rollout::Rollouts::with_claims(claims),
        }
    }
}

#[cfg(test)]
mod tests;
