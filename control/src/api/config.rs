//! `/v1/config`: read the running config (secrets redacted), replace it, roll it back.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use switchyard_config::redact::{redact_json, redact_toml};

use super::response::{error, errors, json, with_type, Body};
use super::{precondition, ApiState, MAX_BODY_BYTES};
use crate::applier::{ApplyError, ApplyOutcome, ApplyRequest};
use crate::audit::AuditEntry;
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

/// Record a change attempt refused before it reached the applier (a bad `If-Match`, a body
/// too large or not UTF-8, a malformed rollback request) and pass the refusal on: every
/// attempt is in the audit log, not only those the applier saw.
pub(super) fn refused(
    state: &ApiState,
    actor: &Actor,
    action: &str,
    resp: Response<Body>,
) -> Response<Body> {
    let version = state.applier.current().snapshot.version;
    let status = resp.status();
    state.applier.runtime().audit.record(&AuditEntry {
        time: time::OffsetDateTime::now_utc(),
        actor: actor.name.clone(),
        remote: actor.remote,
        action: action.to_string(),
        version_before: version,
        version_after: version,
        result: "rejected",
        error: Some(format!(
            "{} ({})",
            status.canonical_reason().unwrap_or("refused"),
            status.as_u16()
        )),
        detail: None,
    });
    resp
}

pub(super) fn outcome_response(outcome: Result<ApplyOutcome, ApplyError>) -> Response<Body> {
    match outcome {
        Ok(ApplyOutcome::Applied {
            before,
            after,
            changes,
        }) => {
            let mut resp = json(
                StatusCode::OK,
                &serde_json::json!({
                    "result": "applied",
                    "version_before": before,
                    "version": after.snapshot.version,
                    "hash": after.snapshot.hash,
                    "changes": changes,
                }),
            );
            set_etag(&mut resp, after.snapshot.version);
            resp
        }
        Ok(ApplyOutcome::Unchanged { current }) => {
            let mut resp = json(
                StatusCode::OK,
                &serde_json::json!({
                    "result": "unchanged",
                    "version": current.snapshot.version,
                    "hash": current.snapshot.hash,
                    "changes": [],
                }),
            );
            set_etag(&mut resp, current.snapshot.version);
            resp
        }
        Ok(ApplyOutcome::DryRun {
            current,
            hash,
            changes,
        }) => json(
            StatusCode::OK,
            &serde_json::json!({ "result": "dry_run", "valid": true, "version": current, "hash": hash, "changes": changes }),
        ),
        Err(e @ ApplyError::Stale { current, .. }) => {
            let mut resp = error(StatusCode::PRECONDITION_FAILED, e.to_string());
            set_etag(&mut resp, current);
            resp
        }
        Err(e @ ApplyError::Invalid(_)) => {
            errors(StatusCode::BAD_REQUEST, "invalid config", &e.errors())
        }
        Err(e @ ApplyError::Build(_)) => errors(
            StatusCode::BAD_REQUEST,
            "config cannot be applied",
            &e.errors(),
        ),
        Err(e @ ApplyError::UnknownVersion { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(ApplyError::Edit(e)) => error(super::upstreams::edit_status(&e), e.to_string()),
        Err(e @ ApplyError::Unavailable(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("change refused: {e} (nothing was applied; the running config keeps serving)"),
        ),
        Err(e @ ApplyError::Conflict) => error(StatusCode::PRECONDITION_FAILED, e.to_string()),
        Err(e @ ApplyError::Persist(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("change refused: {e} (nothing was applied)"),
        ),
    }
}

/// Collect a request body, refusing more than [`MAX_BODY_BYTES`] with 413.
pub(super) async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|l| l.parse::<u64>().ok());
        match len {
            Some(n) if n > MAX_BODY_BYTES as u64 => return Err(too_large()),
            Some(_) => {}
            None => return Err(error(StatusCode::BAD_REQUEST, "invalid Content-Length")),
        }
    }
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read request body: {e}"),
        )),
    }
}

fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_BODY_BYTES} bytes"),
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

fn set_etag(resp: &mut Response<Body>, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

/// The value of `key` in a query string (no percent-decoding: our flags are plain words).
pub(super) fn query_flag(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}
