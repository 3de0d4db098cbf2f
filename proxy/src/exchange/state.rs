//! [`Exchange`], the state of one request that the steps of [`crate::exchange`] share, and
//! the lookups they all make in it (its route, its upstream) and the retry budget's clock.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use switchyard_config::Route;

use crate::balance::UpstreamRuntime;
use crate::headers;
use crate::registry::InFlight;
use crate::runtime::HttpRuntime;

/// One attempt on one backend.
pub(super) struct Attempt {
    pub(super) pool: usize,
    /// Held while the attempt is the request's latest: dropping it releases the in-flight count.
    pub(super) guard: InFlight,
    /// Its outcome has been fed to passive health and the pool counters.
    pub(super) recorded: bool,
}

/// The state of one request, from its head to its log line.
pub struct Exchange {
    /// The runtime the request is served by, loaded once; held from admission on so that a
    /// request answered by the proxy itself is logged by that runtime's log.
    pub rt: Option<Arc<HttpRuntime>>,
    /// Index of the route in `config.http.routes`, once admitted.
    pub route: Option<usize>,
    /// Addresses of the backends tried, in order.
    pub(super) tried: Vec<String>,
    pub(super) attempts: u32,
    pub(super) attempt: Option<Attempt>,
    /// The last response was a failure status and a retry was granted.
    pub(super) retry_status: bool,
    pub(super) started: Instant,
    /// Pool and backend (indices in the upstream) of the last attempt, for metrics.
    pub(super) last: Option<(usize, usize)>,
    /// Request body bytes seen so far.
    pub(super) body_bytes: u64,
    /// When the first attempt started, and when the last byte from upstream (a response
    /// head, or the end of its body) arrived: the access log's upstream time.
    pub(super) upstream_started: Option<Instant>,
    pub(super) upstream_last: Option<Instant>,
    /// Why each retry was granted, in order, for the access log.
    pub(super) retries: Vec<&'static str>,
}

impl Exchange {
    /// A request whose head was parsed at `started`.
    pub fn new(started: Instant) -> Self {
        Exchange {
            rt: None,
            route: None,
            tried: Vec::new(),
            attempts: 0,
            attempt: None,
            retry_status: false,
            started,
            last: None,
            body_bytes: 0,
            upstream_started: None,
            upstream_last: None,
            retries: Vec::new(),
        }
    }

    /// A byte of the backend's response arrived (its head, or the end of its body).
    pub fn upstream_responded(&mut self, now: Instant) {
        self.upstream_last = Some(now);
    }

    /// Request body bytes the route's limit still allows after those counted by
    /// [`super::count_body`]: for a front end that streams the rest of a body where the
    /// exchange is out of reach (the hyper front end's upstream body).
    pub fn body_allowance(&self) -> u64 {
        self.rt
            .as_deref()
            .and_then(|rt| route_of(rt, self.route))
            .map_or(u64::MAX, |r| {
                r.max_body_bytes.saturating_sub(self.body_bytes)
            })
    }

    /// Whether a response with these headers is too short for the route's gzip to gain
    /// anything (its `Content-Length` under `gzip_min_length`; gzip's header and trailer alone
    /// are 18 bytes).
    pub fn too_small_to_gzip(&self, response: &HeaderMap) -> bool {
        let Some(rt) = self.rt.as_deref() else {
            return false;
        };
        route_of(rt, self.route).is_some_and(|r| {
            headers::content_length(response).is_some_and(|n| n < r.gzip_min_length)
        })
    }
}

/// The route at `route` in `rt`.
pub(super) fn route_of(rt: &HttpRuntime, route: Option<usize>) -> Option<&Route> {
    rt.config.http.routes.get(route?)
}

/// The upstream of the route at `route` in `rt`.
pub(super) fn upstream_of(rt: &HttpRuntime, route: Option<usize>) -> Option<&UpstreamRuntime> {
    rt.upstreams.get(&route_of(rt, route)?.upstream)
}

/// The current Unix second: the retry budget's clock.
pub(super) fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
