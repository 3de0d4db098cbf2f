//! Active health checks: for every upstream with a `health_check`, each backend is probed
//! with an HTTP GET on its own schedule; `fall` failures in a row take it out of rotation and
//! `rise` successes bring it back (with slow start, if set). A supervisor reconciles the probe
//! tasks with the running config, so checks start, change and stop with reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use switchyard_config::ActiveHealthCheck;
use tokio::task::JoinHandle;

use crate::registry::CheckSeen;
use crate::HttpPlane;

/// How often the supervisor compares running probes with the config.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// Run the checks until the task is dropped.
pub async fn run(plane: Arc<HttpPlane>) {
    let mut probes: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    loop {
        let mut desired = HashMap::new();
        if let Some(rt) = plane.runtime() {
            for up in rt.upstreams.values() {
                if up.config.health_check.is_none() {
                    continue;
                }
                for b in up.pools.iter().flat_map(|p| p.backends.iter()) {
                    desired.insert((up.name.clone(), b.addr.clone()), b.socket);
                }
            }
        }
        probes.retain(|key, task| {
            let keep = desired.contains_key(key) && !task.is_finished();
            if !keep {
                task.abort();
                plane.registry.backend(&key.1).clear_active();
            }
            keep
        });
        for (key, socket) in desired {
            if let std::collections::hash_map::Entry::Vacant(slot) = probes.entry(key) {
                let (upstream, addr) = slot.key().clone();
                slot.insert(tokio::spawn(probe_loop(
                    plane.clone(),
                    upstream,
                    addr,
                    socket,
                )));
            }
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

async fn probe_loop(plane: Arc<HttpPlane>, upstream: String, addr: String, socket: SocketAddr) {
    loop {
        let Some(hc) = plane.runtime().and_then(|rt| {
            rt.upstreams
                .get(&upstream)
                .and_then(|u| u.config.health_check.clone())
        }) else {
            return;
        };
        let started = std::time::Instant::now();
        let (ok, version) = probe(socket, &addr, &hc).await;
        let state = plane.registry.backend(&addr);
        state.note_check(CheckSeen {
            at: started,
            ok,
            version,
        });
        if let Some(up) = state.record_check(ok, hc.rise, hc.fall) {
            let to = if up { "up" } else { "down" };
            if up {
                tracing::info!(%upstream, backend = %addr, "active health check: backend is up");
            } else {
                tracing::warn!(%upstream, backend = %addr, path = %hc.path, "active health check: backend is down");
            }
            metrics::counter!("switchyard_http_health_transitions_total", "upstream" => upstream.clone(), "backend" => addr.clone(), "to" => to)
                .increment(1);
        }
        tokio::time::sleep(hc.interval).await;
    }
}

/// One probe: a fresh connection and `GET path`, answered with the expected status in time;
/// and the value of the check's `version_header` in the answer, if any.
async fn probe(socket: SocketAddr, host: &str, hc: &ActiveHealthCheck) -> (bool, Option<String>) {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(socket).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = http::Request::get(hc.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "switchyard-health-check")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let version = hc.version_header.as_ref().and_then(|h| {
            let v = resp.headers().get(h.as_str())?.to_str().ok()?;
            Some(v.to_string())
        });
        Some((resp.status().as_u16() == hc.expect_status, version))
    };
    match tokio::time::timeout(hc.timeout, attempt).await {
        Ok(Some(seen)) => seen,
        _ => (false, None),
    }
}
