//! The client side of each HTTP listener: how many connections it serves and how long a
//! client may take (nginx's `client_header_timeout`, `keepalive_timeout`,
//! `client_body_timeout`; HAProxy's `timeout http-request`, `timeout http-keep-alive`,
//! `maxconn`).
//!
//! pingora 0.9 has no deadline for a whole request head: its read timeout restarts on every
//! read (`read_request_buf` in `pingora-core/src/protocols/http/v1/server.rs`), so a client
//! sending one header byte a second holds its connection for ever, and after the first request
//! on a connection the keep-alive wait is unbounded (`respect_keepalive` sets it to
//! "infinite" for HTTP/1.1). Nor does it cap connections. So each listener's app is an
//! [`EdgeApp`] around pingora's `HttpProxy`: it refuses connections over the cap and wraps
//! every accepted stream in a [`ClientStream`], which fails a read that waits past the
//! connection's current deadline. The proxy hooks move a connection between phases
//! ([`request_started`] when a head has been parsed, [`request_done`] when the response is
//! done), so the deadline is the head's while a head is read, the keep-alive one while the
//! connection idles, and none while a request is served (the body timeout is pingora's read
//! timeout between body reads, set per request from the listener).

mod head_scan;
mod limits;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Peek, Stream, ALPN};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;

pub use limits::{Limits, ListenerEdge, Timeout};
pub use stream::{ClientStream, ConnPhase};

/// How long a draining process keeps an idle keep-alive connection open for its next
/// request (answered with `Connection: close`) before closing it.
pub const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A listener's app: pingora's proxy (or, for HTTP/1 with `http1 = "hyper"`, the hyper
/// front end) behind the connection cap and the client deadlines.
pub struct EdgeApp<SV> {
    proxy: Arc<HttpProxy<SV>>,
    edge: Arc<ListenerEdge>,
    hyper: Option<Arc<dyn Http1Front>>,
}

/// Another front end for a listener's HTTP/1 connections (the hyper one, `crate::h1`),
/// handed each stream once its first byte has come.
#[async_trait]
pub trait Http1Front: Send + Sync {
    /// Serve the connection until it closes.
    async fn serve(&self, stream: ClientStream, shutdown: &ShutdownWatch);
}

impl<SV> EdgeApp<SV> {
    pub fn new(proxy: HttpProxy<SV>, edge: Arc<ListenerEdge>) -> Self {
        EdgeApp {
            proxy: Arc::new(proxy),
            edge,
            hyper: None,
        }
    }

    /// Serve HTTP/1 connections with `front` instead of pingora's proxy.
    pub fn with_http1(mut self, front: Arc<dyn Http1Front>) -> Self {
        self.hyper = Some(front);
        self
    }
}

#[async_trait]
impl<SV> ServerApp for EdgeApp<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.edge.limits();
        // Over the cap the stream is dropped: the client sees the connection closed, and the
        // connections already open are untouched.
        let _slot = self.edge.admit(&limits)?;
        // HTTP/2 multiplexes requests on one connection: the per-request phases do not apply
        // (pingora's h2 keep-alive and stream handling govern it).
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            let stream: Stream =
                Box::new(ClientStream::new(stream, self.edge.clone(), limits, false));
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        if let Some(front) = &self.hyper {
            let mut stream =
                ClientStream::new(stream, self.edge.clone(), limits, true).scan_heads();
            let wait = (limits.header_timeout, Timeout::Header);
            if first_byte(&self.edge, &mut stream, wait, shutdown).await {
                front.serve(stream, shutdown).await;
            }
            return None;
        }
        let mut stream: Stream =
            Box::new(ClientStream::new(stream, self.edge.clone(), limits, true));
        // pingora's own keep-alive loop (`ServerApp for HttpServerApp` in pingora-core's
        // `apps/mod.rs`), with a wait for each request's first byte before a session is
        // made: a connection that has sent nothing holds no session, no head buffer and no
        // proxy future, only its stream.
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut wait = (limits.header_timeout, Timeout::Header);
        loop {
            if !has_pipelined_prefix(settings.as_ref())
                && !first_byte(&self.edge, &mut *stream, wait, shutdown).await
            {
                return None;
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => session.set_keepalive((!*shutdown.borrow()).then_some(60)),
            }
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            let (s, next) = reused.consume();
            stream = s;
            settings = next;
            wait = (limits.keepalive_timeout, Timeout::Keepalive);
        }
    }

    /// Not passed on to pingora's proxy: its cleanup aborts every request whose head is
    /// still being read when the accept loops stop, and a draining process lets those
    /// finish (under the header deadline) instead. The process ends once its last client
    /// connection closes, or at its grace timeout.
    async fn cleanup(&self) {}
}

