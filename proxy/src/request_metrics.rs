//! Per-request metrics with their handles looked up once, not once per request.
//!
//! `switchyard_http_requests_total{route, upstream, pool, backend, class}` and
//! `switchyard_http_request_duration_seconds{upstream}` are recorded for every request.
//! Going through the `metrics` macros each time builds the label set (a `format!` for the
//! route label and several `String` copies), hashes it and looks it up in the recorder's
//! registry. [`RouteMetrics`] is built with the runtime (one per route, shaped like the
//! route's upstream: pools, then backends) and keeps each handle in a [`OnceLock`] filled on
//! first use, so a request only increments an atomic. Series appear in `/metrics` on first
//! use, as before; a reload builds new tables that look the same series up again.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};
use switchyard_config::{HostMatch, Route};

use crate::balance::UpstreamRuntime;

/// Status classes, in the order of [`RouteMetrics::class_index`].
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// One counter per status class, each looked up on first use.
type ClassCounters = [OnceLock<Counter>; CLASSES.len()];

/// The metric handles of one route.
#[derive(Debug)]
pub struct RouteMetrics {
    /// `host` + `path_prefix`, as the `route` label.
    route: String,
    upstream: String,
    /// Per pool of the upstream: its name and, per backend, its address and counters.
    pools: Vec<(String, Vec<(String, ClassCounters)>)>,
    /// Requests that never reached a backend (no pool, no backend label).
    unattempted: ClassCounters,
    duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    /// The table for `route`, whose upstream is `up` (`None`: the upstream is missing, and
    /// every request is counted as unattempted).
    pub fn new(route: &Route, up: Option<&UpstreamRuntime>) -> Self {
        let host = match &route.host {
            HostMatch::Any => "*".to_string(),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("*{s}"),
        };
        let pools = up
            .map(|up| {
                up.pools
                    .iter()
                    .map(|p| {
                        let backends = p
                            .backends
                            .iter()
                            .map(|b| (b.addr.clone(), Default::default()))
                            .collect();
                        (p.name.clone(), backends)
                    })
                    .collect()
            })
            .unwrap_or_default();
        RouteMetrics {
            route: format!("{host}{}", route.path_prefix),
            upstream: route.upstream.clone(),
            pools,
            unattempted: Default::default(),
            duration: OnceLock::new(),
        }
    }

    /// Count one finished request with HTTP `status` (0: no response), whose last attempt
    /// went to backend `backend` of pool `pool` of the route's upstream (`None`: no attempt).
    pub fn record(&self, status: u16, last: Option<(usize, usize)>, seconds: f64) {
        let class = Self::class_index(status);
        let slot = last.and_then(|(p, b)| {
            let (pool, backends) = self.pools.get(p)?;
            let (backend, counters) = backends.get(b)?;
            Some((pool.as_str(), backend.as_str(), &counters[class]))
        });
        let (pool, backend, cell) = slot.unwrap_or(("", "", &self.unattempted[class]));
        cell.get_or_init(|| {
            metrics::counter!(
                "switchyard_http_requests_total",
                "route" => self.route.clone(),
                "upstream" => self.upstream.clone(),
                "pool" => pool.to_string(),
                "backend" => backend.to_string(),
                "class" => CLASSES[class]
            )
        })
        .increment(1);
        self.duration
            .get_or_init(|| {
                metrics::histogram!("switchyard_http_request_duration_seconds", "upstream" => self.upstream.clone())
            })
            .record(seconds);
    }

    fn class_index(status: u16) -> usize {
        match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_slots() {
        let config = switchyard_config::parse(
            r#"
            [[http.routes]]
            host = "*.example.com"
            path_prefix = "/api"
            upstream = "u"
            [http.upstreams.u.pools.blue]
            backends = ["127.0.0.1:1", "127.0.0.1:2"]
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = RouteMetrics::new(&config.http.routes[0], None);
        assert_eq!(m.route, "*.example.com/api");
        assert_eq!(RouteMetrics::class_index(204), 1);
        assert_eq!(RouteMetrics::class_index(503), 4);
        assert_eq!(RouteMetrics::class_index(0), 5);
        // Without a recorder the handles are no-ops; an out-of-range slot is unattempted.
        m.record(200, Some((3, 9)), 0.001);
        assert!(m.unattempted[1].get().is_some());
    }
}
