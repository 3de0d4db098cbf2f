//! `GET /v1/config/diff?from=N&to=M` (viewer): what changed between two versions of the
//! config kept in the history, as a unified diff of their TOML, for the status page's history
//! and for an operator's terminal.
//!
//! Both sides are redacted first (as `GET /v1/config/history/{version}` shows them), so a
//! diff never carries a secret; a changed secret shows no line. `to` defaults to the running
//! version, `from` to the newest kept version before `to`.

use http::{Response, StatusCode};
use similar::TextDiff;
use switchyard_config::redact::redact_toml;

use super::request::query_flag;
use super::response::{error, json, Body};
use super::state::ApiState;

/// Lines of context around each change.
const CONTEXT: usize = 3;

pub fn get(state: &ApiState, query: Option<&str>) -> Response<Body> {
    let version = |key: &str| match query_flag(query, key) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{key} must be a version number, got {v:?}"),
            )
        }),
    };
    let (to, from) = match (version("to"), version("from")) {
        (Ok(to), Ok(from)) => (to, from),
        (Err(resp), _) | (_, Err(resp)) => return resp,
    };
    let to = to.unwrap_or_else(|| state.applier.current().snapshot.version);
    let from = match from {
        Some(from) => from,
        None => match previous_version(state, to) {
            Some(v) => v,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no version before {to} is kept in the history"),
                )
            }
        },
    };
    let source = |v: u64| {
        state.applier.source_of(v).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("version {v} is not in the history"),
            )
        })
    };
    let (old, new) = match (source(from), source(to)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(resp), _) | (_, Err(resp)) => return resp,
    };
    let (old, new) = (redact_toml(&old), redact_toml(&new));
    let diff = TextDiff::from_lines(old.as_str(), new.as_str());
    let (mut added, mut removed) = (0usize, 0usize);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let unified = diff
        .unified_diff()
        .context_radius(CONTEXT)
        .header(&format!("version {from}"), &format!("version {to}"))
        .to_string();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "from": from,
            "to": to,
            "added": added,
            "removed": removed,
            "diff": unified,
        }),
    )
}

/// The newest version in the history older than `version`.
fn previous_version(state: &ApiState, version: u64) -> Option<u64> {
    state
        .applier
        .history()
        .iter()
        .filter_map(|line| line["version"].as_u64())
        .filter(|v| *v < version)
        .max()
}
