//! The hyper HTTP/1 front end (issue 12, `docs/HTTP1_PATH.md`): a listener whose `http1` is
//! `"hyper"` serves its HTTP/1 connections with hyper's codec instead of pingora-proxy's,
//! over the same policy ([`crate::exchange`]) that [`crate::service`] calls for pingora.
//! pingora still accepts, terminates TLS (with our SNI resolver) and serves HTTP/2;
//! [`crate::edge::EdgeApp`] hands this front end an HTTP/1 stream once it has sent its first
//! byte, so a connection that never sends holds no hyper state. The stream stays a
//! [`ClientStream`]: its header deadline, keep-alive deadline and the connection cap work as
//! on pingora's path, and it counts each head's `Content-Length` fields, which hyper's
//! parser does not keep.
//!
//! Upstream, each proxy thread keeps its own pool of hyper client connections
//! (`h1/pool.rs`). An upgrade (WebSocket) that the backend accepts with 101 is relayed both
//! ways with `copy_bidirectional` once hyper lets go of both connections.

mod pool;
mod request;
mod request_body;
mod response_body;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora::protocols::GetSocketDigest;
use pingora::server::ShutdownWatch;

use crate::edge::{ClientStream, Http1Front, DRAIN_IDLE};
use crate::HttpPlane;
use request::Site;

/// Header fields hyper parses per request head at most (pingora's limit; hyper's default
/// is 100). More get 431.
const MAX_HEADERS: usize = 256;

/// The hyper front end of one listener.
pub struct Front {
    site: Arc<Site>,
}

impl Front {
    pub fn new(plane: Arc<HttpPlane>, listener: &str, tls: bool) -> Self {
        Front {
            site: Arc::new(Site {
                plane,
                listener: Arc::from(listener),
                scheme: if tls { "https" } else { "http" },
            }),
        }
    }
}

#[async_trait]
impl Http1Front for Front {
    /// Serve an HTTP/1 connection until it closes. A process that starts draining lets the
    /// request in flight finish (answered with `Connection: close`) and closes a connection
    /// still idle after [`DRAIN_IDLE`].
    async fn serve(&self, stream: ClientStream, shutdown: &ShutdownWatch) {
        let conn = stream.phase().clone();
        let client: Option<IpAddr> = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let max_header_bytes = stream.limits().max_header_bytes;
        let front = self.site.clone();
        let svc = service_fn(move |req| request::handle(front.clone(), req, conn.clone(), client));
        let served = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .max_headers(MAX_HEADERS)
            // A head over the listener's limit is refused by admission (431); one much over
            // it, by hyper (431 too) before it is all buffered.
            .max_buf_size((max_header_bytes + 4096).max(64 * 1024))
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        tokio::pin!(served);
        let mut shutdown = shutdown.clone();
        let mut state = if *shutdown.borrow() {
            Drain::Draining
        } else {
            Drain::Serving
        };
        let drain = tokio::time::sleep(DRAIN_IDLE);
        tokio::pin!(drain);
        loop {
            tokio::select! {
                done = &mut served => {
                    if let Err(e) = done {
                        tracing::debug!(listener = %self.site.listener, "client connection: {e}");
                    }
                    return;
                }
                _ = shutdown.changed(), if state == Drain::Serving => {
                    state = Drain::Draining;
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_IDLE);
                }
                _ = &mut drain, if state == Drain::Draining => {
                    // The connection ends now if idle, or after its request in flight.
                    served.as_mut().graceful_shutdown();
                    state = Drain::Closing;
                }
            }
        }
    }
}

/// Where a connection is in the process's drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    Serving,
    /// The process drains: the connection gets [`DRAIN_IDLE`] more.
    Draining,
    /// Told to close once its request in flight (if any) is answered.
    Closing,
}
