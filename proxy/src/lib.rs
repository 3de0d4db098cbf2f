//! Switchyard's HTTP data plane, on pingora.
//!
//! [`HttpPlane::build`] turns a validated config into an [`HttpRuntime`] (route table,
//! upstreams with resolved backends, TLS certificates) without side effects;
//! [`HttpPlane::swap`] makes it live. The runtime sits behind one `ArcSwapOption`, loaded once
//! per request, so a reload never disturbs a request in flight. State that must survive
//! reloads (in-flight counts, passive health, retry budgets) lives in the [`Registry`], keyed
//! by backend address.
//!
//! We do not use pingora's `LoadBalancer`: its backends' identity includes the weight (a
//! weight change resets health), it has no least-connections, and blue/green pools must be
//! chosen before the backend. Selection over our own snapshot is simpler to reason about.
//!
//! The HTTP/1 request path (issue 12), decided by a spike: a request loop written directly on
//! pingora-core's HTTP/1 server and client sessions (`benches/refs`, `ref-h1loop`: one task
//! per connection, no channels) cost **1.74x HAProxy's CPU per request** (91 against 53 µs,
//! 3-byte responses; 2.09x at 4 KiB), against **1.11x** (1.28x) for a minimal proxy on hyper's
//! HTTP/1 codec and 2.36x for pingora-proxy with no features (one interleaved run on 2 shared
//! cores, 2026-12-07, BENCHMARKS.md "HTTP/1 request path: the spike"). The loop's gap is in
//! pingora-core's socket handling, not in the proxy layer: 8.6 system calls per request
//! against hyper's 4.5 (7.3 with pingora's 64 KiB read buffer). So HTTP/1 connections are to
//! be served with hyper's codec, pingora keeping the listeners, TLS and SNI, HTTP/2, the
//! upstream pool and the graceful upgrade; routing, balancing, health and retries stay one
//! shared path. hyper is not lean per connection by itself (24-26 KB per idle connection
//! against our edge's 14-16 and HAProxy's 1.1): the edge's wait for the first byte stays in
//! front of it. The hyper front end is [`h1`], chosen per listener with `http1 = "hyper"`;
//! the default is still pingora-proxy's `ProxyHttp` (`docs/HTTP1_PATH.md`).
//!
//! Layout of the request path: the policy (admission, balancing per attempt, forwarded
//! headers, retry verdicts, passive health feeding, metrics and the access log line) is in
//! [`exchange`], plain functions over `http::request::Parts` and plain types; [`service`] is
//! the pingora `ProxyHttp` adapter that calls them, [`h1`] the hyper HTTP/1 adapter that
//! calls them too, [`edge`] the listener's `ServerApp` in front of both.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod balance;
pub mod edge;
pub mod exchange;
pub mod framing;
pub mod h1;
pub mod headers;
pub mod health;
pub mod latency;
pub mod registry;
mod request_metrics;
pub mod routing;
mod runtime;
pub mod server;
pub mod service;
mod status;
pub mod takeover;
pub mod tls;
mod worker;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use switchyard_config::{BackendState as AdminState, Config};

use access_log::AccessLogs;
use balance::{PoolRuntime, UpstreamRuntime};
pub use registry::Registry;
use request_metrics::RouteMetrics;
pub use routing::RouteTable;
pub use runtime::HttpRuntime;
use tls::{CertSet, SniResolver};

/// Why a config cannot be turned into an HTTP runtime.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The HTTP plane: the live runtime and the state that outlives reloads.
#[derive(Debug, Default)]
pub struct HttpPlane {
    /// `None` until the first config is applied.
    runtime: ArcSwapOption<HttpRuntime>,
    pub registry: Registry,
    /// SNI resolvers of the listeners that are serving, by listener name.
    resolvers: DashMap<String, Arc<SniResolver>>,
    /// The listeners bound at start-up: `(name, addr, tls)`.
    serving: std::sync::Mutex<Vec<(String, SocketAddr, bool, switchyard_config::Http1Engine)>>,
    /// Client connections open now, on every listener (a draining process exits when it
    /// reaches 0).
    open_clients: std::sync::atomic::AtomicUsize,
    /// The process drains: every response says `Connection: close`.
    draining: std::sync::atomic::AtomicBool,
    /// The listeners' access log writers, reused across reloads.
    access_logs: AccessLogs,
}