/// Wait for the next request's first byte (it stays in the stream, peeked), for at most
/// `wait.0`. `false`: the client closed, the time ran out (counted as `wait.1`) or the
/// process drains and the connection stayed idle for [`DRAIN_IDLE`].
///
/// A draining process (stopped, or upgraded: pingora's shutdown watch is set) does not
/// drop an idle keep-alive connection at once, which would fail a request the client is
/// sending at that moment: it waits a little for the next request and answers it with
/// `Connection: close` (pingora turns keep-alive off once the watch is set).
pub async fn first_byte<S: Peek + Send + ?Sized>(
    edge: &ListenerEdge,
    stream: &mut S,
    wait: (std::time::Duration, Timeout),
    shutdown: &ShutdownWatch,
) -> bool {
    let mut byte = [0u8; 1];
    let mut shutdown = shutdown.clone();
    let mut draining = *shutdown.borrow();
    let first = if draining {
        wait.0.min(DRAIN_IDLE)
    } else {
        wait.0
    };
    let sleep = tokio::time::sleep(first);
    tokio::pin!(sleep);
    let peek = stream.try_peek(&mut byte);
    tokio::pin!(peek);
    loop {
        tokio::select! {
            // `Ok(false)`: this stream cannot peek (TLS); pingora's read waits instead,
            // under the stream's deadline.
            peeked = &mut peek => return peeked.is_ok(),
            _ = &mut sleep => {
                if !draining {
                    edge.timed_out(wait.1);
                }
                return false;
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                let soon = tokio::time::Instant::now() + DRAIN_IDLE;
                if soon < sleep.deadline() {
                    sleep.as_mut().reset(soon);
                }
            }
        }
    }
}

/// Whether the previous request left bytes of the next one (pipelined) in `settings`: the
/// next request is then already there, and waiting for a byte from the socket would stall it.
/// pingora 0.9 has no accessor for them (`HttpPersistentSettings::pipelined_prefix` is
/// private), so this reads its `Debug` form; when unsure it says yes, which only costs the
/// early wait.
fn has_pipelined_prefix(settings: Option<&HttpPersistentSettings>) -> bool {
    settings.is_some_and(|s| !format!("{s:?}").contains("pipelined_prefix: None"))
}

/// The client stream of an HTTP/1 session, if it is one of ours.
fn client_stream(session: &pingora::proxy::Session) -> Option<&ClientStream> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<ClientStream>()
}

/// A request head has been parsed: no head deadline while it is served, and the listener's
/// body timeout between body reads.
pub fn request_started(session: &mut pingora::proxy::Session) {
    let body_timeout = client_stream(session).map(|c| {
        c.serving();
        c.limits().body_timeout
    });
    if let Some(t) = body_timeout {
        session.as_downstream_mut().set_read_timeout(Some(t));
    }
}

/// The response is done: the connection idles under the keep-alive deadline until the next
/// request's first byte.
pub fn request_done(session: &pingora::proxy::Session) {
    if let Some(c) = client_stream(session) {
        c.idle();
    }
}

/// Count a stalled request body (pingora reports it as a downstream read timeout).
pub fn body_timed_out(session: &pingora::proxy::Session) {
    if let Some(c) = client_stream(session) {
        c.edge().timed_out(Timeout::Body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `has_pipelined_prefix` reads pingora's `Debug` form: check it against the pingora in use.
    #[tokio::test]
    async fn the_pipelined_prefix_is_seen_in_persistent_settings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(client));
        let session = ServerSession::new_http1(stream);
        let mut settings = HttpPersistentSettings::for_session(&session);
        assert!(!has_pipelined_prefix(Some(&settings)));
        assert!(!has_pipelined_prefix(None));
        settings.set_pipelined_prefix(bytes::BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
        assert!(has_pipelined_prefix(Some(&settings)));
    }
}
