//! `/v1/clusters/{name}/…`: Postgres operations, all for the operator role.
//!
//! - `POST …/promote` `{"node": "host:port"}`: promote that replica now (the old primary is
//!   fenced). For a primary that is down and `auto_promote = false`, or to override the
//!   automatic choice.
//! - `POST …/switchover` `{"to": "host:port"}`: planned switchover (drain, catch up, promote,
//!   fence the old primary); new write transactions wait meanwhile.
//! - `POST …/nodes/{addr}/rejoin`: lift the fence of a node rebuilt as a replica.
//!
//! The router does the work ([`crate::plane::ClusterOps`]); the config change it makes is
//! applied, versioned and audited by the single writer. Refusals are audited here.

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use switchyard_config::Role;

use super::auth;
use super::refusal::{denied, refused};
use super::request::{decode, read_body};
use super::response::{error, json, Body};
use super::state::ApiState;
use crate::history::Actor;
use crate::plane::ClusterOp;

/// Route a request under `/v1/clusters/`.
pub(super) async fn route(
    state: &ApiState,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/v1/clusters/").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    let (name, kind, node) = match segments.as_slice() {
        [name, op @ ("promote" | "switchover")] => (*name, *op, None),
        [name, "nodes", addr, "rejoin"] => (*name, "rejoin", Some(*addr)),
        _ => return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    };
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST",
        );
    }
    let cluster = match decode(name) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let action = match kind {
        "promote" => "postgres.promote",
        "switchover" => "postgres.switchover",
        _ => "postgres.rejoin",
    };
    let rt = state.applier.runtime();
    let who = match auth::authorize(&rt, &req, Role::Operator) {
        Ok(who) => who,
        Err(resp) => return denied(state, &req, remote, action, resp),
    };
    let actor = Actor {
        name: who.name,
        remote: Some(remote),
    };
    let op = match node {
        Some(addr) => match decode(addr) {
            Ok(node) => ClusterOp::Rejoin { node },
            Err(resp) => return refused(state, &actor, action, resp),
        },
        None => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(resp) => return refused(state, &actor, action, resp),
            };
            let field = if kind == "promote" { "node" } else { "to" };
            let value: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get(field)?.as_str().map(str::to_string));
            match (kind, value) {
                ("promote", Some(node)) => ClusterOp::Promote { node },
                (_, Some(to)) => ClusterOp::Switchover { to },
                (_, None) => {
                    let resp = error(
                        StatusCode::BAD_REQUEST,
                        format!("expected {{\"{field}\": \"host:port\"}} naming a replica of the cluster"),
                    );
                    return refused(state, &actor, action, resp);
                }
            }
        }
    };
    let Some(ops) = state.clusters.clone() else {
        return error(StatusCode::NOT_FOUND, "the Postgres router is not running");
    };
    match ops.run(&cluster, op, &actor.name).await {
        Ok(doc) => json(StatusCode::OK, &doc),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::CONFLICT);
            let body = serde_json::json!({ "error": e.message, "attempt": e.detail });
            refused(state, &actor, action, json(status, &body))
        }
    }
}
