//! `/v1/upstreams/{name}/…`: runtime operations on an HTTP upstream.
//!
//! - `POST …/weights` `{"blue": 90, "green": 10}`: operator.
//! - `POST …/backends/{addr}/drain`, `POST …/backends/{addr}/enable`: operator.
//! - `POST …/flip` `{"to": "green", "verify": {…}}`: operator; `GET …/flip`: viewer.
//! - `POST …/rollout`, `…/rollout/abort`, `…/rollout/resume`: operator; `GET …/rollout`:
//!   viewer (see `rollout.rs`).
//!
//! Path segments are percent-decoded (`127.0.0.1%3A9001`, `%5B::1%5D%3A80`). Each change
//! answers like `PUT /v1/config` (`result`, `version`, `changes`, …); refusals are audited.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use switchyard_config::{BackendState, Role};

use super::auth;
use super::outcome::outcome_response;
use super::refusal::{denied, refused};
use super::request::{decode, read_body};
use super::response::{error, json, Body};
use super::rollout::Verb;
use super::state::ApiState;
use crate::applier::ApplyOutcome;
use crate::history::Actor;
use crate::ops::{self, FlipError, FlipRequest};
use crate::store::drain::wait_drained;

/// One operation, parsed from the path.
enum Op {
    Weights,
    Flip,
    Rollout(Verb),
    Backend(String, BackendState),
}

impl Op {
    fn action(&self) -> &'static str {
        match self {
            Op::Weights => "upstream.weights",
            Op::Flip => "upstream.flip",
            Op::Rollout(verb) => verb.action(),
            Op::Backend(_, BackendState::Drain) => "upstream.backend.drain",
            Op::Backend(_, BackendState::Enabled) => "upstream.backend.enable",
        }
    }
}

/// Route a request under `/v1/upstreams/`.
pub(super) async fn route(
    state: &ApiState,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/v1/upstreams/").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    let parsed = match segments.as_slice() {
        [name, "weights"] => decode(name).map(|n| (n, Op::Weights)),
        [name, "flip"] => decode(name).map(|n| (n, Op::Flip)),
        [name, "rollout"] => decode(name).map(|n| (n, Op::Rollout(Verb::Start))),
        [name, "rollout", "abort"] => decode(name).map(|n| (n, Op::Rollout(Verb::Abort))),
        [name, "rollout", "resume"] => decode(name).map(|n| (n, Op::Rollout(Verb::Resume))),
        [name, "backends", addr, verb @ ("drain" | "enable")] => {
            let state = match *verb {
                "drain" => BackendState::Drain,
                _ => BackendState::Enabled,
            };
            decode(name).and_then(|n| Ok((n, Op::Backend(decode(addr)?, state))))
        }
        _ => return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    };
    let (upstream, op) = match parsed {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let rt = state.applier.runtime();
    match (req.method(), &op) {
        (&Method::GET, Op::Flip) => match auth::authorize(&rt, &req, Role::Viewer) {
            Ok(_) => match state.ops.flips.latest(&upstream) {
                Some(status) => json(StatusCode::OK, &status),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no flip of upstream {upstream:?} since Switchyard started"),
                ),
            },
            Err(resp) => resp,
        },
        (&Method::GET, Op::Rollout(Verb::Start)) => {
            match auth::authorize(&rt, &req, Role::Viewer) {
                Ok(_) => super::rollout::get(state, &upstream),
                Err(resp) => resp,
            }
        }
        (&Method::POST, _) => match auth::authorize(&rt, &req, Role::Operator) {
            Ok(who) => {
                let actor = Actor {
                    name: who.name,
                    remote: Some(remote),
                };
                run(state, actor, &upstream, op, req).await
            }
            Err(resp) => denied(state, &req, remote, op.action(), resp),
        },
        (_, Op::Flip | Op::Rollout(Verb::Start)) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or POST",
        ),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST",
        ),
    }
}

