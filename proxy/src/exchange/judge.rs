//! What an attempt's outcome means: [`judge`] feeds passive health and the pool's counters
//! (once per attempt), then decides between passing the response on, another attempt, and
//! failing the request. Connect failures always go to another backend (nothing was sent),
//! within the route's `retries`; errors after the request went out, and failure statuses
//! (502/503/504 by default), only for idempotent requests whose body is still whole in the
//! retry buffer and before anything reached the client, within `retries` and the upstream's
//! retry budget. A failure status is retried only while an untried backend could take it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::state::{route_of, unix_second, upstream_of, Exchange};

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No connection to the backend: nothing was sent.
    ConnectFailed,
    /// An error while proxying. `downstream`: the client's side failed, not the backend's.
    /// `reused`: the upstream connection came from the pool.
    Failed { downstream: bool, reused: bool },
    /// The backend answered with this status.
    Status(u16),
}

/// What the front end knows about sending the request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// The request's method is idempotent.
    pub idempotent: bool,
    /// Its body outgrew the retry buffer: it cannot be sent again.
    pub body_truncated: bool,
    /// A response (head) already went to the client.
    pub response_sent: bool,
}

/// The decision on an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the backend's response on.
    Done,
    /// Try again, on another backend where there is one.
    Retry,
    /// Fail the request.
    Fail,
    /// Retry only if the error itself allows a retry on a connection that came from the pool
    /// (a stale pooled connection), `reused` saying whether this one did (pingora's
    /// `decide_reuse`).
    RetryIfStale { reused: bool },
}

/// Judge the outcome of the current attempt of `ex`.
pub fn judge(ex: &mut Exchange, outcome: Outcome, replay: Replay) -> Verdict {
    match outcome {
        Outcome::ConnectFailed => {
            attempt_failed(ex, "connect");
            if !retries_left(ex) {
                return Verdict::Fail;
            }
            if let Some(up) = ex.rt.as_deref().and_then(|rt| upstream_of(rt, ex.route)) {
                metrics::counter!("switchyard_http_retries_total", "upstream" => up.name.clone(), "reason" => "connect")
                    .increment(1);
            }
            ex.retries.push("connect");
            Verdict::Retry
        }
        Outcome::Failed { downstream, reused } => {
            if std::mem::take(&mut ex.retry_status) {
                // The failure status was judged and its retry granted already: this is the
                // error that carries it.
                return Verdict::Retry;
            }
            if !downstream {
                attempt_failed(ex, "error");
            }
            if grant_retry(ex, replay, "error") {
                Verdict::Retry
            } else if replay.idempotent && retries_left(ex) {
                if reused {
                    ex.retries.push("stale_connection");
                }
                Verdict::RetryIfStale { reused }
            } else {
                Verdict::Fail
            }
        }
        Outcome::Status(status) => judge_status(ex, status, replay),
    }
}

fn judge_status(ex: &mut Exchange, status: u16, replay: Replay) -> Verdict {
    let Some(up) = ex.rt.as_deref().and_then(|rt| upstream_of(rt, ex.route)) else {
        return Verdict::Done;
    };
    if up.config.failure_statuses.contains(&status) {
        return failure_status(ex, replay);
    }
    if let Some(att) = ex.attempt.as_mut() {
        if !att.recorded {
            att.recorded = true;
            if status >= 500 {
                up.pools[att.pool]
                    .traffic
                    .errors
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                att.guard.backend().record_success(Instant::now());
            }
        }
    }
    Verdict::Done
}

/// A failure status: the attempt failed; retry if an untried backend could take traffic.
fn failure_status(ex: &mut Exchange, replay: Replay) -> Verdict {
    attempt_failed(ex, "status");
    let Some(rt) = ex.rt.clone() else {
        return Verdict::Done;
    };
    let Some(up) = upstream_of(&rt, ex.route) else {
        return Verdict::Done;
    };
    let others = up
        .pools
        .iter()
        .filter(|p| p.weight > 0)
        .flat_map(|p| p.backends.iter())
        .any(|b| !b.draining && !ex.tried.contains(&b.addr));
    if others && grant_retry(ex, replay, "status") {
        ex.retry_status = true;
        return Verdict::Retry;
    }
    Verdict::Done
}

/// Another attempt is within the route's `retries`.
fn retries_left(ex: &Exchange) -> bool {
    ex.rt
        .as_deref()
        .and_then(|rt| route_of(rt, ex.route))
        .is_some_and(|r| ex.attempts <= r.retries)
}

/// Feed a failed attempt to passive health and the pool's counters (once per attempt).
fn attempt_failed(ex: &mut Exchange, why: &'static str) {
    let Some(rt) = ex.rt.as_deref() else { return };
    let Some(up) = upstream_of(rt, ex.route) else {
        return;
    };
    let Some(att) = ex.attempt.as_mut() else {
        return;
    };
    if att.recorded {
        return;
    }
    att.recorded = true;
    let now = Instant::now();
    let pool = &up.pools[att.pool];
    pool.traffic.errors.fetch_add(1, Ordering::Relaxed);
    let backend = att.guard.backend();
    let cfg = &up.config;
    let ejected = backend.record_failure(now, cfg.max_fails, cfg.fail_timeout, || {
        pool.may_eject(now, cfg.max_ejected_percent)
    });
    if ejected {
        tracing::warn!(upstream = %up.name, pool = %pool.name, backend = %backend.addr, why, "backend ejected for {:?}", cfg.fail_timeout);
        metrics::counter!("switchyard_http_ejections_total", "upstream" => up.name.clone(), "backend" => backend.addr.clone())
            .increment(1);
    }
}

/// A retry for a failed attempt, if the request, the route and the budget allow one.
fn grant_retry(ex: &mut Exchange, replay: Replay, reason: &'static str) -> bool {
    let Some(rt) = ex.rt.as_deref() else {
        return false;
    };
    let Some(up) = upstream_of(rt, ex.route) else {
        return false;
    };
    if !replay.idempotent || replay.body_truncated || replay.response_sent {
        return false;
    }
    if !retries_left(ex) || !up.budget.try_retry(unix_second(), up.config.retry_budget) {
        return false;
    }
    metrics::counter!("switchyard_http_retries_total", "upstream" => up.name.clone(), "reason" => reason).increment(1);
    ex.retries.push(reason);
    true
}
