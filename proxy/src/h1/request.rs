//! One request on the hyper front end: the adapter from hyper's `Request` to the shared
//! policy in [`crate::exchange`], in the order [`crate::service`] calls it for pingora.
//! [`exchange::admit`] (answering here what the proxy answers itself), the body gathered into
//! the retry buffer under [`exchange::count_body`], then per attempt [`exchange::pick`],
//! [`exchange::rewrite_request`], a pooled upstream connection, and [`exchange::judge`] of
//! its outcome; [`exchange::finish`] runs when hyper drops the response body
//! ([`super::response_body::RespBody`]). What is hyper's alone stays here: restoring the
//! `Content-Length` fields hyper's parser dropped, the hop-by-hop strip of the upstream
//! request and of the response, error codes from hyper's errors, the draining
//! `Connection: close`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue, InvalidHeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::compression::{Algorithm, ResponseCompressionCtx};

use super::pool::{self, Upstream};
use super::request_body::{self as body, FaultSlot, Gathered, ReqBody};
use super::response_body::{Finish, RespBody};
use crate::edge::ConnPhase;
use crate::exchange::{self, Exchange, NoTarget, Outcome, Replay, Reply, UpstreamHost, Verdict};
use crate::headers;
use crate::HttpPlane;

/// The listener a request came in on.
pub(super) struct Site {
    pub(super) plane: Arc<HttpPlane>,
    pub(super) listener: Arc<str>,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub(super) scheme: &'static str,
}

/// A client connection as its requests see it: its phase, and the backend's side of an
/// upgrade the connection's run of hyper is to relay once it ends.
pub(super) struct ConnState {
    pub(super) phase: Arc<ConnPhase>,
    upgrade: std::sync::Mutex<Option<OnUpgrade>>,
}

impl ConnState {
    pub(super) fn new(phase: Arc<ConnPhase>) -> Self {
        ConnState {
            phase,
            upgrade: std::sync::Mutex::new(None),
        }
    }

    /// The backend's side of the upgrade the last response switched to, if it did.
    pub(super) fn take_upgrade(&self) -> Option<OnUpgrade> {
        self.upgrade
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The request's state on its way: what finishing it needs, and how to answer.
struct Req<'a> {
    front: &'a Site,
    conn: Arc<ConnPhase>,
    client: Option<IpAddr>,
}

/// Serve one request.
pub(super) async fn handle(
    front: Arc<Site>,
    req: Request<Incoming>,
    state: Arc<ConnState>,
    client: Option<IpAddr>,
) -> Result<Response<RespBody>, std::convert::Infallible> {
    let conn = state.phase.clone();
    conn.serving();
    let started = Instant::now();
    let content_lengths = conn.take_content_lengths();
    let upgrade = wants_upgrade(&req).then_some(state);
    let (mut head, body) = req.into_parts();
    if !head.headers.contains_key(headers::REQUEST_ID) {
        head.headers
            .insert(headers::REQUEST_ID, headers::new_request_id());
    }
    let r = Req {
        front: &front,
        conn,
        client,
    };
    let mut ex = Exchange::new(started);
    let Some(rt) = front.plane.runtime() else {
        return Ok(r.reply(ex, head, Reply::NOT_CONFIGURED));
    };
    let rt = ex.rt.insert(rt).clone();
    let cl_received = restore_lengths(&mut head, content_lengths);
    let admitted = match exchange::admit(&rt, &front.listener, &head, cl_received) {
        Ok(a) => a,
        Err(reply) => return Ok(r.reply(ex, head, reply)),
    };
    ex.route = Some(admitted.route);
    let gzip = admitted.gzip.then(|| gzip_for(&head));
    let limits = *r.conn.limits();
    let gathered = match body::gather(body, &mut ex, limits.body_timeout, &r.conn).await {
        Ok(g) => g,
        Err(fault) => return Ok(r.error(ex, head, fault.status())),
    };
    Ok(r.forward(ex, head, gathered, gzip, upgrade).await)
}

/// hyper's parser keeps one `Content-Length` of several equal ones and drops one that comes
/// with `Transfer-Encoding`; `seen` is how many the raw head had (counted by the client
/// stream). The copies it merged are put back so that [`exchange::admit`] sees the head as
/// received. Returns whether the head as received had a `Content-Length`.
fn restore_lengths(head: &mut Parts, seen: u8) -> bool {
    let parsed = head.headers.get_all(header::CONTENT_LENGTH).iter().count();
    if let Some(v) = head.headers.get(header::CONTENT_LENGTH).cloned() {
        for _ in parsed..usize::from(seen) {
            head.headers.append(header::CONTENT_LENGTH, v.clone());
        }
    }
    seen > 0 || parsed > 0
}

impl Req<'_> {
    fn finish(&self, ex: Exchange, head: Parts, status: u16) -> Finish {
        Finish {
            ex,
            head,
            listener: self.front.listener.clone(),
            client: self.client,
            status,
            conn: self.conn.clone(),
        }
    }

