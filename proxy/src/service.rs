//! The pingora `ProxyHttp` implementation: one [`ProxyService`] per listener.
//!
//! Per request: load the runtime once, answer the liveness path, route by host and path,
//! then pick a backend per attempt ([`crate::balance`]). Every attempt's outcome feeds passive
//! health and the pool's counters. Retries: connect failures always go to another backend;
//! timeouts, resets and failure statuses (502/503/504 by default) only for idempotent methods
//! whose body fits pingora's retry buffer, within the route's `retries` and the upstream's
//! retry budget. The `logging` hook, which pingora calls once per request, also writes the
//! listener's access log line ([`access`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::{ResponseCompression, ResponseCompressionBuilder};
use pingora::modules::http::HttpModules;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::protocols::http::compression::Algorithm;
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use switchyard_config::{HostMatch, Route};

use crate::balance::UpstreamRuntime;
use crate::framing;
use crate::headers;
use crate::registry::InFlight;
use crate::{HttpPlane, HttpRuntime};

mod access;

/// The proxy logic of one listener.
pub struct ProxyService {
    plane: Arc<HttpPlane>,
    listener: String,
    scheme: &'static str,
}

impl ProxyService {
    pub fn new(plane: Arc<HttpPlane>, listener: &str, tls: bool) -> Self {
        ProxyService {
            plane,
            listener: listener.to_string(),
            scheme: if tls { "https" } else { "http" },
        }
    }
}

/// One attempt on one backend.
pub struct Attempt {
    pool: usize,
    guard: InFlight,
    /// Its outcome has been fed to passive health and the pool counters.
    recorded: bool,
}

/// Per-request state.
pub struct RequestCtx {
    rt: Option<Arc<HttpRuntime>>,
    route: Option<usize>,
    tried: Vec<String>,
    attempts: u32,
    attempt: Option<Attempt>,
    /// The last response was a failure status and a retry was granted.
    retry_status: bool,
    started: Instant,
    /// Pool and backend (indices in the upstream) of the last attempt, for metrics.
    last: Option<(usize, usize)>,
    /// Request body bytes seen so far.
    body_bytes: u64,
    /// When the first attempt started, and when the last byte from upstream (a response
    /// head, or the end of its body) arrived: the access log's upstream time.
    upstream_started: Option<Instant>,
    upstream_last: Option<Instant>,
    /// Why each retry was granted, in order, for the access log.
    retries: Vec<&'static str>,
}

impl RequestCtx {
    fn route<'a>(&self, rt: &'a HttpRuntime) -> Option<&'a Route> {
        rt.config.http.routes.get(self.route?)
    }

    fn upstream<'a>(&self, rt: &'a HttpRuntime) -> Option<&'a UpstreamRuntime> {
        rt.upstreams.get(&self.route(rt)?.upstream)
    }

    /// Another attempt is within the route's `retries`.
    fn retries_left(&self, rt: &HttpRuntime) -> bool {
        self.route(rt).is_some_and(|r| self.attempts <= r.retries)
    }
}

fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Answer a request ourselves with a short text body and no keep-alive.
async fn respond(
    plane: &HttpPlane,
    session: &mut Session,
    status: u16,
    body: &'static str,
    close: bool,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    if close || plane.draining() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await?;
    Ok(true)
}

/// A header value from text we formatted ourselves (an IP address list), without copying it.
/// Such text is always a valid value; an invalid one would be a bug, answered as a 500.
fn header_value(text: String) -> Result<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .or_else(|e| Error::e_explain(ErrorType::InternalError, e.to_string()))
}

/// Whether the HTTP/1 request as received had a `Content-Length` header (see
/// [`framing::received_content_length`]).
fn received_content_length(session: &Session) -> bool {
    session
        .as_downstream()
        .as_http1()
        .is_some_and(|h1| framing::received_content_length(h1.get_headers_raw_bytes().as_ref()))
}

