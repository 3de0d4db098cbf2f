//! The request body of the hyper front end, as it goes upstream ([`ReqBody`]): gathered whole
//! (up to the 64 KiB retry buffer, so another attempt can send it again), or that buffer's
//! bytes followed by the rest streamed from the client, counted against the route's limit
//! and under the listener's body timeout. Why a body could not be read ([`BodyFault`]) is
//! the status the client is answered with.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

use crate::edge::{ConnPhase, Timeout};
use crate::exchange::{self, Exchange};

/// What a request body is held to while it is gathered for retries (pingora's retry buffer).
pub const RETRY_BUFFER: usize = 64 * 1024;

/// Boxed errors, as hyper takes them from bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// Nothing came for the listener's `body_timeout`: 408.
    TimedOut = 1,
    /// Over the route's `max_body_bytes`: 413.
    TooLarge = 2,
    /// Bad framing (a chunk hyper's decoder refuses, such as a bare-LF chunk extension): 400.
    Invalid = 3,
    /// The client closed before the body ended.
    Gone = 4,
}

impl BodyFault {
    fn from_u8(v: u8) -> Option<BodyFault> {
        [
            BodyFault::TimedOut,
            BodyFault::TooLarge,
            BodyFault::Invalid,
            BodyFault::Gone,
        ]
        .into_iter()
        .find(|f| *f as u8 == v)
    }

    fn of(e: &hyper::Error) -> BodyFault {
        if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            BodyFault::Gone
        } else {
            BodyFault::Invalid
        }
    }

    /// The status to answer with (0: none, the client is gone).
    pub fn status(self) -> u16 {
        match self {
            BodyFault::TimedOut => 408,
            BodyFault::TooLarge => 413,
            BodyFault::Invalid => 400,
            BodyFault::Gone => 0,
        }
    }
}

impl std::fmt::Display for BodyFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body: {self:?}")
    }
}

impl std::error::Error for BodyFault {}

/// A request body as gathered before the first attempt.
pub struct Gathered {
    /// Its first bytes, all of them when `rest` is `None`.
    pub head: Bytes,
    /// The part not yet read, when the body outgrew the retry buffer.
    pub rest: Option<Incoming>,
}

/// Read `body` into the retry buffer, counting every chunk against the route's limit
/// ([`exchange::count_body`]), each read under `timeout`.
pub async fn gather(
    mut body: Incoming,
    ex: &mut Exchange,
    timeout: Duration,
    conn: &ConnPhase,
) -> Result<Gathered, BodyFault> {
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    while !body.is_end_stream() {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => {
                conn.edge().timed_out(Timeout::Body);
                return Err(BodyFault::TimedOut);
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyFault::of(&e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if !exchange::count_body(ex, data.len()) {
            return Err(BodyFault::TooLarge);
        }
        // One chunk is kept as it came; more are copied into one buffer.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
        let held = first.as_ref().map_or(buf.len(), Bytes::len);
        if held >= RETRY_BUFFER && !body.is_end_stream() {
            return Ok(Gathered {
                head: first.unwrap_or_else(|| buf.freeze()),
                rest: Some(body),
            });
        }
    }
    Ok(Gathered {
        head: first.unwrap_or_else(|| buf.freeze()),
        rest: None,
    })
}

/// The request body sent upstream.
pub enum ReqBody {
    /// The whole body (possibly empty), sent again on a retry.
    Full(Option<Bytes>),
    /// The retry buffer's bytes, then the rest from the client.
    Stream(Box<Streamed>),
}

/// A body streamed from the client to the backend.
pub struct Streamed {
    head: Option<Bytes>,
    rest: Incoming,
    /// Bytes the route's limit still allows.
    allowance: u64,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Where the fault is left for the request's handler, which answers it.
    fault: Arc<AtomicU8>,
    conn: Arc<ConnPhase>,
}

impl ReqBody {
    /// A body of `head` then `rest`, within `allowance` more bytes, each read under `timeout`.
    /// The second value reads the fault that ended the body, if one did.
    pub fn streamed(
        head: Bytes,
        rest: Incoming,
        allowance: u64,
        timeout: Duration,
        conn: Arc<ConnPhase>,
    ) -> (ReqBody, FaultSlot) {
        let fault = Arc::new(AtomicU8::new(0));
        let body = Streamed {
            head: (!head.is_empty()).then_some(head),
            rest,
            allowance,
            timeout,
            sleep: None,
            fault: fault.clone(),
            conn,
        };
        (ReqBody::Stream(Box::new(body)), FaultSlot(fault))
    }
}

/// The fault a streamed request body ended with.
#[derive(Clone, Default)]
pub struct FaultSlot(Arc<AtomicU8>);

impl FaultSlot {
    pub fn get(&self) -> Option<BodyFault> {
        BodyFault::from_u8(self.0.load(Ordering::Relaxed))
    }
}

impl Streamed {
    fn fail(&mut self, fault: BodyFault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.fault.store(fault as u8, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(fault))))
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let s = match self.get_mut() {
            ReqBody::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream(s) => s,
        };
        if let Some(head) = s.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        loop {
            match Pin::new(&mut s.rest).poll_frame(cx) {
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return s.fail(BodyFault::of(&e)),
                Poll::Ready(Some(Ok(frame))) => {
                    s.sleep = None;
                    // Trailers are not forwarded: on to the next frame.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match s.allowance.checked_sub(data.len() as u64) {
                        Some(left) => s.allowance = left,
                        None => return s.fail(BodyFault::TooLarge),
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Pending => {
                    let timeout = s.timeout;
                    let sleep = s
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(sleep.as_mut().poll(cx));
                    s.conn.edge().timed_out(Timeout::Body);
                    return s.fail(BodyFault::TimedOut);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream(s) => s.head.is_none() && s.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream(s) => {
                let head = s.head.as_ref().map_or(0, |h| h.len() as u64);
                let rest = s.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + head);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}
