//! The pingora server: one proxy service per configured listener.
//!
//! Listeners are bound when the process starts (by the binary, which may have taken them from
//! the process it upgrades: [`crate::takeover`]); routes, pools, weights, timeouts and
//! certificates reload in place through the runtime snapshot. Adding, removing or moving a
//! listener needs a restart or an upgrade, and `/v1/status` says so.
//!
//! pingora runs one thread per core, each a single-threaded tokio runtime (`work_stealing:
//! false`), like nginx's workers and HAProxy's threads: a connection stays on the thread it was
//! given. With one work-stealing runtime instead, tasks and wake-ups move between the threads
//! on every request; the per-thread runtimes served 20-25% more requests/s in the side-by-side
//! benchmark (see BENCHMARKS.md). Upstream connections are pooled per thread too
//! ([`crate::worker::group`]), so a pooled connection is always used by the thread whose reactor
//! registered it.

use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TlsAccept};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use switchyard_config::{Config, Http1Engine};

use crate::edge::{EdgeApp, ListenerEdge};
use crate::h1::Front;
use crate::service::ProxyService;
use crate::takeover::{ServingProbe, SocketSeed};
use crate::HttpPlane;

/// No TLS callbacks: certificates come from our SNI resolver.
struct NoCallbacks;

#[async_trait]
impl TlsAccept for NoCallbacks {}

/// Build a pingora server for the listeners of `config` (the config applied at start-up),
/// serving on `sockets`: one bound, listening, non-blocking socket per listener, by listener
/// name. The receiver hears once every listener service has started (see
/// [`crate::takeover`]).
pub fn build_server(
    plane: Arc<HttpPlane>,
    config: &Config,
    mut sockets: Vec<(String, OwnedFd)>,
    grace: std::time::Duration,
) -> Result<(Server, mpsc::Receiver<()>), String> {
    let conf = ServerConf {
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        // One single-threaded runtime per thread (see the module docs).
        work_stealing: false,
        // pingora sleeps the whole grace period after a graceful stop, even with nothing left
        // in flight: the binary's drain ends the process as soon as the last client
        // connection closes, so this is only the ceiling.
        grace_period_seconds: Some(grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        // A global ceiling on attempts; each route caps its own retries below it.
        max_retries: 12,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut seeded = Vec::new();
    for l in &config.http.listeners {
        let i = sockets
            .iter()
            .position(|(name, _)| *name == l.name)
            .ok_or_else(|| format!("listener {}: no listening socket", l.name))?;
        let (_, fd) = sockets.swap_remove(i);
        seeded.push((l.addr.to_string(), fd));
    }
    let seed = server.add_service(SocketSeed::new(seeded));
    let (probe, serving) = ServingProbe::new();
    let mut listeners = Vec::new();
    for l in &config.http.listeners {
        let logic = ProxyService::new(plane.clone(), &l.name, !l.tls.is_empty());
        let proxy = pingora::proxy::http_proxy(&server.configuration, logic);
        let mut app = EdgeApp::new(proxy, Arc::new(ListenerEdge::new(l, plane.clone())));
        if l.http1 == Http1Engine::Hyper {
            app = app.with_http1(Arc::new(Front::new(
                plane.clone(),
                &l.name,
                !l.tls.is_empty(),
            )));
        }
        let mut svc = Service::new(format!("listener {}", l.name), app);
        let addr = l.addr.to_string();
        let buffers = L4BufferSettings {
            read: Some(l.read_buffer_bytes),
            write: None,
        };
        if l.tls.is_empty() {
            svc.add_listener(ListenerConfig::tcp(addr).l4_buffer(buffers));
        } else {
            let resolver = plane
                .resolver(&l.name)
                .ok_or_else(|| format!("listener {}: no certificates loaded", l.name))?;
            let mut tls =
                TlsSettings::with_callbacks(Box::new(NoCallbacks)).map_err(|e| e.to_string())?;
            tls.set_cert_resolver(resolver);
            tls.enable_h2();
            svc.add_listener(ListenerConfig::tcp(addr).tls(tls).l4_buffer(buffers));
        }
        let handle = server.add_service(svc);
        handle.add_dependency(&seed);
        listeners.push(handle);
    }
    server.add_service(probe).add_dependencies(&listeners);
    Ok((server, serving))
}