impl ProxyService {
    /// Feed a failed attempt to passive health and the pool's counters (once per attempt).
    fn attempt_failed(&self, ctx: &mut RequestCtx, why: &'static str) {
        let Some(rt) = ctx.rt.clone() else { return };
        let Some(up) = ctx.upstream(&rt) else { return };
        let Some(att) = ctx.attempt.as_mut() else {
            return;
        };
        if att.recorded {
            return;
        }
        att.recorded = true;
        let now = Instant::now();
        let pool = &up.pools[att.pool];
        pool.traffic
            .errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let backend = att.guard.backend();
        let cfg = &up.config;
        let ejected = backend.record_failure(now, cfg.max_fails, cfg.fail_timeout, || {
            pool.may_eject(now, cfg.max_ejected_percent)
        });
        if ejected {
            tracing::warn!(upstream = %up.name, pool = %pool.name, backend = %backend.addr, why, "backend ejected for {:?}", cfg.fail_timeout);
            metrics::counter!("switchyard_http_ejections_total", "upstream" => up.name.clone(), "backend" => backend.addr.clone())
                .increment(1);
        }
    }

    /// A retry for a failed attempt, if the request, the route and the budget allow one.
    fn grant_retry(&self, session: &Session, ctx: &mut RequestCtx, reason: &'static str) -> bool {
        let Some(rt) = ctx.rt.as_ref() else {
            return false;
        };
        let Some(up) = ctx.upstream(rt) else {
            return false;
        };
        let idempotent = session.req_header().method.is_idempotent();
        if !idempotent || session.retry_buffer_truncated() || session.response_written().is_some() {
            return false;
        }
        if !ctx.retries_left(rt) || !up.budget.try_retry(unix_second(), up.config.retry_budget) {
            return false;
        }
        metrics::counter!("switchyard_http_retries_total", "upstream" => up.name.clone(), "reason" => reason).increment(1);
        ctx.retries.push(reason);
        true
    }
}

#[async_trait]
impl ProxyHttp for ProxyService {
    type CTX = RequestCtx;