impl HttpPlane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a runtime for `config`: resolve backend addresses, load certificates, open the
    /// access log files (a new file starts its writer). No effect on the running runtime.
    pub fn build(&self, config: &Arc<Config>) -> Result<HttpRuntime, BuildError> {
        let mut certs = HashMap::new();
        for (i, l) in config.http.listeners.iter().enumerate() {
            if !l.tls.is_empty() {
                let set = CertSet::load(&l.tls).map_err(|(j, message)| BuildError::Invalid {
                    path: format!("http.listeners[{i}].tls[{j}]"),
                    message,
                })?;
                certs.insert(l.name.clone(), Arc::new(set));
            }
        }
        let mut access_logs = Vec::new();
        for (i, l) in config.http.listeners.iter().enumerate() {
            if let Some(cfg) = &l.access_log {
                let log = self.access_logs.listener_log(&l.name, cfg).map_err(|e| {
                    BuildError::Invalid {
                        path: format!("http.listeners[{i}].access_log.path"),
                        message: format!("cannot open the access log: {e}"),
                    }
                })?;
                access_logs.push((l.name.clone(), log));
            }
        }
        let mut upstreams = HashMap::new();
        for (name, up) in &config.http.upstreams {
            let mut pools = Vec::new();
            for (pname, pool) in &up.pools {
                let mut backends = Vec::new();
                for (j, b) in pool.backends.iter().enumerate() {
                    let addr = b.addr.to_string();
                    let socket = resolve(&addr).map_err(|message| BuildError::Invalid {
                        path: format!("http.upstreams.{name}.pools.{pname}.backends[{j}]"),
                        message,
                    })?;
                    let state = self.registry.backend(&addr);
                    backends.push(balance::entry(addr, socket, b.weight, b.state, state));
                }
                let traffic = self.registry.pool(name, pname);
                pools.push(PoolRuntime::new(pname, pool.weight, backends, traffic));
            }
            upstreams.insert(
                name.clone(),
                UpstreamRuntime {
                    name: name.clone(),
                    config: up.clone(),
                    pools,
                    budget: self.registry.budget(name),
                },
            );
        }
        let route_metrics = config
            .http
            .routes
            .iter()
            .map(|r| RouteMetrics::new(r, upstreams.get(&r.upstream)))
            .collect();
        Ok(HttpRuntime {
            routes: RouteTable::new(&config.http.routes),
            upstreams,
            route_metrics,
            certs,
            access_logs,
            config: config.clone(),
        })
    }

    /// Make `runtime` the live one: new certificates go to the serving listeners, backends
    /// that come back from a drain (or are new) start their slow-start ramp.
    pub fn swap(&self, runtime: HttpRuntime) {
        let now = Instant::now();
        let previous = self.runtime.load_full();
        for up in runtime.upstreams.values() {
            for pool in &up.pools {
                for b in &pool.backends {
                    let before = previous.as_ref().map(|p| p.admin_state(&up.name, &b.addr));
                    let ramp = match before {
                        Some(Some(AdminState::Drain)) => !b.draining,
                        Some(None) => true,
                        _ => false,
                    };
                    if ramp && up.config.slow_start.is_some() {
                        b.state.start_ramp(now);
                    }
                    if up.config.health_check.is_none() {
                        b.state.clear_active();
                    }
                }
            }
        }
        for (name, set) in &runtime.certs {
            if let Some(r) = self.resolvers.get(name) {
                r.replace(set.clone());
            }
        }
        self.runtime.store(Some(Arc::new(runtime)));
    }

    /// Record the listeners the server was started with (they cannot change without a restart).
    pub fn mark_serving(&self, listeners: &[switchyard_config::Listener]) {
        let mut s = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        *s = listeners
            .iter()
            .map(|l| (l.name.clone(), l.addr, !l.tls.is_empty(), l.http1))
            .collect();
    }

    /// Client connections open now, on every listener.
    pub fn open_client_connections(&self) -> usize {
        self.open_clients.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The process stops accepting and drains: from now on every response closes its
    /// connection (`Connection: close`), including those of requests already in flight.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether [`HttpPlane::drain`] was called.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn client_opened(&self) {
        self.open_clients
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn client_closed(&self) {
        self.open_clients
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The listeners being served.
    pub fn serving(&self) -> Vec<(String, SocketAddr, bool, switchyard_config::Http1Engine)> {
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The live runtime, once a config has been applied.
    pub fn runtime(&self) -> Option<Arc<HttpRuntime>> {
        self.runtime.load_full()
    }

    /// Attempt counters of a pool, for blue/green flip verification.
    pub fn pool_counts(&self, upstream: &str, pool: &str) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let rt = self.runtime.load_full()?;
        let up = rt.upstreams.get(upstream)?;
        let p = up.pools.iter().find(|p| p.name == pool)?;
        Some((
            p.traffic.requests.load(Relaxed),
            p.traffic.errors.load(Relaxed),
        ))
    }

    /// A backend's live state, for rollouts: its in-flight, attempt and failure counts (all
    /// upstreams together) and its latest active health check.
    pub fn backend_state(&self, addr: &str) -> Option<Arc<registry::BackendState>> {
        self.registry.existing_backend(addr)
    }

    /// The SNI resolver for a listener, created with the certificates of the live runtime.
    pub fn resolver(&self, listener: &str) -> Option<Arc<SniResolver>> {
        let rt = self.runtime.load_full()?;
        let set = rt.certs.get(listener)?.clone();
        let r = self
            .resolvers
            .entry(listener.to_string())
            .or_insert_with(|| Arc::new(SniResolver::new(set)))
            .clone();
        Some(r)
    }

    /// Reopen every access log file (SIGUSR1, after logrotate renamed them).
    pub fn reopen_access_logs(&self) -> usize {
        self.access_logs.reopen()
    }

    /// Write the access log lines still buffered, waiting up to `timeout` (at shutdown).
    pub fn flush_access_logs(&self, timeout: std::time::Duration) {
        self.access_logs.flush(timeout)
    }

    /// State for `/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        status::status(self.runtime(), self.serving())
    }
}

/// Resolve `host:port` once, when the config is applied.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}
