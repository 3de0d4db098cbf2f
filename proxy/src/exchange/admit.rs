//! Admission: what the proxy answers itself, before any backend is involved. Framing that
//! allows request smuggling and bad `Host` fields are 400, the listener's liveness path is
//! 200, a header block over the listener's limit 431, no route 404, a `Content-Length` over
//! the route's limit 413; bodies without a length are counted as they stream
//! ([`count_body`]). The order of the checks is the order the answers are given in.

use http::header;
use http::request::Parts;

use super::state::{route_of, unix_second, Exchange};
use crate::framing;
use crate::headers;
use crate::runtime::HttpRuntime;

/// An answer the proxy gives itself, with a short text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: &'static str,
    /// Close the client connection after it (the request's framing cannot be trusted, or
    /// its body was not read).
    pub close: bool,
}

impl Reply {
    /// No config has been applied yet.
    pub const NOT_CONFIGURED: Reply = Reply::new(503, "not configured\n", false);

    const fn new(status: u16, body: &'static str, close: bool) -> Reply {
        Reply {
            status,
            body,
            close,
        }
    }
}

/// An admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Index of its route in `config.http.routes`.
    pub route: usize,
    /// The route compresses and the client accepts gzip (q-values included).
    pub gzip: bool,
}

/// Admit a request that arrived on `listener`, or say what to answer instead. `cl_received`:
/// the request as received had a `Content-Length` (see
/// [`framing::received_content_length`]; a front end that cannot tell passes whether the
/// parsed head has one). Counts an admitted request in its upstream's retry budget.
pub fn admit(
    rt: &HttpRuntime,
    listener: &str,
    head: &Parts,
    cl_received: bool,
) -> Result<Admitted, Reply> {
    if let Some(why) = framing::smuggling(&head.headers, cl_received) {
        return Err(Reply::new(400, why, true));
    }
    if let Some(why) = headers::host_problem(head.version, &head.headers) {
        return Err(Reply::new(400, why, true));
    }
    let listener = rt.config.http.listeners.iter().find(|l| l.name == listener);
    let path = head.uri.path();
    if listener.is_some_and(|l| l.health_path == path) {
        return Err(Reply::new(200, "ok\n", false));
    }
    let header_bytes: usize = head
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if listener.is_some_and(|l| header_bytes > l.max_header_bytes) {
        return Err(Reply::new(431, "request headers too large\n", true));
    }
    let host = head
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| head.uri.host())
        .unwrap_or("");
    let Some(idx) = rt.routes.find(host, path) else {
        return Err(Reply::new(404, "no route\n", false));
    };
    let route = &rt.config.http.routes[idx];
    let too_big = headers::content_length(&head.headers).is_some_and(|n| n > route.max_body_bytes);
    if too_big {
        return Err(Reply::new(413, "request body too large\n", true));
    }
    if let Some(up) = rt.upstreams.get(&route.upstream) {
        up.budget.record_request(unix_second());
    }
    Ok(Admitted {
        route: idx,
        // gzip only (pingora would also pick brotli or zstd when listed first), and only
        // when the client's q-values accept it: pingora's own parsing ignores them.
        gzip: route.gzip && headers::accepts_gzip(&head.headers),
    })
}

/// Count `len` more request body bytes; `false` once the body is over the route's limit
/// (chunked bodies have no `Content-Length` to check up front).
pub fn count_body(ex: &mut Exchange, len: usize) -> bool {
    let Some(route) = ex.rt.as_deref().and_then(|rt| route_of(rt, ex.route)) else {
        return true;
    };
    ex.body_bytes += len as u64;
    ex.body_bytes <= route.max_body_bytes
}
