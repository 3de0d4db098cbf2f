//! Refused change attempts, audited: a request without the role (401/403) and one refused
//! before it reached the applier (a bad `If-Match`, a body too large). Every attempt is in
//! the audit log, not only those the applier saw.

use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use switchyard_config::Role;

use super::auth;
use super::response::Body;
use super::state::ApiState;
use crate::audit::AuditEntry;
use crate::history::Actor;

/// Record a refused change attempt in the audit log and pass the refusal on. A token that
/// is valid but lacks the role is named as the actor.
pub(super) fn denied<B>(
    state: &ApiState,
    req: &Request<B>,
    remote: SocketAddr,
    action: &str,
    resp: Response<Body>,
) -> Response<Body> {
    let version = state.applier.current().snapshot.version;
    let reason = if resp.status() == StatusCode::FORBIDDEN {
        "forbidden"
    } else {
        "unauthenticated"
    };
    let runtime = state.applier.runtime();
    let actor = auth::authorize(&runtime, req, Role::Viewer)
        .map(|p| p.name)
        .unwrap_or_else(|_| "(unauthenticated)".into());
    runtime.audit.record(&AuditEntry {
        time: time::OffsetDateTime::now_utc(),
        actor,
        remote: Some(remote),
        action: action.to_string(),
        version_before: version,
        version_after: version,
        result: "denied",
        error: Some(format!("{reason} ({})", resp.status().as_u16())),
        detail: None,
    });
    resp
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