    /// One downstream module: response compression, disabled until a route enables it.
    /// pingora's `upstream_compression` decides before `upstream_response_filter` runs, so
    /// it could not honour `gzip_min_length`; the downstream module decides when the
    /// response header is written, after it.
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(ResponseCompressionBuilder::enable(0));
    }

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            rt: None,
            route: None,
            tried: Vec::new(),
            attempts: 0,
            attempt: None,
            retry_status: false,
            started: Instant::now(),
            last: None,
            body_bytes: 0,
            upstream_started: None,
            upstream_last: None,
            retries: Vec::new(),
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        crate::edge::request_started(session);
        // Every request has an id, the client's or ours, before anything answers it: the
        // access log writes it and the backend receives it.
        if !session
            .req_header()
            .headers
            .contains_key(headers::REQUEST_ID)
        {
            session
                .req_header_mut()
                .insert_header(headers::REQUEST_ID, headers::new_request_id())?;
        }
        // Answer pipelined requests one after the other, in order (RFC 9112 §9.3). Without
        // this pingora closes the connection after the first answer, or fails the request in
        // flight ("Sent data after end of body", a retryable connect error) when the next
        // request arrives while it is served.
        session.set_pipelining_enabled(true);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let Some(rt) = self.plane.runtime() else {
            return respond(&self.plane, session, 503, "not configured\n", false).await;
        };
        // Held from here so that requests answered here are logged by this runtime's log.
        ctx.rt = Some(rt.clone());
        if let Some(why) = framing::smuggling(
            &session.req_header().headers,
            received_content_length(session),
        ) {
            return respond(&self.plane, session, 400, why, true).await;
        }
        let req = session.req_header();
        if let Some(why) = headers::host_problem(req.version, &req.headers) {
            return respond(&self.plane, session, 400, why, true).await;
        }
        let listener = rt
            .config
            .http
            .listeners
            .iter()
            .find(|l| l.name == self.listener);
        let req = session.req_header();
        let path = req.uri.path();
        if listener.is_some_and(|l| l.health_path == path) {
            return respond(&self.plane, session, 200, "ok\n", false).await;
        }
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if listener.is_some_and(|l| header_bytes > l.max_header_bytes) {
            return respond(
                &self.plane,
                session,
                431,
                "request headers too large\n",
                true,
            )
            .await;
        }
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host())
            .unwrap_or("");
        let Some(idx) = rt.routes.find(host, path) else {
            return respond(&self.plane, session, 404, "no route\n", false).await;
        };
        let route = &rt.config.http.routes[idx];
        let too_big = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > route.max_body_bytes);
        if too_big {
            return respond(&self.plane, session, 413, "request body too large\n", true).await;
        }
        // gzip only (pingora would also pick brotli or zstd when listed first), and only
        // when the client's q-values accept it: pingora's own parsing ignores them.
        if route.gzip && headers::accepts_gzip(&req.headers) {
            let req = &session.downstream_session;
            if let Some(gz) = session
                .downstream_modules_ctx
                .get_mut::<ResponseCompression>()
            {
                gz.adjust_algorithm_level(Algorithm::Gzip, 6);
                // The module saw the request while it was disabled: show it again.
                gz.request_filter(req.req_header());
            }
        }
        if let Some(up) = rt.upstreams.get(&route.upstream) {
            up.budget.record_request(unix_second());
        }
        ctx.route = Some(idx);
        ctx.rt = Some(rt);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Chunked bodies have no Content-Length to check up front: count as they stream.
        if let (Some(rt), Some(chunk)) = (ctx.rt.as_ref(), body.as_ref()) {
            if let Some(route) = ctx.route(rt) {
                ctx.body_bytes += chunk.len() as u64;
                if ctx.body_bytes > route.max_body_bytes {
                    return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
                }
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let rt = ctx
            .rt
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no runtime"))?;
        let route = ctx
            .route(&rt)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let up = ctx
            .upstream(&rt)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "upstream missing"))?;
        let now = Instant::now();
        ctx.upstream_started.get_or_insert(now);
        let pick = up
            .select(now, &ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no backend available"))?;
        if pick.panic {
            metrics::counter!("switchyard_http_panic_mode_total", "upstream" => up.name.clone())
                .increment(1);
        }
        let pool = &up.pools[pick.pool];
        let entry = up.backend(pick);
        // Replacing the previous attempt releases its in-flight count.
        ctx.attempt = Some(Attempt {
            pool: pick.pool,
            guard: entry.state.acquire(),
            recorded: false,
        });
        ctx.tried.push(entry.addr.clone());
        ctx.attempts += 1;
        ctx.last = Some((pick.pool, pick.backend));
        pool.traffic
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut peer = HttpPeer::new(entry.socket, false, String::new());
        peer.group_key = crate::worker::group();
        peer.options.connection_timeout = Some(route.connect_timeout);
        peer.options.read_timeout = Some(route.read_timeout);
        peer.options.write_timeout = Some(route.write_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.attempt_failed(ctx, "connect");
        // Nothing reached the backend: always safe to try another one, within `retries`.
        let _ = session;
        let retry = ctx.rt.as_ref().is_some_and(|rt| ctx.retries_left(rt));
        if retry {
            if let Some(up) = ctx.rt.as_ref().and_then(|rt| ctx.upstream(rt)) {
                metrics::counter!("switchyard_http_retries_total", "upstream" => up.name.clone(), "reason" => "connect")
                    .increment(1);
            }
            ctx.retries.push("connect");
        }
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if std::mem::take(&mut ctx.retry_status) {
            // The failure status was seen and the retry granted in `upstream_response_filter`.
            e.set_retry(true);
            return e;
        }
        if *e.esource() != ErrorSource::Downstream {
            self.attempt_failed(ctx, "error");
        }
        if self.grant_retry(session, ctx, "error") {
            e.set_retry(true);
        } else if session.req_header().method.is_idempotent()
            && ctx.rt.as_ref().is_some_and(|rt| ctx.retries_left(rt))
        {
            // A stale pooled connection: retry only if it was a reused one (pingora's default).
            e.retry.decide_reuse(client_reused);
            if client_reused {
                ctx.retries.push("stale_connection");
            }
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            // One allocation for the address, shared by both headers when there is no
            // previous X-Forwarded-For (`HeaderValue` clones share their bytes). Every
            // received X-Forwarded-For field is kept, in order (`insert_header` replaces
            // them all).
            let real_ip = header_value(ip.to_string())?;
            let xff = if upstream_request.headers.contains_key("x-forwarded-for") {
                header_value(headers::forwarded_for(
                    &upstream_request.headers,
                    &ip.to_string(),
                ))?
            } else {
                real_ip.clone()
            };
            upstream_request.insert_header("x-forwarded-for", xff)?;
            upstream_request.insert_header("x-real-ip", real_ip)?;
        }
        upstream_request.insert_header("x-forwarded-proto", self.scheme)?;
        let host = session
            .req_header()
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| {
                session
                    .req_header()
                    .uri
                    .authority()
                    .and_then(|a| a.as_str().parse().ok())
            });
        if let Some(host) = host {
            upstream_request.insert_header("x-forwarded-host", host)?;
        } else {
            // An HTTP/1.0 request without Host (HTTP/1.1 ones were refused) goes upstream as
            // HTTP/1.1, which must have one: the route's host, or else the backend's address.
            let rt = ctx.rt.clone();
            let route_host = rt.as_ref().and_then(|rt| match &ctx.route(rt)?.host {
                HostMatch::Exact(h) => Some(h.clone()),
                _ => None,
            });
            if let Some(h) = route_host.or_else(|| ctx.tried.last().cloned()) {
                upstream_request.insert_header(header::HOST, header_value(h)?)?;
            }
        }
        Ok(())
    }

    /// A draining process answers with `Connection: close`, also on a request that began
    /// before the drain did.
    async fn response_filter(
        &self,
        session: &mut Session,
        _resp: &mut ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        if self.plane.draining() {
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        ctx.upstream_last = Some(Instant::now());
        // Hop-by-hop fields are for the backend's connection, not the client's (RFC 9110
        // §7.6.1): pingora takes them out of requests, not of responses.
        for name in headers::hop_by_hop(&resp.headers, status == 101) {
            resp.remove_header(&name);
        }
        let Some(rt) = ctx.rt.clone() else {
            return Ok(());
        };
        let small = ctx.route(&rt).is_some_and(|r| {
            headers::content_length(&resp.headers).is_some_and(|n| n < r.gzip_min_length)
        });
        if small {
            if let Some(gz) = session
                .downstream_modules_ctx
                .get_mut::<ResponseCompression>()
                .filter(|gz| gz.is_header_phase())
            {
                // Too short to gain from gzip (its header and trailer alone are 18 bytes).
                gz.adjust_level(0);
            }
        }
        let Some(up) = ctx.upstream(&rt) else {
            return Ok(());
        };
        if up.config.failure_statuses.contains(&status) {
            self.attempt_failed(ctx, "status");
            // Only worth it if a backend that could take traffic has not been tried yet.
            let others = up
                .pools
                .iter()
                .filter(|p| p.weight > 0)
                .flat_map(|p| p.backends.iter())
                .any(|b| !b.draining && !ctx.tried.contains(&b.addr));
            if others && self.grant_retry(session, ctx, "status") {
                ctx.retry_status = true;
                return Error::e_explain(
                    ErrorType::HTTPStatus(status),
                    "failure status from backend; retrying",
                );
            }
            return Ok(());
        }
        if let Some(att) = ctx.attempt.as_mut() {
            if !att.recorded {
                att.recorded = true;
                if status >= 500 {
                    up.pools[att.pool]
                        .traffic
                        .errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    att.guard.backend().record_success(Instant::now());
                }
            }
        }
        Ok(())
    }

    /// The end of the backend's response body: where the access log's upstream time ends.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            ctx.upstream_last = Some(Instant::now());
        }
        Ok(None)
    }

    /// pingora's default, except that a stalled request body is 408 (it says 400).
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => *code,
            (_, ErrorSource::Upstream) => 502,
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => {
                crate::edge::body_timed_out(session);
                408
            }
            (
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => 0,
            (_, ErrorSource::Downstream) => 400,
            _ => 500,
        };
        if code > 0 {
            if let Err(e) = session.respond_error(code).await {
                tracing::debug!("error response not sent to the client: {e}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        crate::edge::request_done(session);
        ctx.attempt = None;
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or_else(|| {
                e.map(|e| match e.etype() {
                    ErrorType::HTTPStatus(s) => *s,
                    _ => 502,
                })
            })
            .unwrap_or(0);
        self.log_access(session, ctx, status);
        let Some(rt) = ctx.rt.as_ref() else { return };
        let Some(metrics) = ctx.route.and_then(|i| rt.route_metrics.get(i)) else {
            return;
        };
        metrics.record(status, ctx.last, ctx.started.elapsed().as_secs_f64());
    }
}
