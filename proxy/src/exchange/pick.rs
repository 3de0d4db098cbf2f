//! Per attempt: the backend to try ([`pick`]) and the headers the request takes to it
//! ([`rewrite_request`]). A pick skips the backends this request already tried while others
//! are usable, takes an in-flight count on the chosen one (released when the next attempt
//! replaces it, or at [`super::finish`]) and counts the attempt for its pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue, InvalidHeaderValue};
use http::request::Parts;
use switchyard_config::HostMatch;

use super::state::{route_of, upstream_of, Attempt, Exchange};
use crate::headers;

/// How long a pooled upstream connection may idle.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// Where an attempt goes, and its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub socket: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why there is no backend to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTarget {
    /// The request was not admitted (a front end's bug).
    NotAdmitted(&'static str),
    /// Answer the client with this status.
    Status(u16, &'static str),
}

/// Choose the backend of the next attempt of an admitted request.
pub fn pick(ex: &mut Exchange, now: Instant) -> Result<Target, NoTarget> {
    let rt = ex
        .rt
        .as_deref()
        .ok_or(NoTarget::NotAdmitted("no runtime"))?;
    let route = route_of(rt, ex.route).ok_or(NoTarget::NotAdmitted("no route"))?;
    let up = upstream_of(rt, ex.route).ok_or(NoTarget::Status(502, "upstream missing"))?;
    ex.upstream_started.get_or_insert(now);
    let pick = up
        .select(now, &ex.tried)
        .ok_or(NoTarget::Status(503, "no backend available"))?;
    if pick.panic {
        metrics::counter!("switchyard_http_panic_mode_total", "upstream" => up.name.clone())
            .increment(1);
    }
    let pool = &up.pools[pick.pool];
    let entry = up.backend(pick);
    // Replacing the previous attempt releases its in-flight count.
    ex.attempt = Some(Attempt {
        pool: pick.pool,
        guard: entry.state.acquire(),
        recorded: false,
    });
    ex.tried.push(entry.addr.clone());
    ex.attempts += 1;
    ex.last = Some((pick.pool, pick.backend));
    pool.traffic.requests.fetch_add(1, Ordering::Relaxed);
    Ok(Target {
        socket: entry.socket,
        connect_timeout: route.connect_timeout,
        read_timeout: route.read_timeout,
        write_timeout: route.write_timeout,
        idle_timeout: UPSTREAM_IDLE,
    })
}

/// The forwarded headers of a request going upstream, to set (replacing any of the same
/// name) in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// `X-Forwarded-For` and `X-Real-IP`, when the client's address is known.
    pub client: Option<(HeaderValue, HeaderValue)>,
    /// `X-Forwarded-Proto`.
    pub proto: &'static str,
    pub host: UpstreamHost,
}

/// The host header the request takes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// `X-Forwarded-Host`: the request's `Host` (or URI authority), itself forwarded as is.
    Forwarded(HeaderValue),
    /// `Host`: an HTTP/1.0 request without one (HTTP/1.1 ones were refused) goes upstream as
    /// HTTP/1.1, which must have one: the route's exact host, or else the backend's address.
    Host(HeaderValue),
    /// None to set.
    None,
}

/// The forwarded headers for the request `received` (as the client sent it), whose upstream
/// copy has the headers `upstream` (hop-by-hop fields already gone), from `client` over
/// `scheme`. Every received `X-Forwarded-For` field is kept, in order. One allocation for
/// the address text, shared by both headers when there is no previous `X-Forwarded-For`
/// (`HeaderValue` clones share their bytes). `Err` only for a value that cannot be a header
/// value, which would be a bug.
pub fn rewrite_request(
    ex: &Exchange,
    received: &Parts,
    upstream: &HeaderMap,
    client: Option<IpAddr>,
    scheme: &'static str,
) -> Result<Forwarding, InvalidHeaderValue> {
    let client = match client {
        Some(ip) => {
            let ip = ip.to_string();
            let xff = upstream
                .contains_key("x-forwarded-for")
                .then(|| header_value(headers::forwarded_for(upstream, &ip)))
                .transpose()?;
            let real_ip = header_value(ip)?;
            Some((xff.unwrap_or_else(|| real_ip.clone()), real_ip))
        }
        None => None,
    };
    let forwarded = received.headers.get(header::HOST).cloned().or_else(|| {
        received
            .uri
            .authority()
            .and_then(|a| a.as_str().parse().ok())
    });
    let host = match forwarded {
        Some(host) => UpstreamHost::Forwarded(host),
        None => {
            let route_host = ex
                .rt
                .as_deref()
                .and_then(|rt| match &route_of(rt, ex.route)?.host {
                    HostMatch::Exact(h) => Some(h.clone()),
                    _ => None,
                });
            match route_host.or_else(|| ex.tried.last().cloned()) {
                Some(h) => UpstreamHost::Host(header_value(h)?),
                None => UpstreamHost::None,
            }
        }
    };
    Ok(Forwarding {
        client,
        proto: scheme,
        host,
    })
}

/// A header value from text we formatted ourselves, without copying it.
fn header_value(text: String) -> Result<HeaderValue, InvalidHeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(text))
}
