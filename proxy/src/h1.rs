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
//! (`h1/pool.rs`). A keep-alive connection that idles leaves hyper and its buffers
//! ([`HAND_BACK`]); an upgrade (WebSocket) that the backend accepts with 101 is relayed both
//! ways with `copy_bidirectional` once hyper lets go of both connections.

mod pool;
mod request;
mod request_body;
mod response_body;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pingora::protocols::GetSocketDigest;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::edge::{first_byte, ClientStream, ConnPhase, Http1Front, Timeout, DRAIN_IDLE};
use crate::HttpPlane;
use request::{ConnState, Site};
use response_body::RespBody;

/// How long a keep-alive connection may idle inside hyper (holding its read and write
/// buffers) before it is handed back to wait for its next request without them. Short
/// enough that an idle crowd holds next to nothing, long enough that a busy connection never
/// pays for a new hyper connection between its requests.
const HAND_BACK: std::time::Duration = std::time::Duration::from_millis(100);

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
    /// Serve an HTTP/1 connection until it closes. Between requests a connection that idles
    /// for [`HAND_BACK`] leaves hyper (its buffers freed) and waits for its next request's
    /// first byte as before its first, under the keep-alive deadline. A process that starts
    /// draining lets the request in flight finish (answered with `Connection: close`) and
    /// closes a connection still idle after [`DRAIN_IDLE`].
    async fn serve(&self, mut stream: ClientStream, shutdown: &ShutdownWatch) {
        let phase = stream.phase().clone();
        let conn = Arc::new(ConnState::new(phase.clone()));
        let client: Option<IpAddr> = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let mut shutdown = shutdown.clone();
        loop {
            match self.run(stream, &conn, client, &mut shutdown).await {
                End::Closed => return,
                End::Upgraded(client, backend) => return relay(client, backend, &phase).await,
                End::Idle(s) => stream = s,
            }
            let wait = (phase.limits().keepalive_timeout, Timeout::Keepalive);
            if !first_byte(phase.edge(), &mut stream, wait, &shutdown).await {
                return;
            }
        }
    }
}

/// How a run of hyper on a connection ended.
enum End {
    Closed,
    /// Idle: the stream is handed back to wait for its next request.
    Idle(ClientStream),
    /// The backend switched protocols: the client's stream and the backend's.
    Upgraded(ClientStream, OnUpgrade),
}

impl Front {
    /// Serve requests on `stream` with hyper until the connection closes, idles past
    /// [`HAND_BACK`], or is upgraded.
    async fn run(
        &self,
        stream: ClientStream,
        conn: &Arc<ConnState>,
        client: Option<IpAddr>,
        shutdown: &mut ShutdownWatch,
    ) -> End {
        let max_header_bytes = stream.limits().max_header_bytes;
        let (site, state) = (self.site.clone(), conn.clone());
        let svc = service_fn(move |req| -> Handled {
            Box::pin(request::handle(site.clone(), req, state.clone(), client))
        });
        let mut served = Box::new(
            hyper::server::conn::http1::Builder::new()
                .header_read_timeout(None)
                .max_headers(MAX_HEADERS)
                // A head over the listener's limit is refused by admission (431); one much
                // over it, by hyper (431 too) before it is all buffered.
                .max_buf_size((max_header_bytes + 4096).max(64 * 1024))
                .serve_connection(TokioIo::new(stream), svc),
        );
        let mut drain = if *shutdown.borrow() {
            Drain::Draining
        } else {
            Drain::Serving
        };
        let mut handing_back = false;
        let timer = tokio::time::sleep(DRAIN_IDLE);
        tokio::pin!(timer);
        let mut hand_back_at: Option<tokio::time::Instant> = None;
        loop {
            let deadline = match (drain, hand_back_at) {
                (Drain::Draining, _) => Some(timer.deadline()),
                (_, at) => at,
            };
            if let Some(at) = deadline {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
            }
            tokio::select! {
                done = std::future::poll_fn(|cx| served.poll_without_shutdown(cx)) => {
                    if let Err(e) = done {
                        tracing::debug!(listener = %self.site.listener, "client connection: {e}");
                        return End::Closed;
                    }
                    let parts = served.into_parts();
                    let mut stream = parts.io.into_inner();
                    stream.unread(parts.read_buf);
                    if let Some(backend) = conn.take_upgrade() {
                        return End::Upgraded(stream, backend);
                    }
                    if handing_back {
                        return End::Idle(stream);
                    }
                    // Closed as hyper would have closed it, with a shutdown of its write side
                    // (a TLS close_notify) first.
                    let _ = tokio::time::timeout(DRAIN_IDLE, stream.shutdown()).await;
                    return End::Closed;
                }
                _ = conn.phase.went_idle(), if !handing_back && drain == Drain::Serving => {
                    hand_back_at = Some(tokio::time::Instant::now() + HAND_BACK);
                }
                _ = &mut timer, if deadline.is_some() && !handing_back => {
                    if drain == Drain::Draining {
                        // The connection ends now if idle, or after its request in flight.
                        std::pin::Pin::new(&mut *served).graceful_shutdown();
                        drain = Drain::Closing;
                    } else if conn.phase.is_idle() {
                        // Nothing of a next request read: hyper ends at once, and gives back
                        // the stream.
                        std::pin::Pin::new(&mut *served).graceful_shutdown();
                        handing_back = true;
                    }
                    hand_back_at = None;
                }
                _ = shutdown.changed(), if drain == Drain::Serving => {
                    drain = Drain::Draining;
                    timer.as_mut().reset(tokio::time::Instant::now() + DRAIN_IDLE);
                }
            }
        }
    }
}

/// The future of one request, boxed: hyper hands a connection back only when its service's
/// futures are `Unpin`.
type Handled = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<hyper::Response<RespBody>, std::convert::Infallible>,
            > + Send,
    >,
>;

/// Relay an upgraded connection both ways until either side closes; no deadlines of ours on
/// the client's stream from now on.
async fn relay(mut client: ClientStream, backend: OnUpgrade, phase: &ConnPhase) {
    let backend = match backend.await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    phase.upgraded();
    let mut backend = TokioIo::new(backend);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!("upgraded connection: {e}");
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
