//! [`ClientStream`]: a client connection's stream with a deadline on its reads.
//!
//! The deadline belongs to the connection's phase: reading a head (from accept, or from the
//! first byte after an idle wait, for `header_timeout`), idling between requests (for
//! `keepalive_timeout`), or serving a request (none: pingora's read timeout covers body
//! reads). A read still pending at the deadline fails with `TimedOut`, which pingora treats
//! as a broken connection and closes. The phase is kept in atomics because the proxy hooks
//! reach the stream through a shared reference (`Session::stream()`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::head_scan::HeadScan;
use super::limits::{Limits, ListenerEdge, Timeout};

/// Reading a request head.
const HEAD: u8 = 0;
/// Between requests, before the next one's first byte.
const IDLE: u8 = 1;
/// A request is being served.
const SERVING: u8 = 2;
/// No deadlines (HTTP/2).
const OFF: u8 = 3;

/// Deadlines are kept as nanoseconds after this instant.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos_from_now(d: std::time::Duration) -> u64 {
    let at = Instant::now() + d;
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX)
}

/// A connection's phase and deadline, shared between its [`ClientStream`] and whoever moves
/// it between phases (pingora's hooks reach the stream through the session; the hyper front
/// end, whose codec owns the stream, holds this).
#[derive(Debug)]
pub struct ConnPhase {
    edge: Arc<ListenerEdge>,
    limits: Limits,
    phase: AtomicU8,
    /// Deadline of the current phase, in nanoseconds after [`base`].
    deadline: AtomicU64,
    /// `Content-Length` fields in the current head, when heads are scanned ([`HeadScan`]).
    content_lengths: AtomicU8,
    /// Told at every [`ConnPhase::idle`], for a front end that acts on idle connections.
    went_idle: Notify,
}

impl ConnPhase {
    pub fn edge(&self) -> &ListenerEdge {
        &self.edge
    }

    /// The limits this connection was accepted under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn set_phase(&self, phase: u8, deadline: Option<std::time::Duration>) {
        if self.phase.load(Ordering::Relaxed) == OFF {
            return;
        }
        if let Some(d) = deadline {
            self.deadline.store(nanos_from_now(d), Ordering::Relaxed);
        }
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// A head has been parsed: no deadline of ours while the request is served.
    pub fn serving(&self) {
        self.set_phase(SERVING, None);
    }

    /// The response is done: idle until the next request, for at most `keepalive_timeout`.
    pub fn idle(&self) {
        self.set_phase(IDLE, Some(self.limits.keepalive_timeout));
        self.went_idle.notify_one();
    }

    /// Whether the connection idles: its response is done and nothing of a next request has
    /// been read since.
    pub fn is_idle(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == IDLE
    }

    /// Resolves at the next [`ConnPhase::idle`] (at once if one came since the last wait).
    pub async fn went_idle(&self) {
        self.went_idle.notified().await
    }

    /// The connection was upgraded (WebSocket): no deadlines of ours from now on.
    pub fn upgraded(&self) {
        self.phase.store(OFF, Ordering::Relaxed);
    }

    /// The `Content-Length` fields counted in the head just parsed (0 when the stream does
    /// not scan heads, or the head came pipelined and was not scanned).
    pub fn take_content_lengths(&self) -> u8 {
        self.content_lengths.swap(0, Ordering::Relaxed)
    }

    /// The deadline a pending read waits under, and which timeout it is.
    fn deadline(&self) -> Option<(tokio::time::Instant, Timeout)> {
        let which = match self.phase.load(Ordering::Relaxed) {
            HEAD => Timeout::Header,
            IDLE => Timeout::Keepalive,
            _ => return None,
        };
        let nanos = self.deadline.load(Ordering::Relaxed);
        let at = base() + std::time::Duration::from_nanos(nanos);
        Some((tokio::time::Instant::from_std(at), which))
    }
}

