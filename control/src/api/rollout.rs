//! `/v1/upstreams/{name}/rollout`: rolling releases of an upstream (see
//! [`crate::ops::rollout`]).
//!
//! - `POST …/rollout` with a [`RolloutRequest`] body: operator; answers `201` with the
//!   rollout's state, `409` while another one is going on or when the first batch would
//!   leave fewer than `min_available` healthy backends.
//! - `GET …/rollout`: viewer; the latest rollout, batch by batch.
//! - `POST …/rollout/abort`, `POST …/rollout/resume`: operator.
//!
//! Every attempt is audited (refusals as `rejected`); the drains and enables the rollout
//! makes are config versions of their own, audited by the `rollout` actor.

use http::{Response, StatusCode};
use time::OffsetDateTime;

use super::response::{error, json, Body};
use super::state::ApiState;
use crate::audit::AuditEntry;
use crate::history::Actor;
use crate::ops::rollout::{RolloutError, RolloutRequest, RolloutStatus};

/// What was asked of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Start,
    Abort,
    Resume,
}

impl Verb {
    pub fn action(self) -> &'static str {
        match self {
            Verb::Start => "upstream.rollout",
            Verb::Abort => "upstream.rollout.abort",
            Verb::Resume => "upstream.rollout.resume",
        }
    }
}

/// `GET …/rollout`.
pub(super) fn get(state: &ApiState, upstream: &str) -> Response<Body> {
    match state.ops.rollouts.latest(upstream) {
        Some(status) => json(StatusCode::OK, &status),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no rollout of upstream {upstream:?} since Switchyard started"),
        ),
    }
}

/// An authorized `POST` (start, abort or resume).
pub(super) async fn post(
    state: &ApiState,
    actor: Actor,
    upstream: &str,
    verb: Verb,
    body: &[u8],
) -> Response<Body> {
    let rollouts = &state.ops.rollouts;
    let result = match verb {
        Verb::Start => match RolloutRequest::from_json(body) {
            // A flip being verified watches one pool's traffic: a rollout would drain it.
            Ok(_) if flip_verifying(state, upstream) => Err(RolloutError::Conflict {
                message: format!("a flip of upstream {upstream:?} is being verified: wait for its outcome before a rollout"),
                current: None,
            }),
            Ok(req) => {
                rollouts
                    .start(
                        state.applier.clone(),
                        state.traffic.clone(),
                        actor.clone(),
                        upstream,
                        req,
                    )
                    .await
            }
            Err(message) => Err(RolloutError::BadRequest(message)),
        },
        Verb::Abort => rollouts.abort(&state.applier, upstream).await,
        Verb::Resume => rollouts.resume(upstream),
    };
    match result {
        // The start is audited by the rollout itself, with its batches.
        Ok(status) if verb == Verb::Start => json(
            StatusCode::CREATED,
            &serde_json::json!({ "rollout": status }),
        ),
        Ok(status) => {
            audit(state, &actor, verb, upstream, "applied", None);
            json(StatusCode::OK, &serde_json::json!({ "rollout": status }))
        }
        Err(e) => {
            let (code, current) = match &e {
                RolloutError::NotFound(_) => (StatusCode::NOT_FOUND, None),
                RolloutError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
                RolloutError::Conflict { current, .. } => {
                    (StatusCode::CONFLICT, current.as_deref())
                }
                RolloutError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            };
            audit(
                state,
                &actor,
                verb,
                upstream,
                "rejected",
                Some(format!("{e} ({})", code.as_u16())),
            );
            let body: (&str, Option<&RolloutStatus>) = ("", current);
            json(
                code,
                &serde_json::json!({ "error": e.to_string(), "rollout": body.1 }),
            )
        }
    }
}

/// Whether a flip of `upstream` (on this node, or on another as the store says) is in its
/// verification window.
fn flip_verifying(state: &ApiState, upstream: &str) -> bool {
    state
        .ops
        .flips
        .latest(upstream)
        .is_some_and(|f| f.state == crate::ops::FlipState::Verifying)
}

fn audit(
    state: &ApiState,
    actor: &Actor,
    verb: Verb,
    upstream: &str,
    result: &'static str,
    error: Option<String>,
) {
    let version = state.applier.current().snapshot.version;
    state.applier.runtime().audit.record(&AuditEntry {
        time: OffsetDateTime::now_utc(),
        actor: actor.name.clone(),
        remote: actor.remote,
        action: verb.action().to_string(),
        version_before: version,
        version_after: version,
        result,
        error,
        detail: Some(serde_json::json!({ "upstream": upstream })),
    });
}
