//! The response body of the hyper front end, as it goes to the client ([`RespBody`]): the
//! proxy's own short answers, or the backend's body passed on (gzipped on the way when the
//! route and the client want it). When hyper drops it (written, or the client gone) the
//! request is finished ([`exchange::finish`]) and the connection idles under its keep-alive
//! deadline; a backend body read to its end gives its connection back to the pool.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pingora::protocols::http::compression::ResponseCompressionCtx;

use super::pool::{self, Upstream};
use crate::edge::ConnPhase;
use crate::exchange::{self, Exchange, Summary};

/// What finishing a request needs, held by its response body until hyper drops it.
pub struct Finish {
    pub ex: Exchange,
    pub head: Parts,
    pub listener: Arc<str>,
    pub client: Option<IpAddr>,
    pub status: u16,
    pub conn: Arc<ConnPhase>,
}

/// A frame of a body, as `poll_frame` gives it.
type Polled = Option<Result<Frame<Bytes>, hyper::Error>>;

/// The response body sent to the client.
pub struct RespBody {
    kind: Kind,
    bytes_sent: u64,
    finish: Option<Box<Finish>>,
    /// The gzip encoder the body goes through (pingora's, as on its own path), in its body
    /// phase; `None` once the body has ended.
    gzip: Option<Box<ResponseCompressionCtx>>,
}

enum Kind {
    Full(Option<Bytes>),
    /// The backend's body, and its connection, which goes back to the pool at the end.
    Upstream(Incoming, Option<Upstream>),
}

impl RespBody {
    /// A short answer of the proxy's own.
    pub fn full(body: Bytes, finish: Finish) -> Self {
        RespBody {
            kind: Kind::Full((!body.is_empty()).then_some(body)),
            bytes_sent: 0,
            finish: Some(Box::new(finish)),
            gzip: None,
        }
    }

    /// The backend's response body, read from `up` (`None`: the connection is not to go
    /// back to the pool), through `gzip` (an encoder whose
    /// response header phase is done) if given.
    pub fn upstream(
        body: Incoming,
        up: Option<Upstream>,
        finish: Finish,
        gzip: Option<Box<ResponseCompressionCtx>>,
    ) -> Self {
        RespBody {
            kind: Kind::Upstream(body, up),
            bytes_sent: 0,
            finish: Some(Box::new(finish)),
            gzip,
        }
    }

    /// The next frame through the gzip encoder: `None` when it has nothing yet to give
    /// (ask the backend's body again), and at the end its last bytes.
    fn gzipped(&mut self, polled: Polled, end: bool) -> Option<Poll<Polled>> {
        let gz = self.gzip.as_mut()?;
        let data = match &polled {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(d) => Some(d),
                None => return Some(Poll::Ready(polled)), // trailers
            },
            Some(Err(_)) => return Some(Poll::Ready(polled)),
            None => None,
        };
        let out = gz.response_body_filter(data, end);
        if end {
            self.gzip = None;
        }
        match out.filter(|b| !b.is_empty()) {
            Some(b) => {
                self.bytes_sent += b.len() as u64;
                Some(Poll::Ready(Some(Ok(Frame::data(b)))))
            }
            None if end => Some(Poll::Ready(None)),
            None => None,
        }
    }

    /// The backend's body ended: its connection can serve another request.
    fn upstream_done(&mut self) {
        let Kind::Upstream(_, up) = &mut self.kind else {
            return;
        };
        if let Some(up) = up.take() {
            pool::checkin(up);
            if let Some(f) = self.finish.as_mut() {
                f.ex.upstream_responded(Instant::now());
            }
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Polled> {
        let this = self.get_mut();
        loop {
            let (polled, end) = match &mut this.kind {
                Kind::Full(b) => {
                    return Poll::Ready(b.take().map(|b| {
                        this.bytes_sent += b.len() as u64;
                        Ok(Frame::data(b))
                    }))
                }
                Kind::Upstream(body, _) => {
                    let polled = ready!(Pin::new(&mut *body).poll_frame(cx));
                    let end = polled.is_none() || body.is_end_stream();
                    (polled, end)
                }
            };
            if end {
                this.upstream_done();
            }
            if this.gzip.is_some() {
                match this.gzipped(polled, end) {
                    Some(ready) => return ready,
                    None => continue,
                }
            }
            if let Some(Ok(frame)) = &polled {
                if let Some(d) = frame.data_ref() {
                    this.bytes_sent += d.len() as u64;
                }
            }
            return Poll::Ready(polled);
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(b, _) => self.gzip.is_none() && b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(_, _) if self.gzip.is_some() => SizeHint::default(),
            Kind::Upstream(b, _) => b.size_hint(),
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if matches!(&self.kind, Kind::Upstream(b, Some(_)) if b.is_end_stream()) {
            // An empty body (a 204, or a HEAD's) that hyper never polled.
            self.upstream_done();
        }
        let Some(mut f) = self.finish.take() else {
            return;
        };
        let summary = Summary {
            listener: &f.listener,
            head: &f.head,
            client: f.client,
            status: f.status,
            bytes_sent: self.bytes_sent,
        };
        exchange::finish(&mut f.ex, &summary);
        f.conn.idle();
    }
}
