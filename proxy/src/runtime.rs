//! [`HttpRuntime`]: everything the HTTP plane needs for one config (the route table, the
//! upstreams with their pools, per-route metric handles, certificates), built by
//! [`HttpPlane::apply`](crate::HttpPlane) and swapped whole. Below the plane and its status.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_config::{BackendState as AdminState, Config};

use crate::access_log::ListenerLog;
use crate::balance::UpstreamRuntime;
use crate::request_metrics::RouteMetrics;
use crate::routing::RouteTable;
use crate::tls::CertSet;

/// Everything the HTTP plane needs for one config.
#[derive(Debug)]
pub struct HttpRuntime {
    pub routes: RouteTable,
    pub upstreams: HashMap<String, UpstreamRuntime>,
    /// Metric handles per route, in the order of `config.http.routes`.
    pub(crate) route_metrics: Vec<RouteMetrics>,
    /// Certificates per listener name.
    pub(crate) certs: HashMap<String, Arc<CertSet>>,
    /// The access log of each listener that logs, by listener name.
    pub(crate) access_logs: Vec<(String, ListenerLog)>,
    /// The whole applied config, shared with the control plane (not copied).
    pub config: Arc<Config>,
}

impl HttpRuntime {
    /// The access log of `listener`, if it logs.
    pub(crate) fn access_log(&self, listener: &str) -> Option<&ListenerLog> {
        self.access_logs
            .iter()
            .find(|(name, _)| name == listener)
            .map(|(_, log)| log)
    }

    /// Administrative state of a backend of an upstream in this runtime (`None`: not listed).
    pub(crate) fn admin_state(&self, upstream: &str, addr: &str) -> Option<AdminState> {
        let up = self.upstreams.get(upstream)?;
        up.pools
            .iter()
            .flat_map(|p| p.backends.iter())
            .find(|b| b.addr == addr)
            .map(|b| {
                if b.draining {
                    AdminState::Drain
                } else {
                    AdminState::Enabled
                }
            })
    }
}