/// A client connection's stream with phase deadlines on its reads.
pub struct ClientStream {
    inner: Stream,
    phase: Arc<ConnPhase>,
    /// The timer of a pending read, made on the first read that has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The scan of the head being read, when heads are scanned.
    scan: Option<HeadScan>,
    /// Bytes read from the socket by a codec that let go of the stream, to be read again
    /// before the socket's ([`ClientStream::unread`]).
    unread: Option<Bytes>,
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("inner", &self.inner)
            .field("listener", &self.phase.edge.name)
            .field("phase", &self.phase.phase.load(Ordering::Relaxed))
            .finish()
    }
}

impl ClientStream {
    /// A freshly accepted stream: its first head is due `header_timeout` after accept.
    /// `deadlines: false` (HTTP/2) turns them off.
    pub fn new(inner: Stream, edge: Arc<ListenerEdge>, limits: Limits, deadlines: bool) -> Self {
        let deadline = nanos_from_now(limits.header_timeout);
        ClientStream {
            inner,
            phase: Arc::new(ConnPhase {
                edge,
                limits,
                phase: AtomicU8::new(if deadlines { HEAD } else { OFF }),
                deadline: AtomicU64::new(deadline),
                content_lengths: AtomicU8::new(0),
                went_idle: Notify::new(),
            }),
            sleep: None,
            scan: None,
            unread: None,
        }
    }

    /// Count the `Content-Length` fields of every head read from the start of its phase
    /// ([`ConnPhase::take_content_lengths`]), for a parser that does not keep them.
    pub fn scan_heads(mut self) -> Self {
        self.scan = Some(HeadScan::new());
        self
    }

    /// The connection's phase, to share with whoever moves it between phases.
    pub fn phase(&self) -> &Arc<ConnPhase> {
        &self.phase
    }

    pub fn edge(&self) -> &ListenerEdge {
        &self.phase.edge
    }

    /// The limits this connection was accepted under.
    pub fn limits(&self) -> &Limits {
        &self.phase.limits
    }

    /// A head has been parsed: no deadline of ours while the request is served.
    pub fn serving(&self) {
        self.phase.serving();
    }

    /// The response is done: idle until the next request, for at most `keepalive_timeout`.
    pub fn idle(&self) {
        self.phase.idle();
    }

    /// Give back bytes read from this stream but not used (a codec's read buffer when it let
    /// go of the stream): the next reads return them first.
    pub fn unread(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.unread = Some(bytes);
        }
    }

    /// Read from the unread bytes, if any are left, else from the stream.
    fn poll_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Some(bytes) = self.unread.as_mut() else {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        };
        let n = bytes.len().min(buf.remaining());
        buf.put_slice(&bytes.split_to(n));
        if bytes.is_empty() {
            self.unread = None;
        }
        Poll::Ready(Ok(()))
    }

    /// Feed newly read bytes to the head scan, in the phases that read a head.
    fn scan_read(&mut self, read: &[u8], phase: u8) {
        let Some(scan) = self.scan.as_mut() else {
            return;
        };
        if phase == IDLE {
            *scan = HeadScan::new();
            self.phase.content_lengths.store(0, Ordering::Relaxed);
        } else if phase != HEAD || scan.done() {
            return;
        }
        let before = scan.found();
        scan.feed(read);
        if scan.found() > before {
            self.phase
                .content_lengths
                .store(scan.found(), Ordering::Relaxed);
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if let Poll::Ready(r) = this.poll_inner(cx, buf) {
            if r.is_ok() && buf.filled().len() > before {
                let phase = this.phase.phase.load(Ordering::Relaxed);
                this.scan_read(&buf.filled()[before..], phase);
                if phase == IDLE {
                    // The next request's first byte: its head is due `header_timeout` from now.
                    this.phase
                        .set_phase(HEAD, Some(this.phase.limits.header_timeout));
                }
            }
            return Poll::Ready(r);
        }
        let Some((at, which)) = this.phase.deadline() else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.phase.edge.timed_out(which);
                // Once is enough: the connection is closed after this error.
                this.phase.phase.store(OFF, Ordering::Relaxed);
                let what = match which {
                    Timeout::Keepalive => "keep-alive connection idle past keepalive_timeout",
                    _ => "request head not complete within header_timeout",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        // `Stream` is a `Box<dyn IO>`: call through to the stream inside.
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if let Some(bytes) = &self.unread {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            return Ok(true);
        }
        self.inner.try_peek(buf).await
    }
}
