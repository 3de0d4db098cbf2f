//! The end of a request, whether it succeeded, failed or the client went away: the last
//! attempt's in-flight count is released, the route's metrics count it, and the listener's
//! access log (if it logs) gets its line. Formatting is all the log costs the request; the
//! writing happens on the log's own thread ([`crate::access_log`]).

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use http::header;
use http::request::Parts;

use super::state::{route_of, upstream_of, Exchange};
use crate::access_log::Entry;
use crate::headers;

/// Logged when no response was sent: the client went away first (nginx's 499).
const CLIENT_CLOSED: u16 = 499;

/// What the front end knows of a finished request.
pub struct Summary<'a> {
    pub listener: &'a str,
    /// The request head as received (with its request id).
    pub head: &'a Parts,
    pub client: Option<IpAddr>,
    /// The status sent to the client; 0 when none was.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
}

/// Finish the request: release, count, log.
pub fn finish(ex: &mut Exchange, summary: &Summary) {
    ex.attempt = None;
    log_access(ex, summary);
    let Some(rt) = ex.rt.as_deref() else { return };
    let Some(metrics) = ex.route.and_then(|i| rt.route_metrics.get(i)) else {
        return;
    };
    metrics.record(summary.status, ex.last, ex.started.elapsed().as_secs_f64());
}

/// Write the access log line of the request, if its listener logs.
fn log_access(ex: &Exchange, s: &Summary) {
    let Some(rt) = ex.rt.as_deref() else { return };
    let Some(log) = rt.access_log(s.listener) else {
        return;
    };
    let req = s.head;
    let up = upstream_of(rt, ex.route);
    let last = ex.last.and_then(|(p, b)| {
        let pool = up?.pools.get(p)?;
        Some((pool.name.as_str(), pool.backends.get(b)?.addr.as_str()))
    });
    let bytes = |name: header::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
    let upstream_time = ex.upstream_started.map(|start| {
        ex.upstream_last
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(start)
    });
    let entry = Entry {
        time: SystemTime::now(),
        listener: s.listener,
        client: s.client,
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        protocol: headers::version_str(req.version),
        status: if s.status == 0 {
            CLIENT_CLOSED
        } else {
            s.status
        },
        bytes_sent: s.bytes_sent,
        referer: bytes(header::REFERER),
        user_agent: bytes(header::USER_AGENT),
        request_time: ex.started.elapsed(),
        upstream_time,
        upstream: route_of(rt, ex.route).map(|r| r.upstream.as_str()),
        pool: last.map(|l| l.0),
        backend: last.map(|l| l.1),
        attempts: ex.attempts,
        retries: &ex.retries,
        request_id: req.headers.get(headers::REQUEST_ID).map(|v| v.as_bytes()),
    };
    log.write(&entry);
}
