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

mod limits;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;

pub use limits::{Limits, ListenerEdge, Timeout};
pub use stream::ClientStream;

/// A listener's app: pingora's proxy behind the connection cap and the client deadlines.
pub struct EdgeApp<SV> {
    proxy: Arc<HttpProxy<SV>>,
    edge: Arc<ListenerEdge>,
}

impl<SV> EdgeApp<SV> {
    pub fn new(proxy: HttpProxy<SV>, edge: Arc<ListenerEdge>) -> Self {
        EdgeApp {
            proxy: Arc::new(proxy),
            edge,
        }
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
        // Over the cap the stream is dropped: the client sees the connection closed, and the
        // connections already open are untouched.
        let limits = self.edge.limits();
        let _slot = self.edge.admit(&limits)?;
        // HTTP/2 multiplexes requests on one connection: the per-request phases do not apply
        // (pingora's h2 keep-alive and stream handling govern it).
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let stream: Stream = Box::new(ClientStream::new(stream, self.edge.clone(), limits, !h2));
        ServerApp::process_new(&self.proxy, stream, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
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
