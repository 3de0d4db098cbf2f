//! One operation at a time per upstream, on this node: a flip being verified or a rollout
//! being driven holds the upstream's [`Taken`] claim, taken with one check-and-insert under
//! one lock, so two requests that arrive together (a flip and a rollout, or two of either)
//! never both start. With a shared store the fleet's leases keep nodes apart in the same
//! way: each operation, once it holds its own lease, reads the other's record before it
//! acts (see `flip.rs` and `rollout/start.rs`).
//!
//! Below flips and rollouts; imports neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::applier::lock;

/// What holds an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flip,
    Rollout,
}

impl Kind {
    /// The operation, as messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Flip => "a flip being verified",
            Kind::Rollout => "a rollout",
        }
    }
}

/// The claims of this process, shared by its flips and rollouts.
#[derive(Clone, Default)]
pub struct Claims {
    held: Arc<Mutex<HashMap<String, Kind>>>,
}

/// A claim on one upstream; dropping it gives the upstream back.
pub struct Taken {
    claims: Claims,
    upstream: String,
}

impl Claims {
    /// Claim `upstream` for `kind`; `Err` with what holds it already.
    pub fn take(&self, upstream: &str, kind: Kind) -> Result<Taken, Kind> {
        let mut held = lock(&self.held);
        if let Some(k) = held.get(upstream) {
            return Err(*k);
        }
        held.insert(upstream.to_string(), kind);
        Ok(Taken {
            claims: self.clone(),
            upstream: upstream.to_string(),
        })
    }

    /// What holds `upstream` now, if anything.
    pub fn holder(&self, upstream: &str) -> Option<Kind> {
        lock(&self.held).get(upstream).copied()
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        lock(&self.claims.held).remove(&self.upstream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operation_per_upstream_until_its_claim_is_dropped() {
        let claims = Claims::default();
        let flip = claims.take("api", Kind::Flip).ok();
        assert!(flip.is_some());
        assert_eq!(claims.take("api", Kind::Rollout).err(), Some(Kind::Flip));
        assert_eq!(claims.take("api", Kind::Flip).err(), Some(Kind::Flip));
        // Another upstream is free.
        let other = claims.take("web", Kind::Rollout);
        assert!(other.is_ok());
        drop(flip);
        assert_eq!(claims.holder("api"), None);
        assert!(claims.take("api", Kind::Rollout).is_ok());
    }
}
