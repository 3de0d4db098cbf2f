//! The control API: an HTTP/1.1 JSON API on hyper, optionally over TLS.
//!
//! Routes, and the role each needs:
//! - `GET /health`: liveness, no token.
//! - `GET /ui[/…]`: the status page's static files, no token (see `ui.rs`); the page reads
//!   its data from the viewer routes.
//! - `GET /v1/status`, `GET /v1/fleet`, `GET /v1/config`, `GET /v1/config/history[/{version}]`,
//!   `GET /v1/config/diff`, `GET /metrics`: viewer.
//! - `PUT /v1/config`, `POST /v1/config/rollback`: admin.
//! - `POST /v1/upstreams/{name}/weights`, `…/flip`, `…/backends/{addr}/drain|enable`:
//!   operator; `GET /v1/upstreams/{name}/flip`: viewer (see `upstreams.rs`).
//! - `POST /v1/upstreams/{name}/rollout`, `…/rollout/abort`, `…/rollout/resume`: operator;
//!   `GET /v1/upstreams/{name}/rollout`: viewer (see `rollout.rs`).
//! - `POST /v1/clusters/{name}/promote`, `…/switchover`, `…/nodes/{addr}/rejoin`: operator
//!   (see `clusters.rs`).

// Handlers return `Err(Response)` for early answers (401, 413, …); boxing them would only
// move the allocation, the response is sent either way.
#![allow(clippy::result_large_err)]

mod auth;
mod clusters;
mod config;
mod diff;
mod outcome;
mod precondition;
mod refusal;
mod request;
mod response;
mod rollout;
mod state;
mod status;
mod ui;
mod upstreams;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchyard_config::Role;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

pub use state::{ApiState, MAX_BODY_BYTES};

use refusal::denied;
use response::{error, Body};

/// Serve the control API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "control API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let tls = state.applier.runtime().tls.clone();
            match tls {
                Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                    Ok(stream) => serve_conn(stream, state, remote).await,
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "control API TLS handshake failed")
                    }
                },
                None => serve_conn(tcp, state, remote).await,
            }
        });
    }
}

async fn serve_conn<I>(io: I, state: Arc<ApiState>, remote: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, remote, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = conn.await {
        tracing::debug!(%remote, error = %e, "control API connection ended with an error");
    }
}

async fn route(state: &ApiState, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let rt = state.applier.runtime();
    let needs = |role: Role| auth::authorize(&rt, &req, role);
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/health") => {
            response::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        (_, p) if ui::is_ui(p) => ui::serve(req.method(), p),
        (Method::GET, "/v1/config/diff") => match needs(Role::Viewer) {
            Ok(_) => diff::get(state, req.uri().query()),
            Err(resp) => resp,
        },
        (Method::GET, "/v1/status") => match needs(Role::Viewer) {
            Ok(_) => status::status(state),
            Err(resp) => resp,
        },
        (Method::GET, "/v1/fleet") => match needs(Role::Viewer) {
            Ok(_) => status::fleet(state).await,
            Err(resp) => resp,
        },
        (Method::GET, "/metrics") => match needs(Role::Viewer) {
            Ok(_) => match &state.metrics {
                Some(h) => {
                    let text = crate::metrics::render(h, &state.applier);
                    response::with_type(StatusCode::OK, "text/plain; version=0.0.4", text)
                }
                None => error(StatusCode::NOT_FOUND, "metrics are not enabled"),
            },
            Err(resp) => resp,
        },
        (Method::GET, "/v1/config") => match needs(Role::Viewer) {
            Ok(_) => config::get(state, &req),
            Err(resp) => resp,
        },
        (Method::GET, "/v1/config/history") => match needs(Role::Viewer) {
            Ok(_) => response::json(
                StatusCode::OK,
                &serde_json::json!({ "history": state.applier.history() }),
            ),
            Err(resp) => resp,
        },
        (Method::GET, p) if p.starts_with("/v1/config/history/") => match needs(Role::Viewer) {
            Ok(_) => config::get_version(state, &p["/v1/config/history/".len()..]),
            Err(resp) => resp,
        },
        (Method::PUT, "/v1/config") => match needs(Role::Admin) {
            Ok(who) => config::put(state, who, remote, req).await,
            Err(resp) => denied(state, &req, remote, "config.put", resp),
        },
        (Method::POST, "/v1/config/rollback") => match needs(Role::Admin) {
            Ok(who) => config::rollback(state, who, remote, req).await,
            Err(resp) => denied(state, &req, remote, "config.rollback", resp),
        },
        (_, p) if p.starts_with("/v1/upstreams/") => upstreams::route(state, remote, req).await,
        (_, p) if p.starts_with("/v1/clusters/") => clusters::route(state, remote, req).await,
        (_, "/health" | "/v1/status" | "/metrics" | "/v1/config/history") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET",
        ),
        (_, "/v1/config") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or PUT",
        ),
        (_, "/v1/config/rollback") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST",
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}
