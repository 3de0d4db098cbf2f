//! The config changes a rollout makes: drain a batch, put it back in rotation, and put the
//! upstream's drains and weights back as they were (abort). Each is one version, audited
//! under its own action by the `rollout` actor, with the operator who started it named in
//! the detail.

use std::collections::BTreeMap;

use switchyard_config::edit::{set_backend_state, set_pool_weights, EditError};
use switchyard_config::BackendState;

use super::status::Before;
use crate::applier::{Applier, ApplyError, ApplyOutcome, EditRequest};
use crate::history::{Actor, Origin};

/// The actor named in the history and audit log for a rollout's own changes.
pub const ROLLOUT: &str = "rollout";

/// Set every backend of `states` (those the upstream still has) in one version.
pub async fn set_states(
    applier: &Applier,
    action: &'static str,
    upstream: &str,
    states: &BTreeMap<String, BackendState>,
    weights: Option<&BTreeMap<String, u32>>,
    detail: serde_json::Value,
) -> Result<ApplyOutcome, ApplyError> {
    let req = EditRequest {
        action,
        actor: Actor::system(ROLLOUT),
        origin: Origin::Api,
        expect_version: None,
        detail: Some(detail),
    };
    applier
        .apply_edit(req, |s| {
            let up = s.config.http.upstreams.get(upstream).ok_or_else(|| {
                EditError::UnknownUpstream {
                    upstream: upstream.to_string(),
                }
            })?;
            let known: Vec<String> = up
                .pools
                .values()
                .flat_map(|p| p.backends.iter().map(|b| b.addr.to_string()))
                .collect();
            let mut text = s.source.to_string();
            for (addr, state) in states {
                if known.contains(addr) {
                    text = set_backend_state(&text, upstream, addr, *state)?;
                }
            }
            if let Some(w) = weights {
                let list: Vec<(String, u32)> = w
                    .iter()
                    .filter(|(p, _)| up.pools.contains_key(*p))
                    .map(|(p, w)| (p.clone(), *w))
                    .collect();
                if !list.is_empty() {
                    text = set_pool_weights(&text, upstream, &list)?;
                }
            }
            Ok(text)
        })
        .await
}

/// Drain (`true`) or enable every backend of `batch`.
pub fn batch_states(batch: &[String], drain: bool) -> BTreeMap<String, BackendState> {
    let state = if drain {
        BackendState::Drain
    } else {
        BackendState::Enabled
    };
    batch.iter().map(|a| (a.clone(), state)).collect()
}

/// Put back the drains and pool weights of `before`.
pub async fn restore(
    applier: &Applier,
    upstream: &str,
    before: &Before,
    detail: serde_json::Value,
) -> Result<ApplyOutcome, ApplyError> {
    let states = before
        .drained
        .iter()
        .map(|(a, d)| {
            let s = if *d {
                BackendState::Drain
            } else {
                BackendState::Enabled
            };
            (a.clone(), s)
        })
        .collect();
    set_states(
        applier,
        "upstream.rollout.abort",
        upstream,
        &states,
        Some(&before.pool_weights),
        detail,
    )
    .await
}
