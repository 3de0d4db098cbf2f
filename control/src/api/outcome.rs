//! The answer to a change: an applier outcome (applied, unchanged, dry run, or why not) as
//! an HTTP response with the config version as its ETag.

use http::{header, HeaderValue, Response, StatusCode};
use switchyard_config::edit::{EditError, EditErrorKind};

use super::response::{error, errors, json, Body};
use crate::applier::{ApplyError, ApplyOutcome};

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
        Err(ApplyError::Edit(e)) => error(edit_status(&e), e.to_string()),
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

/// The HTTP status for an edit error.
pub(super) fn edit_status(e: &EditError) -> StatusCode {
    match e.kind() {
        EditErrorKind::NotFound => StatusCode::NOT_FOUND,
        EditErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        EditErrorKind::Conflict => StatusCode::CONFLICT,
    }
}

pub(super) fn set_etag(resp: &mut Response<Body>, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}
