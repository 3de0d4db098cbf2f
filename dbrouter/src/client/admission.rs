//! `max_client_conn`: how many clients a cluster serves at once (PgBouncer's name; the
//! default, 1000, is PgBouncer's too's order of magnitude and far below a file-descriptor
//! limit worth having).
//!
//! A client is admitted at accept ([`Admission::admit`]) and holds its place until its
//! connection closes ([`Admitted`] drops). A client past the cap is not admitted: the
//! session negotiates with it and then answers 53300 (see [`crate::client::session`]). Counts are
//! kept by cluster name in the plane, so a reload that changes the cap applies to the next
//! accept and never closes a client already in.
//!
//! Status (per cluster, in [`crate::status`]): `max_client_conn`, `clients_admitted`,
//! `clients_refused_total`, and the TLS settings (`tls`, `server_tls`). Prometheus:
//! `switchyard_postgres_clients_refused_total{cluster,reason="max_client_conn"}`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use dashmap::DashMap;

/// Admission counts of every cluster, by name.
#[derive(Debug, Default)]
pub struct Admission {
    clusters: DashMap<String, Arc<Counts>>,
}

/// One cluster's admission counts.
#[derive(Debug, Default)]
pub struct Counts {
    /// Clients admitted and still connected.
    pub admitted: AtomicU64,
    /// Clients refused for `max_client_conn` since start.
    pub refused_total: AtomicU64,
}

/// A client's place under the cap, given back on drop.
#[derive(Debug)]
pub struct Admitted(Arc<Counts>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Relaxed);
    }
}

impl Admission {
    /// The counts of `cluster` (created on first use).
    pub fn counts(&self, cluster: &str) -> Arc<Counts> {
        crate::registry::shared(&self.clusters, cluster)
    }

    /// Admit a client of `cluster` if fewer than `max` are in (`None`: no cap known, as for
    /// a cluster that left the config; its login refuses it anyway). `None` back: refused,
    /// and counted.
    pub fn admit(&self, cluster: &str, max: Option<u32>) -> Option<Admitted> {
        let counts = self.counts(cluster);
        let max = max.map_or(u64::MAX, u64::from);
        let admitted = counts
            .admitted
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok();
        if admitted {
            return Some(Admitted(counts));
        }
        counts.refused_total.fetch_add(1, Relaxed);
        metrics::counter!("switchyard_postgres_clients_refused_total", "cluster" => cluster.to_string(), "reason" => "max_client_conn").increment(1);
        None
    }
}
