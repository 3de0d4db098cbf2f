//! The pingora `ProxyHttp` front end: one [`ProxyService`] per listener, a thin adapter from
//! pingora's `Session` and hooks to the request path's policy in [`crate::exchange`].
//!
//! Per request: load the runtime once and [`exchange::admit`] (answering here what the proxy
//! answers itself), then per attempt [`exchange::pick`] a backend and
//! [`exchange::rewrite_request`] its headers, [`exchange::judge`] each attempt's outcome
//! (mapped to pingora's retry flag), and [`exchange::finish`] in the `logging` hook, which
//! pingora calls once per request. What stays here is pingora's alone: the response
//! compression module, pipelining, the error responses and their codes.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::{ResponseCompression, ResponseCompressionBuilder};
use pingora::modules::http::HttpModules;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::protocols::http::compression::Algorithm;
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::exchange::{
    self, Exchange, NoTarget, Outcome, Replay, Reply, Summary, UpstreamHost, Verdict,
};
use crate::framing;
use crate::headers;
use crate::HttpPlane;

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

/// Answer a request ourselves with a short text body.
async fn respond(plane: &HttpPlane, session: &mut Session, reply: Reply) -> Result<bool> {
    let mut resp = ResponseHeader::build(reply.status, Some(3))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, reply.body.len().to_string())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    if reply.close || plane.draining() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(reply.body.as_bytes())), true)
        .await?;
    Ok(true)
}

/// Whether the HTTP/1 request as received had a `Content-Length` header (see
/// [`framing::received_content_length`]).
fn received_content_length(session: &Session) -> bool {
    session
        .as_downstream()
        .as_http1()
        .is_some_and(|h1| framing::received_content_length(h1.get_headers_raw_bytes().as_ref()))
}

/// What the session says about sending the request again.
fn replay(session: &Session) -> Replay {
    Replay {
        idempotent: session.req_header().method.is_idempotent(),
        body_truncated: session.retry_buffer_truncated(),
        response_sent: session.response_written().is_some(),
    }
}

/// Apply a verdict on an error to its retry flag.
fn set_retry(e: &mut Error, verdict: Verdict) {
    match verdict {
        Verdict::Retry => e.set_retry(true),
        Verdict::Done | Verdict::Fail => e.set_retry(false),
        Verdict::RetryIfStale { reused } => e.retry.decide_reuse(reused),
    }
}

#[async_trait]
impl ProxyHttp for ProxyService {
    type CTX = Exchange;

    /// One downstream module: response compression, disabled until a route enables it.
    /// pingora's `upstream_compression` decides before `upstream_response_filter` runs, so
    /// it could not honour `gzip_min_length`; the downstream module decides when the
    /// response header is written, after it.
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(ResponseCompressionBuilder::enable(0));
    }

    fn new_ctx(&self) -> Self::CTX {
        Exchange::new(Instant::now())
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
            return respond(&self.plane, session, Reply::NOT_CONFIGURED).await;
        };
        let rt = ctx.rt.insert(rt);
        let cl_received = received_content_length(session);
        let admitted = match exchange::admit(rt, &self.listener, session.req_header(), cl_received)
        {
            Ok(admitted) => admitted,
            Err(reply) => return respond(&self.plane, session, reply).await,
        };
        if admitted.gzip {
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
        ctx.route = Some(admitted.route);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(chunk) = body.as_ref() {
            if !exchange::count_body(ctx, chunk.len()) {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let target = exchange::pick(ctx, Instant::now()).map_err(|e| match e {
            NoTarget::NotAdmitted(why) => Error::explain(ErrorType::InternalError, why),
            NoTarget::Status(code, why) => Error::explain(ErrorType::HTTPStatus(code), why),
        })?;
        let mut peer = HttpPeer::new(target.socket, false, String::new());
        peer.group_key = crate::worker::group();
        peer.options.connection_timeout = Some(target.connect_timeout);
        peer.options.read_timeout = Some(target.read_timeout);
        peer.options.write_timeout = Some(target.write_timeout);
        peer.options.idle_timeout = Some(target.idle_timeout);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the backend: always safe to try another one, within `retries`.
        let verdict = exchange::judge(ctx, Outcome::ConnectFailed, replay(session));
        set_retry(&mut e, verdict);
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
        let outcome = Outcome::Failed {
            downstream: *e.esource() == ErrorSource::Downstream,
            reused: client_reused,
        };
        let verdict = exchange::judge(ctx, outcome, replay(session));
        set_retry(&mut e, verdict);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let fwd = exchange::rewrite_request(
            ctx,
            session.req_header(),
            &upstream_request.headers,
            client,
            self.scheme,
        )
        .or_else(|e| Error::e_explain(ErrorType::InternalError, e.to_string()))?;
        // `insert_header` replaces every field of the name (and keeps pingora's case map).
        if let Some((xff, real_ip)) = fwd.client {
            upstream_request.insert_header("x-forwarded-for", xff)?;
            upstream_request.insert_header("x-real-ip", real_ip)?;
        }
        upstream_request.insert_header("x-forwarded-proto", fwd.proto)?;
        match fwd.host {
            UpstreamHost::Forwarded(host) => {
                upstream_request.insert_header("x-forwarded-host", host)?
            }
            UpstreamHost::Host(host) => upstream_request.insert_header(header::HOST, host)?,
            UpstreamHost::None => {}
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
        ctx.upstream_responded(Instant::now());
        // Hop-by-hop fields are for the backend's connection, not the client's (RFC 9110
        // §7.6.1): pingora takes them out of requests, not of responses.
        for name in headers::hop_by_hop(&resp.headers, status == 101) {
            resp.remove_header(&name);
        }
        if ctx.too_small_to_gzip(&resp.headers) {
            if let Some(gz) = session
                .downstream_modules_ctx
                .get_mut::<ResponseCompression>()
                .filter(|gz| gz.is_header_phase())
            {
                gz.adjust_level(0);
            }
        }
        match exchange::judge(ctx, Outcome::Status(status), replay(session)) {
            // Returned before anything reached the client, with retry set: pingora has no
            // hook for retrying on a status (its issue 873).
            Verdict::Retry => Error::e_explain(
                ErrorType::HTTPStatus(status),
                "failure status from backend; retrying",
            ),
            _ => Ok(()),
        }
    }

    /// The end of the backend's response body: where the access log's upstream time ends.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            ctx.upstream_responded(Instant::now());
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
        let summary = Summary {
            listener: &self.listener,
            head: session.req_header(),
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            status,
            bytes_sent: session.body_bytes_sent() as u64,
        };
        exchange::finish(ctx, &summary);
    }
}
