//! The first steps of a batch, before it is back in rotation: check that taking it out
//! leaves `min_available`, drain it and wait for its requests in flight (on every node,
//! with a shared store), have it replaced (the configured command or webhook, or an
//! external tool), and wait until its active health checks pass after the replace, with
//! the new version when one is expected.

use tokio::time::Instant;

use super::driver::{round, Driver, Resolved, Stop};
use super::edits::{batch_states, set_states};
use super::replace::{call_webhook, run_command, Batch};
use super::status::Step;
use crate::store::drain::wait_drained;

impl Driver {
    /// Drain batch `i`, wait for its requests in flight, and have it replaced; when the
    /// replace ended.
    pub(super) async fn drain_and_replace(
        &mut self,
        i: usize,
        backends: &[String],
        detail: &serde_json::Value,
    ) -> Result<std::time::Instant, Stop> {
        let s = self.entry.get();
        let (upstream, req) = (s.upstream.as_str(), &s.request);
        // Would taking this batch out leave too few healthy backends?
        let serving = self.healthy_enabled(upstream, backends);
        if serving < req.min_available {
            return Err(Stop::Refused(format!(
                "batch {}: taking it out would leave {serving} healthy backend(s) in rotation, fewer than min_available = {}",
                i + 1,
                req.min_available
            )));
        }

        self.step(i, Step::Draining);
        let drain = batch_states(backends, true);
        set_states(
            &self.applier,
            "upstream.rollout.drain",
            upstream,
            &drain,
            None,
            detail.clone(),
        )
        .await
        .map_err(|e| Stop::Failed(format!("drain refused: {e}")))?;
        let started = Instant::now();
        let deadline = started + req.drain_timeout;
        let left = loop {
            let in_flight: u64 = backends
                .iter()
                .filter_map(|a| self.traffic.backend(a))
                .map(|v| v.in_flight)
                .sum();
            if in_flight == 0 || Instant::now() >= deadline {
                break in_flight;
            }
            self.sleep().await?;
        };
        // With a shared store, every node must run the drain and have nothing in flight.
        let mut waiting_on = Vec::new();
        if let Some(store) = self.applier.store().etcd().cloned() {
            let version = self.applier.current().snapshot.version;
            for addr in backends {
                let wait = deadline.saturating_duration_since(Instant::now());
                let d =
                    wait_drained(&self.applier, Some(&store), version, upstream, addr, wait).await;
                for n in d["waiting_on"].as_array().into_iter().flatten() {
                    waiting_on.push(n.as_str().unwrap_or("?").to_string());
                }
            }
            self.check_abort()?;
        }
        let waited = humantime::format_duration(round(started.elapsed()));
        self.note(
            i,
            match (left, waiting_on.is_empty()) {
                (0, true) => format!("no request in flight after {waited}"),
                (0, false) => format!(
                    "drain_timeout reached with requests still in flight on node(s) {}; going on",
                    waiting_on.join(", ")
                ),
                (n, _) => {
                    format!("drain_timeout reached with {n} request(s) still in flight; going on")
                }
            },
        );

        self.step(i, Step::Replacing);
        let batch = Batch {
            upstream,
            number: i + 1,
            backends,
            version: req.version.as_deref(),
        };
        let replaced = match &self.replace {
            Resolved::Command(name, cmd) => run_command(cmd, &batch, &self.abort)
                .await
                .map_err(|e| format!("command {name:?}: {e}")),
            Resolved::Webhook(name, hook) => call_webhook(hook, &batch)
                .await
                .map_err(|e| format!("webhook {name:?}: {e}")),
            Resolved::External => Ok("replaced by an external tool".to_string()),
        };
        self.check_abort()?;
        let replaced_at = std::time::Instant::now();
        match replaced {
            Ok(output) => {
                self.entry
                    .update(|s| s.batches[i].replace_output = Some(output));
                self.note(
                    i,
                    format!(
                        "replaced in {}",
                        humantime::format_duration(round(started.elapsed()))
                    ),
                );
            }
            Err(why) => {
                self.entry
                    .update(|s| s.batches[i].replace_output = Some(why.clone()));
                return Err(Stop::Failed(format!("replace failed: {why}")));
            }
        }
        Ok(replaced_at)
    }

    /// Wait until every backend of batch `i` passes a health check that began after
    /// `replaced_at` (with the new version, when one is expected).
    pub(super) async fn ready(
        &mut self,
        i: usize,
        backends: &[String],
        replaced_at: std::time::Instant,
    ) -> Result<(), Stop> {
        let req = self.entry.get().request;
        self.step(i, Step::WaitingReady);
        let started = Instant::now();
        let deadline = started + req.ready_timeout;
        loop {
            let waiting: Vec<String> = backends
                .iter()
                .filter_map(|a| self.not_ready(a, replaced_at, req.version.as_deref()))
                .collect();
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Stop::Failed(format!(
                    "not ready after ready_timeout = {}: {}",
                    humantime::format_duration(req.ready_timeout),
                    waiting.join("; ")
                )));
            }
            self.sleep().await?;
        }
        let seen = req
            .version
            .as_deref()
            .map(|v| format!(", version {v:?}"))
            .unwrap_or_default();
        self.note(
            i,
            format!(
                "health checks pass{seen} after {}",
                humantime::format_duration(round(started.elapsed()))
            ),
        );
        Ok(())
    }

    /// Why `addr` is not ready yet (`None` once it is): a passing active check that ended
    /// after the replace, with the new version when one is expected.
    fn not_ready(
        &self,
        addr: &str,
        after: std::time::Instant,
        version: Option<&str>,
    ) -> Option<String> {
        let Some(view) = self.traffic.backend(addr) else {
            return Some(format!("{addr}: not checked yet"));
        };
        match view.last_check {
            Some((at, true, seen)) if at > after && view.healthy => match (version, seen) {
                (None, _) => None,
                (Some(v), Some(s)) if s == v => None,
                (Some(v), seen) => Some(format!("{addr}: reports version {seen:?}, not {v:?}")),
            },
            Some((at, false, _)) if at > after => Some(format!("{addr}: health check fails")),
            Some(_) if !view.healthy => Some(format!("{addr}: health check says down")),
            _ => Some(format!("{addr}: no health check since it was replaced")),
        }
    }

    /// Backends of the upstream in rotation and not down, outside `batch`.
    fn healthy_enabled(&self, upstream: &str, batch: &[String]) -> usize {
        let current = self.applier.current();
        let Some(up) = current.snapshot.config.http.upstreams.get(upstream) else {
            return 0;
        };
        up.pools
            .values()
            .filter(|p| p.weight > 0)
            .flat_map(|p| p.backends.iter())
            .filter(|b| b.state == switchyard_config::BackendState::Enabled)
            .map(|b| b.addr.to_string())
            .filter(|a| !batch.contains(a))
            .filter(|a| self.traffic.backend(a).is_some_and(|v| v.healthy))
            .count()
    }
}
