//! The Prometheus exporter: one recorder per process, rendered by `GET /metrics`, and the
//! gauges read from the applier at scrape time (`switchyard_control_reload_failing`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::Applier;

/// Latency buckets in seconds, from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Install the global recorder. Call once, at start-up; the handle renders the text format.
pub fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// The text format. First sets `switchyard_control_reload_failing`: 1 while the last reload
/// of the file failed (the previous config keeps running, `/v1/status` says why), else 0; a
/// state an alert can hold for as long as it lasts, unlike a counter of rejections.
pub fn render(handle: &PrometheusHandle, applier: &Applier) -> String {
    let failing = applier.last_error().is_some();
    metrics::gauge!("switchyard_control_reload_failing").set(if failing { 1.0 } else { 0.0 });
    handle.render()
}
