//! The last steps of a batch back in rotation: slow start (its weight ramping up over the
//! upstream's `slow_start`, errors watched already) and the verification on live traffic —
//! the flip's [`judge`] over the batch's own counters, then, with `max_p99_ratio`, its p99
//! against the p99 of the backends not yet replaced over the same window. The counters are
//! the fleet's ([`super::tally`]): every node's traffic to the batch counts, not only the
//! driver's.
//!
//! A batch with fewer than `min_requests` when its window ends is watched for up to one
//! more window; then it is `unverified`: kept in rotation, as a flip keeps its weights,
//! and the rollout ends `unverified` rather than `succeeded`.

use tokio::time::Instant;

use super::driver::{round, Driver, Stop};
use super::status::{LatencyCheck, Step};
use super::tally::Tally;
use crate::ops::request::MAX_WINDOW;
use crate::ops::verify::{judge, Verdict};
use crate::plane::LatencyCounts;

/// A p99 under this counts as this, so scheduler noise on fast backends fails no batch.
const P99_FLOOR_US: u64 = 1_000;

impl Driver {
    /// Slow start (when the upstream has one), then verify batch `i`, which was just put
    /// back in rotation.
    pub(super) async fn ramp_and_verify(&mut self, i: usize) -> Result<(), Stop> {
        let s = self.entry.get();
        let (req, label) = (&s.request, format!("batch {}", i + 1));
        let backends = s.batches[i].backends.clone();
        let slow_start = self
            .applier
            .current()
            .snapshot
            .config
            .http
            .upstreams
            .get(&s.upstream)
            .and_then(|u| u.slow_start);
        if let Some(ramp) = slow_start {
            self.step(i, Step::SlowStart);
            let mut tally = Tally::start(&*self.traffic, &backends);
            let end = Instant::now() + ramp;
            while Instant::now() < end {
                self.sleep().await?;
                let (seen, _) = tally.read(&*self.traffic, &backends);
                if let Verdict::Breach(why) = judge(seen, &req.verify, &label, false) {
                    return Err(Stop::Failed(format!("during slow start: {why}")));
                }
            }
            let (seen, _) = tally.read(&*self.traffic, &backends);
            self.note(
                i,
                format!(
                    "weight ramped from 10% to 100% over {}; {} request(s), {} failed",
                    humantime::format_duration(ramp),
                    seen.requests,
                    seen.errors
                ),
            );
        }

        self.step(i, Step::Verifying);
        let others: Vec<String> = s.batches[i + 1..]
            .iter()
            .flat_map(|b| b.backends.iter().cloned())
            .collect();
        let mut batch = Tally::start(&*self.traffic, &backends);
        let mut rest = Tally::start(&*self.traffic, &others);
        let started = Instant::now();
        let deadline = started + req.verify.window;
        let limit = started + (req.verify.window * 2).min(MAX_WINDOW.max(req.verify.window));
        loop {
            self.sleep().await?;
            let (seen, batch_latency) = batch.read(&*self.traffic, &backends);
            self.entry.update(|s| s.batches[i].verified = Some(seen));
            let now = Instant::now();
            match judge(seen, &req.verify, &label, now >= deadline) {
                Verdict::Continue => {}
                Verdict::Breach(reason) => return Err(Stop::Failed(reason)),
                Verdict::Unverified(_) if now < limit => {}
                Verdict::Unverified(reason) => {
                    let took = humantime::format_duration(round(started.elapsed()));
                    self.note(i, format!("{reason} (window extended to {took})"));
                    self.entry.update(|s| s.batches[i].step = Step::Unverified);
                    return Ok(());
                }
                Verdict::Verified(mut reason) => {
                    if let Some(ratio) = req.max_p99_ratio {
                        let check = LatencyCheck {
                            batch_p99_ms: None,
                            others_p99_ms: None,
                            batch_requests: 0,
                            others_requests: 0,
                            max_p99_ratio: ratio,
                        };
                        let (_, others_latency) = rest.read(&*self.traffic, &others);
                        let check = compare(check, &batch_latency, &others_latency);
                        self.entry
                            .update(|s| s.batches[i].latency = Some(check.clone()));
                        match p99_verdict(&check, &label, req.verify.min_requests) {
                            Ok(note) => reason = format!("{reason}; {note}"),
                            Err(why) => return Err(Stop::Failed(why)),
                        }
                    }
                    self.note(i, reason);
                    self.entry.update(|s| s.batches[i].step = Step::Done);
                    return Ok(());
                }
            }
        }
    }
}

/// The upper bound of the bucket holding quantile `q`, in µs (the last bound for the
/// open bucket); `None` without samples.
fn quantile_us(h: &LatencyCounts, q: f64) -> Option<u64> {
    let total: u64 = h.counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in h.counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return h.bounds_us.get(i).or(h.bounds_us.last()).copied();
        }
    }
    h.bounds_us.last().copied()
}

/// Fill `check` with the p99s and request counts of the two histograms.
fn compare(mut check: LatencyCheck, batch: &LatencyCounts, others: &LatencyCounts) -> LatencyCheck {
    let ms = |us: u64| us as f64 / 1000.0;
    check.batch_p99_ms = quantile_us(batch, 0.99).map(ms);
    check.others_p99_ms = quantile_us(others, 0.99).map(ms);
    check.batch_requests = batch.counts.iter().sum();
    check.others_requests = others.counts.iter().sum();
    check
}

/// `Ok(note)` when the batch's p99 is within the limit or cannot be compared (too few
/// requests on either side: the note says so); `Err(reason)` when it is above.
fn p99_verdict(c: &LatencyCheck, label: &str, min: u64) -> Result<String, String> {
    let (Some(batch), Some(others)) = (c.batch_p99_ms, c.others_p99_ms) else {
        return Ok(format!(
            "p99 not compared: {} request(s) to the batch, {} to the backends not yet replaced",
            c.batch_requests, c.others_requests
        ));
    };
    if c.batch_requests < min || c.others_requests < min {
        return Ok(format!(
            "p99 not compared: {} request(s) to the batch, {} to the backends not yet replaced (need {min} each)",
            c.batch_requests, c.others_requests
        ));
    }
    let limit = c.max_p99_ratio * others.max(P99_FLOOR_US as f64 / 1000.0);
    if batch > limit {
        return Err(format!(
            "{label} p99 {batch}ms > {} x {others}ms, the p99 of the backends not yet replaced ({} and {} requests)",
            c.max_p99_ratio, c.batch_requests, c.others_requests
        ));
    }
    Ok(format!(
        "p99 {batch}ms <= {} x {others}ms of the backends not yet replaced",
        c.max_p99_ratio
    ))
}

#[cfg(test)]
mod tests;
