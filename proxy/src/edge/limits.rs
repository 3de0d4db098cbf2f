//! A listener's client-side limits ([`Limits`], taken from the live config when a
//! connection is accepted) and the counters of what they did ([`ListenerEdge`]): open
//! connections against `max_connections`, timeouts by phase, refusals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use switchyard_config::Listener;

use crate::HttpPlane;

/// A listener's client-side limits, as a connection takes them when it is accepted.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

impl Limits {
    fn of(l: &Listener) -> Self {
        Limits {
            header_timeout: l.header_timeout,
            keepalive_timeout: l.keepalive_timeout,
            body_timeout: l.body_timeout,
            max_connections: l.max_connections,
            max_header_bytes: l.max_header_bytes,
        }
    }
}

/// One listener's client-side limits and the counters of what they did.
#[derive(Debug)]
pub struct ListenerEdge {
    pub name: String,
    /// The limits of the config the listener was started with, for when the live runtime
    /// has none (it always has, once started).
    start: Limits,
    plane: Arc<HttpPlane>,
    /// Client connections open now.
    open: AtomicUsize,
    open_gauge: Gauge,
    header_timeouts: Counter,
    keepalive_timeouts: Counter,
    body_timeouts: Counter,
    refused: Counter,
}

/// Which deadline ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The request head was not complete in time (or nothing came after accept).
    Header,
    /// A keep-alive connection sat idle too long.
    Keepalive,
    /// A request body stalled.
    Body,
}

impl ListenerEdge {
    /// The limits of `l`, with its metric series (`listener` label). Later configs' limits
    /// apply to the connections accepted after them (see [`ListenerEdge::limits`]).
    pub fn new(l: &Listener, plane: Arc<HttpPlane>) -> Self {
        let name = l.name.clone();
        let timeouts = |phase: &'static str| metrics::counter!("switchyard_http_client_timeouts_total", "listener" => name.clone(), "phase" => phase);
        ListenerEdge {
            header_timeouts: timeouts("header"),
            keepalive_timeouts: timeouts("keepalive"),
            body_timeouts: timeouts("body"),
            refused: metrics::counter!("switchyard_http_connections_refused_total", "listener" => name.clone()),
            open_gauge: metrics::gauge!("switchyard_http_client_connections", "listener" => name.clone()),
            name,
            start: Limits::of(l),
            plane,
            open: AtomicUsize::new(0),
        }
    }

    /// The listener's limits in the live config: a reload changes them for new connections.
    pub fn limits(&self) -> Limits {
        self.plane
            .runtime()
            .and_then(|rt| {
                rt.config
                    .http
                    .listeners
                    .iter()
                    .find(|l| l.name == self.name)
                    .map(Limits::of)
            })
            .unwrap_or(self.start)
    }

    /// Count a timeout.
    pub fn timed_out(&self, which: Timeout) {
        match which {
            Timeout::Header => self.header_timeouts.increment(1),
            Timeout::Keepalive => self.keepalive_timeouts.increment(1),
            Timeout::Body => self.body_timeouts.increment(1),
        }
        tracing::debug!(listener = %self.name, ?which, "client timed out");
    }

    /// A slot for one more connection, or `None` at the cap (counted as refused).
    pub(super) fn admit(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.increment(1);
            tracing::debug!(listener = %self.name, open = before, "connection refused: at max_connections");
            return None;
        }
        self.open_gauge.increment(1.0);
        self.plane.client_opened();
        Some(Slot(self.clone()))
    }
}

/// One open client connection, counted until dropped.
pub(super) struct Slot(Arc<ListenerEdge>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.open_gauge.decrement(1.0);
        self.0.plane.client_closed();
    }
}