    /// Answer with one of the proxy's own replies.
    fn reply(&self, ex: Exchange, head: Parts, reply: Reply) -> Response<RespBody> {
        let body = Bytes::from_static(reply.body.as_bytes());
        let mut resp = Response::new(RespBody::full(body, self.finish(ex, head, reply.status)));
        *resp.status_mut() = status_code(reply.status);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if reply.close || self.front.plane.draining() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// Answer an error with an empty body and close the connection (as pingora's
    /// `fail_to_proxy` does); status 0: the client is gone, nothing is sent that it reads.
    fn error(&self, ex: Exchange, head: Parts, status: u16) -> Response<RespBody> {
        let shown = if status == 0 { 400 } else { status };
        let mut resp = Response::new(RespBody::full(Bytes::new(), self.finish(ex, head, status)));
        *resp.status_mut() = status_code(shown);
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// The attempts: pick, connect (or take a pooled connection), send, judge.
    async fn forward(
        &self,
        mut ex: Exchange,
        head: Parts,
        gathered: Gathered,
        mut gzip: Option<Box<ResponseCompressionCtx>>,
        mut upgrade: Option<Arc<ConnState>>,
    ) -> Response<RespBody> {
        let Gathered {
            head: buffered,
            mut rest,
        } = gathered;
        let replay = |truncated: bool| Replay {
            idempotent: head.method.is_idempotent(),
            body_truncated: truncated,
            response_sent: false,
        };
        // A body streamed past the retry buffer is gone once sent: no attempt after that.
        let truncated = rest.is_some();
        let mut streamed = false;
        loop {
            if streamed {
                return self.error(ex, head, 502);
            }
            let target = match exchange::pick(&mut ex, Instant::now()) {
                Ok(t) => t,
                Err(NoTarget::Status(code, why)) => {
                    tracing::debug!(listener = %self.front.listener, "no backend: {why}");
                    return self.error(ex, head, code);
                }
                Err(NoTarget::NotAdmitted(why)) => {
                    tracing::warn!("request not admitted: {why}");
                    return self.error(ex, head, 500);
                }
            };
            let mut up = match pool::checkout(&target, false).await {
                Ok(up) => up,
                Err(e) => {
                    tracing::debug!(backend = %target.socket, "{e}");
                    match exchange::judge(&mut ex, Outcome::ConnectFailed, replay(truncated)) {
                        Verdict::Retry => continue,
                        _ => return self.error(ex, head, 502),
                    }
                }
            };
            let (body, fault) = match rest.take() {
                None => (ReqBody::Full(Some(buffered.clone())), FaultSlot::default()),
                Some(rest) => {
                    streamed = true;
                    ReqBody::streamed(
                        buffered.clone(),
                        rest,
                        ex.body_allowance(),
                        self.conn.limits().body_timeout,
                        self.conn.clone(),
                    )
                }
            };
            let req = match self.upstream_request(&ex, &head, body, upgrade.is_some()) {
                Ok(req) => req,
                Err(e) => {
                    tracing::warn!("forwarded header: {e}");
                    return self.error(ex, head, 500);
                }
            };
            let failure = match send(&mut up, req, &target).await {
                Ok(resp) => {
                    ex.upstream_responded(Instant::now());
                    let status = resp.status().as_u16();
                    match exchange::judge(&mut ex, Outcome::Status(status), replay(truncated)) {
                        Verdict::Retry => {
                            // The retry was granted on the status; pingora's path then sees
                            // the error that carries it, which is judged once more (and
                            // clears the exchange's mark of it): so here.
                            let again = Outcome::Failed {
                                downstream: false,
                                reused: up.reused,
                            };
                            let _ = exchange::judge(&mut ex, again, replay(truncated));
                            continue;
                        }
                        _ => return self.respond(ex, head, resp, up, gzip.take(), upgrade.take()),
                    }
                }
                Err(failure) => failure,
            };
            tracing::debug!(backend = %target.socket, "attempt failed: {failure:?}");
            if let Some(fault) = fault.get() {
                let outcome = Outcome::Failed {
                    downstream: true,
                    reused: up.reused,
                };
                let _ = exchange::judge(&mut ex, outcome, replay(true));
                return self.error(ex, head, fault.status());
            }
            let verdict = match failure {
                Failure::Connect => {
                    exchange::judge(&mut ex, Outcome::ConnectFailed, replay(truncated))
                }
                _ => {
                    let outcome = Outcome::Failed {
                        downstream: false,
                        reused: up.reused,
                    };
                    exchange::judge(&mut ex, outcome, replay(truncated))
                }
            };
            match verdict {
                Verdict::Retry => continue,
                Verdict::RetryIfStale { reused: true } if failure == Failure::Stale => continue,
                _ => return self.error(ex, head, 502),
            }
        }
    }

    /// The request that goes upstream: the head as received, minus its hop-by-hop fields,
    /// with the forwarded headers; always HTTP/1.1, in origin form.
    fn upstream_request(
        &self,
        ex: &Exchange,
        head: &Parts,
        body: ReqBody,
        upgrade: bool,
    ) -> Result<Request<ReqBody>, InvalidHeaderValue> {
        let mut headers = head.headers.clone();
        // An upgrade keeps its `Connection: upgrade` and `Upgrade` (the switch itself).
        for name in headers::hop_by_hop(&headers, upgrade) {
            headers.remove(name);
        }
        let fwd = exchange::rewrite_request(ex, head, &headers, self.client, self.front.scheme)?;
        if let Some((xff, real_ip)) = fwd.client {
            headers.insert("x-forwarded-for", xff);
            headers.insert("x-real-ip", real_ip);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static(fwd.proto));
        match fwd.host {
            UpstreamHost::Forwarded(host) => {
                headers.insert("x-forwarded-host", host);
            }
            UpstreamHost::Host(host) => {
                headers.insert(header::HOST, host);
            }
            UpstreamHost::None => {}
        }
        let uri = match head.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        let mut req = Request::new(body);
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// Pass the backend's response on: its hop-by-hop fields out, gzipped if `gzip` (the
    /// route compresses and the client accepts it) and the body is not too short,
    /// `Connection: close` while the process drains.
    fn respond(
        &self,
        ex: Exchange,
        head: Parts,
        resp: Response<Incoming>,
        up: Upstream,
        gzip: Option<Box<ResponseCompressionCtx>>,
        upgrade: Option<Arc<ConnState>>,
    ) -> Response<RespBody> {
        let mut resp = resp;
        let status = resp.status().as_u16();
        let mut up = Some(up);
        if let (101, Some(state)) = (status, upgrade) {
            // The backend switched: the connection's run of hyper relays both ways once the
            // 101 is written; the backend's connection does not go back to the pool.
            up = None;
            let backend = hyper::upgrade::on(&mut resp);
            *state.upgrade.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
        }
        let (mut parts, body) = resp.into_parts();
        for name in headers::hop_by_hop(&parts.headers, status == 101) {
            parts.headers.remove(name);
        }
        let gzip = gzip.and_then(|mut gz| {
            if ex.too_small_to_gzip(&parts.headers) {
                return None;
            }
            let mut header = ResponseHeader::from(parts.clone());
            gz.response_header_filter(&mut header, body.is_end_stream());
            // In its body phase with an encoder: the body is to be gzipped.
            (!gz.is_header_phase() && gz.is_enabled()).then(|| {
                parts = header.into();
                gz
            })
        });
        if self.front.plane.draining() {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        parts.version = Version::HTTP_11;
        let body = RespBody::upstream(body, up, self.finish(ex, head, status), gzip);
        Response::from_parts(parts, body)
    }
}

/// Whether a request asks to switch protocols (WebSocket): HTTP/1.1 with `Upgrade` and
/// `Connection: upgrade`.
fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// A gzip encoder for a request whose route compresses and whose client accepts gzip (as
/// [`crate::service`] sets pingora's compression module: gzip at level 6, the request's
/// `Accept-Encoding` shown to it).
fn gzip_for(head: &Parts) -> Box<ResponseCompressionCtx> {
    let mut gz = Box::new(ResponseCompressionCtx::new(0, false, false));
    gz.adjust_algorithm_level(Algorithm::Gzip, 6);
    let mut req = RequestHeader::build(head.method.clone(), b"/", Some(1));
    if let (Ok(req), Some(ae)) = (req.as_mut(), head.headers.get(header::ACCEPT_ENCODING)) {
        if req
            .insert_header(header::ACCEPT_ENCODING, ae.clone())
            .is_ok()
        {
            gz.request_filter(req);
        }
    }
    gz
}

/// How sending a request upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// A new connection, after a pooled one was found closed, could not be made.
    Connect,
    /// No response head within the route's `read_timeout`.
    TimedOut,
    /// The connection closed before a response: a pooled connection the backend had just
    /// closed, when it was reused.
    Stale,
    /// Any other error.
    Other,
}

/// Send `req` on `up`, for its response head within the target's read timeout. A pooled
/// connection found closed before the request went out is replaced by a new one (nothing
/// was sent: always safe).
async fn send(
    up: &mut Upstream,
    mut req: Request<ReqBody>,
    target: &exchange::Target,
) -> Result<Response<Incoming>, Failure> {
    loop {
        let sent = tokio::time::timeout(target.read_timeout, up.tx.try_send_request(req)).await;
        let mut err = match sent {
            Err(_) => return Err(Failure::TimedOut),
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) => e,
        };
        if let (true, Some(again)) = (up.reused, err.take_message()) {
            *up = pool::checkout(target, true)
                .await
                .map_err(|_| Failure::Connect)?;
            req = again;
            continue;
        }
        let e = err.into_error();
        tracing::debug!("upstream: {e}");
        return Err(if e.is_incomplete_message() || e.is_closed() {
            Failure::Stale
        } else {
            Failure::Other
        });
    }
}

/// A status code of ours (always valid; 500 if not).
fn status_code(code: u16) -> http::StatusCode {
    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}
