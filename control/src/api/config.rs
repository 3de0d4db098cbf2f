//! `/v1/config`: read the running config (secrets redacted), replace it, roll it back.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use switchyard_config::redact::{redact_json, redact_toml};

use super::outcome::{outcome_response, set_etag};
use super::precondition;
use super::refusal::refused;
use super::request::{query_flag, read_body};
use super::response::{error, json, with_type, Body};
use super::state::ApiState;
use crate::applier::ApplyRequest;
use crate::auth::Principal;
use crate::history::{Actor, Origin};

/// `GET /v1/config[?format=json]`: the running config's TOML (or JSON model), redacted, with
/// its version as the `ETag`.
pub fn get<B>(state: &ApiState, req: &Request<B>) -> Response<Body> {
    let applied = state.applier.current();
    let mut resp = if query_flag(req.uri().query(), "format").as_deref() == Some("json") {
        let mut v = serde_json::to_value(&*applied.snapshot.config).unwrap_or_default();
        redact_json(&mut v);
        json(StatusCode::OK, &v)
    } else {
        with_type(
            StatusCode::OK,
            "application/toml",
            redact_toml(&applied.snapshot.source),
        )
    };
    set_etag(&mut resp, applied.snapshot.version);
    resp
}

/// `GET /v1/config/history/{version}`: an earlier config's TOML, redacted.
pub fn get_version(state: &ApiState, version: &str) -> Response<Body> {
    let Ok(version) = version.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "version must be a number");
    };
    match state.applier.source_of(version) {
        Some(text) => {
            let mut resp = with_type(StatusCode::OK, "application/toml", redact_toml(&text));
            set_etag(&mut resp, version);
            resp
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("version {version} is not in the history"),
        ),
    }
}

/// `PUT /v1/config[?dry_run=true]` with a TOML body, honouring `If-Match`.
pub async fn put(
    state: &ApiState,
    who: Principal,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let dry_run = matches!(
        query_flag(req.uri().query(), "dry_run").as_deref(),
        Some("true" | "1")
    );
    let actor = Actor {
        name: who.name,
        remote: Some(remote),
    };
    let action = if dry_run {
        "config.put.dry_run"
    } else {
        "config.put"
    };
    let expect_version = match if_match(state, &req) {
        Ok(v) => v,
        Err(resp) => return refused(state, &actor, action, resp),
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return refused(state, &actor, action, resp),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        let resp = error(StatusCode::BAD_REQUEST, "config must be UTF-8 TOML text");
        return refused(state, &actor, action, resp);
    };
    // A config fetched with GET has its secrets redacted: put them back from the running one.
    let current = state.applier.current();
    let text = switchyard_config::redact::restore_redacted(text, &current.snapshot.source);
    let outcome = state
        .applier
        .apply(ApplyRequest {
            text: Arc::from(text),
            origin: Origin::Api,
            actor,
            action,
            expect_version,
            dry_run,
        })
        .await;
    outcome_response(outcome)
}

/// `POST /v1/config/rollback` with `{"version": N}`.
pub async fn rollback(
    state: &ApiState,
    who: Principal,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let actor = Actor {
        name: who.name,
        remote: Some(remote),
    };
    let action = "config.rollback";
    let expect_version = match if_match(state, &req) {
        Ok(v) => v,
        Err(resp) => return refused(state, &actor, action, resp),
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return refused(state, &actor, action, resp),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rollback {
        version: u64,
    }
    let target: Rollback = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let resp = error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"version\": N}}: {e}"),
            );
            return refused(state, &actor, action, resp);
        }
    };
    outcome_response(
        state
            .applier
            .rollback(target.version, actor, expect_version)
            .await,
    )
}

/// The version `If-Match` expects, for the applier to check under its lock: `None` when
/// absent or `*`. A header that can match no version (`"abc"`, a weak `W/"3"`) is 412 with
/// the current ETag, as RFC 9110 says; only one that is not entity-tag syntax is 400.
fn if_match<B>(state: &ApiState, req: &Request<B>) -> Result<Option<u64>, Response<Body>> {
    let parsed = precondition::parse(req.headers().get_all(header::IF_MATCH)).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "If-Match must be * or a list of entity tags such as \"7\"",
        )
    })?;
    let current = state.applier.current().snapshot.version;
    parsed.expect_version(current).map_err(|()| {
        let mut resp = error(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "If-Match names no config version (the current one is \"{current}\"; weak tags never match)"
            ),
        );
        set_etag(&mut resp, current);
        resp
    })
}