/// Run an authorized change.
async fn run(
    state: &ApiState,
    actor: Actor,
    upstream: &str,
    op: Op,
    req: Request<Incoming>,
) -> Response<Body> {
    let action = op.action();
    // `?wait=30s` on a drain: answer once no node has a request in flight to the backend.
    let wait = match super::request::query_flag(req.uri().query(), "wait") {
        None => None,
        Some(w) => match humantime::parse_duration(&w) {
            Ok(d) if d <= MAX_DRAIN_WAIT => Some(d),
            _ => {
                let message = format!("wait must be a duration up to 5m, e.g. \"30s\": {w:?}");
                let resp = error(StatusCode::BAD_REQUEST, message);
                return refused(state, &actor, action, resp);
            }
        },
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return refused(state, &actor, action, resp),
    };
    let applier = &state.applier;
    match op {
        Op::Rollout(verb) => super::rollout::post(state, actor, upstream, verb, &body).await,
        Op::Weights => {
            let weights: BTreeMap<String, u32> = match serde_json::from_slice(&body) {
                Ok(w) => w,
                Err(e) => {
                    let message = format!(
                        "expected {{\"POOL\": WEIGHT, …}} with weights 0 to 10000, e.g. {{\"blue\": 90, \"green\": 10}}: {e}"
                    );
                    let resp = error(StatusCode::BAD_REQUEST, message);
                    return refused(state, &actor, action, resp);
                }
            };
            outcome_response(ops::set_weights(applier, actor, upstream, &weights).await)
        }
        Op::Backend(addr, backend_state) => {
            let outcome =
                ops::set_backend_state(applier, actor, upstream, &addr, backend_state).await;
            match (backend_state, wait, &outcome) {
                (BackendState::Drain, Some(wait), Ok(o)) => {
                    let version = match o {
                        ApplyOutcome::Applied { after, .. } => after.snapshot.version,
                        ApplyOutcome::Unchanged { current } => current.snapshot.version,
                        ApplyOutcome::DryRun { current, .. } => *current,
                    };
                    let store = applier.store().etcd().map(|s| &**s);
                    let drain = wait_drained(applier, store, version, upstream, &addr, wait).await;
                    let mut body = outcome_json(o);
                    body["drain"] = drain;
                    json(StatusCode::OK, &body)
                }
                _ => outcome_response(outcome),
            }
        }
        Op::Flip => {
            let flip = match FlipRequest::from_json(&body) {
                Ok(f) => f,
                Err(message) => {
                    let resp = error(StatusCode::BAD_REQUEST, message);
                    return refused(state, &actor, action, resp);
                }
            };
            // A rollout drains and re-enables this upstream's backends as it goes: a flip
            // in the middle would move the traffic under its verification.
            if let Some(r) = state.ops.rollouts.latest(upstream) {
                if !r.state.is_over() {
                    let message = format!(
                        "a rollout of upstream {upstream:?} is {} (batch {} of {}): abort it or wait for its outcome before a flip",
                        serde_json::json!(r.state),
                        r.current.map_or(0, |c| c + 1),
                        r.batches.len()
                    );
                    let body = serde_json::json!({ "error": message, "rollout": r });
                    return refused(state, &actor, action, json(StatusCode::CONFLICT, &body));
                }
            }
            let traffic = state.traffic.clone();
            let flips = &state.ops.flips;
            match flips
                .start(applier.clone(), traffic, actor.clone(), upstream, flip)
                .await
            {
                Ok(started) => flip_response(started),
                Err(FlipError::Apply(e)) => outcome_response(Err(e)),
                Err(e @ FlipError::Unavailable(_)) => {
                    let resp = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                    refused(state, &actor, action, resp)
                }
                Err(busy) => {
                    let body =
                        serde_json::json!({ "error": busy.to_string(), "flip": busy.current() });
                    refused(state, &actor, action, json(StatusCode::CONFLICT, &body))
                }
            }
        }
    }
}

/// The longest `?wait=` of a drain.
const MAX_DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `{"result": "applied", "version_before", "version", "hash", "changes", "flip": {…}}`, or
/// `"unchanged"` with `"flip": null` when the pool already had all the traffic.
fn flip_response(started: ops::FlipStarted) -> Response<Body> {
    let mut body = outcome_json(&started.outcome);
    body["flip"] = serde_json::json!(started.status);
    json(StatusCode::OK, &body)
}

/// An operation's outcome as JSON: `result`, `version`, `hash`, `changes` (and
/// `version_before` when applied).
fn outcome_json(outcome: &ApplyOutcome) -> serde_json::Value {
    match outcome {
        ApplyOutcome::Applied {
            before,
            after,
            changes,
        } => serde_json::json!({
            "result": "applied",
            "version_before": before,
            "version": after.snapshot.version,
            "hash": after.snapshot.hash,
            "changes": changes,
        }),
        ApplyOutcome::Unchanged { current } => serde_json::json!({
            "result": "unchanged",
            "version": current.snapshot.version,
            "hash": current.snapshot.hash,
            "changes": [],
        }),
        ApplyOutcome::DryRun { current, hash, .. } => serde_json::json!({
            "result": "dry_run", "version": current, "hash": hash,
        }),
    }
}

#[cfg(test)]
mod tests;
