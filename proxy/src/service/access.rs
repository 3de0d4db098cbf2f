//! The access log line of a finished request: what the session and the request's state say
//! about it, handed to the listener's log ([`crate::access_log`]). Runs in pingora's
//! `logging` hook, once per request; formatting is all it costs the request.

use std::time::{Instant, SystemTime};

use http::header;
use pingora::prelude::Session;

use super::{ProxyService, RequestCtx};
use crate::access_log::Entry;
use crate::headers;

/// Logged when no response was sent: the client went away first (nginx's 499).
const CLIENT_CLOSED: u16 = 499;

impl ProxyService {
    /// Write the access log line of the request, if its listener logs.
    pub(super) fn log_access(&self, session: &Session, ctx: &RequestCtx, status: u16) {
        let Some(rt) = ctx.rt.as_ref() else { return };
        let Some(log) = rt.access_log(&self.listener) else {
            return;
        };
        let req = session.req_header();
        let up = ctx.upstream(rt);
        let last = ctx.last.and_then(|(p, b)| {
            let pool = up?.pools.get(p)?;
            Some((pool.name.as_str(), pool.backends.get(b)?.addr.as_str()))
        });
        let bytes = |name: header::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
        let upstream_time = ctx.upstream_started.map(|start| {
            ctx.upstream_last
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(start)
        });
        let entry = Entry {
            time: SystemTime::now(),
            listener: &self.listener,
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query(),
            protocol: headers::version_str(req.version),
            status: if status == 0 { CLIENT_CLOSED } else { status },
            bytes_sent: session.body_bytes_sent() as u64,
            referer: bytes(header::REFERER),
            user_agent: bytes(header::USER_AGENT),
            request_time: ctx.started.elapsed(),
            upstream_time,
            upstream: ctx.route(rt).map(|r| r.upstream.as_str()),
            pool: last.map(|l| l.0),
            backend: last.map(|l| l.1),
            attempts: ctx.attempts,
            retries: &ctx.retries,
            request_id: req.headers.get(headers::REQUEST_ID).map(|v| v.as_bytes()),
        };
        log.write(&entry);
    }
}
