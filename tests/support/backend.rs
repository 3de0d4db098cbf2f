//! Real HTTP backends for the proxy tests: small hyper servers on `127.0.0.1:0`, running on
//! one tokio runtime shared by the test binary, whose behaviour a test turns while they run.
//!
//! A [`Backend`] answers every request with its name (header `x-backend` and the body), the
//! status set by [`Backend::set_status`], after the delay set by [`Backend::set_delay`] (or
//! `?delay_ms=N` on the request). It counts requests per method, keeps the headers of the
//! last one and the `X-Request-Id` of every one. Its health path (`/health`) answers [`Backend::set_health`]'s status and is
//! counted apart, so active health checks never show up as traffic. [`Backend::stop`] closes
//! the listener *and* every open connection (a crashed server, as the proxy sees it), and
//! [`Backend::restart`] listens on the same port again.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The path a backend answers with its health status.
pub const HEALTH_PATH: &str = "/health";

/// The runtime every backend (and the async test clients) of this test binary run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-backends")
            .enable_all()
            .build()
            .expect("building the backends' runtime")
    })
}

/// What a backend does and has seen; shared with its connection tasks.
#[derive(Debug)]
struct Behaviour {
    name: String,
    status: AtomicU16,
    health: AtomicU16,
    delay_ms: AtomicU64,
    in_flight: AtomicU64,
    /// Requests waiting out their artificial delay right now.
    delayed: AtomicU64,
    health_checks: AtomicU64,
    /// Requests per method, health checks excluded.
    methods: Mutex<HashMap<String, u64>>,
    last_headers: Mutex<Option<HeaderMap>>,
    /// Path and query, and `X-Request-Id`, of every request (health checks excluded).
    request_ids: Mutex<Vec<(String, Option<String>)>>,
}

/// A running accept loop: tell it to stop, then wait for it.
struct Serving {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One test backend. Dropping it stops it.
pub struct Backend {
    addr: SocketAddr,
    behaviour: Arc<Behaviour>,
    serving: Mutex<Option<Serving>>,
}

impl Backend {
    /// Start a backend called `name` on a free port; it answers 200 at once.
    pub fn start(name: &str) -> anyhow::Result<Backend> {
        let listener = runtime()
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("binding a backend")?;
        let addr = listener.local_addr()?;
        let behaviour = Arc::new(Behaviour {
            name: name.to_string(),
            status: AtomicU16::new(200),
            health: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            methods: Mutex::new(HashMap::new()),
            last_headers: Mutex::new(None),
            request_ids: Mutex::new(Vec::new()),
        });
        let backend = Backend {
            addr,
            behaviour,
            serving: Mutex::new(None),
        };
        backend.serve(listener);
        Ok(backend)
    }

    /// `n` backends called `{prefix}1`..`{prefix}n`.
    pub fn start_many(prefix: &str, n: usize) -> anyhow::Result<Vec<Backend>> {
        (1..=n)
            .map(|i| Backend::start(&format!("{prefix}{i}")))
            .collect()
    }

    fn serve(&self, listener: TcpListener) {
        let (stop, stopped) = watch::channel(false);
        let task = runtime().spawn(accept_loop(listener, self.behaviour.clone(), stopped));
        *lock(&self.serving) = Some(Serving { stop, task });
    }

    pub fn name(&self) -> &str {
        &self.behaviour.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:PORT"`, as the config and `/v1/status` write it.
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }

    /// Answer every request (but the health path) with `status`.
    pub fn set_status(&self, status: u16) {
        self.behaviour.status.store(status, SeqCst);
    }

    /// Answer the health path with `status`.
    pub fn set_health(&self, status: u16) {
        self.behaviour.health.store(status, SeqCst);
    }

    /// Wait this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        self.behaviour
            .delay_ms
            .store(delay.as_millis() as u64, SeqCst);
    }

    /// Requests seen with `method` (health checks excluded).
    pub fn count(&self, method: &str) -> u64 {
        lock(&self.behaviour.methods)
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// Requests seen, any method (health checks excluded).
    pub fn total(&self) -> u64 {
        lock(&self.behaviour.methods).values().sum()
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> u64 {
        self.behaviour.in_flight.load(SeqCst)
    }

    /// Requests waiting out their delay right now (slow requests in flight).
    pub fn delayed(&self) -> u64 {
        self.behaviour.delayed.load(SeqCst)
    }

    pub fn health_checks(&self) -> u64 {
        self.behaviour.health_checks.load(SeqCst)
    }

    /// The headers of the last request (health checks excluded).
    /// `(path and query, X-Request-Id)` of every request it was sent, in arrival order.
    pub fn request_ids(&self) -> Vec<(String, Option<String>)> {
        lock(&self.behaviour.request_ids).clone()
    }

    pub fn last_headers(&self) -> Option<HeaderMap> {
        lock(&self.behaviour.last_headers).clone()
    }

    /// Close the listener and every open connection, and wait until they are closed.
    pub fn stop(&self) {
        if let Some(s) = lock(&self.serving).take() {
            let _ = s.stop.send(true);
            let _ = runtime().block_on(s.task);
        }
    }

    /// Listen on the same port again (after [`Backend::stop`]).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match runtime().block_on(TcpListener::bind(self.addr)) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("re-binding backend {}", self.addr))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.serve(listener);
        Ok(())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accept connections until told to stop; then drop the listener and every connection.
async fn accept_loop(
    listener: TcpListener,
    behaviour: Arc<Behaviour>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let behaviour = behaviour.clone();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(behaviour.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Counts one in a gauge of a backend until dropped (also when the connection is cut
/// mid-answer and the handler is dropped).
struct Held(Arc<Behaviour>, fn(&Behaviour) -> &AtomicU64);

impl Held {
    fn new(b: &Arc<Behaviour>, gauge: fn(&Behaviour) -> &AtomicU64) -> Held {
        gauge(b).fetch_add(1, SeqCst);
        Held(b.clone(), gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, SeqCst);
    }
}

async fn handle(
    b: Arc<Behaviour>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == HEALTH_PATH {
        b.health_checks.fetch_add(1, SeqCst);
        return Ok(reply(&b, b.health.load(SeqCst)));
    }
    let _in_flight = Held::new(&b, |b| &b.in_flight);
    *lock(&b.methods)
        .entry(req.method().as_str().to_string())
        .or_default() += 1;
    *lock(&b.last_headers) = Some(req.headers().clone());
    lock(&b.request_ids).push((
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    ));
    let delay = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| b.delay_ms.load(SeqCst));
    // Read the whole body, as a real server would, before answering.
    let _ = req.into_body().collect().await;
    if delay > 0 {
        let _delayed = Held::new(&b, |b| &b.delayed);
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    Ok(reply(&b, b.status.load(SeqCst)))
}

fn reply(b: &Behaviour, status: u16) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{}\n", b.name))));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp.headers_mut().insert(
        "x-backend",
        http::HeaderValue::from_str(&b.name).unwrap_or(http::HeaderValue::from_static("?")),
    );
    resp
}
