//! Hot state that must outlive reloads, keyed by backend address (never by weight or pool):
//! in-flight counts, the passive-health failure window and ejection, the active-check verdict,
//! the slow-start ramp, a small histogram of attempt durations; plus per-pool attempt counters (for flip verification) and per-upstream
//! retry budgets. A reload builds a new runtime that looks its backends up here, so a weight
//! change or a pool edit keeps every counter.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::latency::LatencyHistogram;

/// State of one backend address.
#[derive(Debug)]
pub struct BackendState {
    pub addr: String,
    in_flight: AtomicU64,
    passive: Mutex<Passive>,
    /// Set by the active health checker: `fall` failures in a row.
    active_down: AtomicBool,
    active_streak: Mutex<Streak>,
    /// The latest active check: when it started, whether it passed, the version it reported.
    last_check: Mutex<Option<CheckSeen>>,
    /// When the slow-start ramp began (re-enabled after a drain, or back from down).
    ramp_start: Mutex<Option<Instant>>,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    /// How long each attempt held the backend, from pick to the end of its response.
    pub latency: LatencyHistogram,
    /// `switchyard_http_backend_in_flight{backend}`, looked up once.
    gauge: metrics::Gauge,
}

/// One active health check as the checker saw it (for rollouts waiting on a new version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSeen {
    /// When the check started: one that started before a backend was replaced says
    /// nothing about the new one, even if it ended after.
    pub at: Instant,
    pub ok: bool,
    /// The check's `version_header`, when configured and present.
    pub version: Option<String>,
}

#[derive(Debug, Default)]
struct Passive {
    /// Failure times within the current window.
    failures: VecDeque<Instant>,
    ejected_until: Option<Instant>,
    /// Back from an ejection and not yet proven: one failure ejects again.
    probation: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    ok: u32,
    fail: u32,
}

/// What the balancer may do with a backend right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Passive health: out until this instant.
    Ejected(Instant),
    /// Active health check says down.
    Down,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BackendState {
    fn new(addr: &str) -> Self {
        BackendState {
            addr: addr.to_string(),
            in_flight: AtomicU64::new(0),
            passive: Mutex::new(Passive::default()),
            active_down: AtomicBool::new(false),
            active_streak: Mutex::new(Streak::default()),
            last_check: Mutex::new(None),
            ramp_start: Mutex::new(None),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: LatencyHistogram::default(),
            gauge: metrics::gauge!("switchyard_http_backend_in_flight", "backend" => addr.to_string()),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request in flight until the guard drops.
    pub fn acquire(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.gauge.increment(1.0);
        InFlight(self.clone(), Instant::now())
    }

    pub fn health(&self, now: Instant) -> Health {
        if self.active_down.load(Ordering::Relaxed) {
            return Health::Down;
        }
        match lock(&self.passive).ejected_until {
            Some(until) if until > now => Health::Ejected(until),
            _ => Health::Up,
        }
    }

    /// Failures recorded within the last `window`.
    pub fn recent_failures(&self, now: Instant, window: Duration) -> usize {
        let p = lock(&self.passive);
        p.failures
            .iter()
            .filter(|t| now.duration_since(**t) < window)
            .count()
    }

    /// Record a failed attempt (nginx `max_fails`/`fail_timeout`): `max_fails` failures within
    /// `fail_timeout` eject the backend for `fail_timeout`; a backend back from ejection that
    /// fails again is ejected at once. `may_eject` is asked before ejecting (the pool's
    /// `max_ejected_percent`). Returns true when this failure ejected the backend.
    pub fn record_failure(
        &self,
        now: Instant,
        max_fails: u32,
        fail_timeout: Duration,
        may_eject: impl FnOnce() -> bool,
    ) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if max_fails == 0 {
            return false;
        }
        let trip = {
            let mut p = lock(&self.passive);
            if p.ejected_until.is_some_and(|u| u > now) {
                return false;
            }
            while p
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) >= fail_timeout)
            {
                p.failures.pop_front();
            }
            p.failures.push_back(now);
            p.probation || p.failures.len() >= max_fails as usize
        };
        // Ask without holding our lock: the check looks at this backend's health too.
        if !trip || !may_eject() {
            return false;
        }
        let mut p = lock(&self.passive);
        p.ejected_until = Some(now + fail_timeout);
        p.failures.clear();
        p.probation = true;
        true
    }

    /// Record a successful attempt: a backend on probation is trusted again.
    pub fn record_success(&self, now: Instant) {
        let mut p = lock(&self.passive);
        if p.probation && p.ejected_until.is_none_or(|u| u <= now) {
            p.probation = false;
            p.ejected_until = None;
        }
    }

    /// Feed one active check result; returns `Some(up)` when the verdict changed.
    pub fn record_check(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let mut s = lock(&self.active_streak);
        if ok {
            s.ok = s.ok.saturating_add(1);
            s.fail = 0;
        } else {
            s.fail = s.fail.saturating_add(1);
            s.ok = 0;
        }
        let down = self.active_down.load(Ordering::Relaxed);
        if down && s.ok >= rise {
            self.active_down.store(false, Ordering::Relaxed);
            self.start_ramp(Instant::now());
            return Some(true);
        }
        if !down && s.fail >= fall {
            self.active_down.store(true, Ordering::Relaxed);
            return Some(false);
        }
        None
    }

    /// Remember the latest active check (see [`CheckSeen`]).
    pub fn note_check(&self, seen: CheckSeen) {
        *lock(&self.last_check) = Some(seen);
    }

    /// The latest active check, if any ran.
    pub fn last_check(&self) -> Option<CheckSeen> {
        lock(&self.last_check).clone()
    }

    /// Clear the active verdict (the upstream no longer has an active check).
    pub fn clear_active(&self) {
        self.active_down.store(false, Ordering::Relaxed);
        *lock(&self.active_streak) = Streak::default();
        *lock(&self.last_check) = None;
    }

    pub fn start_ramp(&self, now: Instant) {
        *lock(&self.ramp_start) = Some(now);
    }

    /// Share of its weight the backend gets now, under slow start (0.1 to 1).
    pub fn ramp(&self, now: Instant, slow_start: Option<Duration>) -> f64 {
        let (Some(window), Some(start)) = (slow_start, *lock(&self.ramp_start)) else {
            return 1.0;
        };
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        (elapsed / window.as_secs_f64().max(1e-3)).clamp(0.1, 1.0)
    }
}

/// A request in flight on a backend, since when; dropping it ends the count and records
/// its duration.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>, Instant);

impl InFlight {
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.decrement(1.0);
        self.0.latency.record(self.1.elapsed());
    }
}

/// Attempts and failed attempts on one pool.
#[derive(Debug, Default)]
pub struct PoolTraffic {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// At most `ratio` of an upstream's requests in the last ten seconds may be retries (with a
/// floor of a few, so a quiet upstream can still retry).
#[derive(Debug, Default)]
pub struct RetryBudget {
    window: Mutex<BudgetWindow>,
}

#[derive(Debug, Default)]
struct BudgetWindow {
    /// Ten one-second buckets of (requests, retries), and the second of `buckets[0]`.
    buckets: [(u64, u64); 10],
    epoch: u64,
}

/// Retries always allowed per ten seconds, whatever the ratio.
const BUDGET_FLOOR: u64 = 3;

impl RetryBudget {
    fn rotate(w: &mut BudgetWindow, second: u64) {
        if second >= w.epoch + 10 {
            w.buckets = [(0, 0); 10];
        } else {
            for s in w.epoch + 1..=second {
                w.buckets[(s % 10) as usize] = (0, 0);
            }
        }
        w.epoch = w.epoch.max(second);
    }

    pub fn record_request(&self, second: u64) {
        let mut w = lock(&self.window);
        Self::rotate(&mut w, second);
        w.buckets[(second % 10) as usize].0 += 1;
    }

    /// Take a retry from the budget if there is one.
    pub fn try_retry(&self, second: u64, ratio: f64) -> bool {
        let mut w = lock(&self.window);
        Self::rotate(&mut w, second);
        let (requests, retries) = w
            .buckets
            .iter()
            .fold((0, 0), |(a, b), (r, t)| (a + r, b + t));
        let allowed = ((requests as f64 * ratio) as u64).max(BUDGET_FLOOR);
        if retries >= allowed {
            return false;
        }
        w.buckets[(second % 10) as usize].1 += 1;
        true
    }
}

/// Every backend, pool and upstream the HTTP plane has seen.
#[derive(Debug, Default)]
pub struct Registry {
    backends: DashMap<String, Arc<BackendState>>,
    pools: DashMap<(String, String), Arc<PoolTraffic>>,
    budgets: DashMap<String, Arc<RetryBudget>>,
}

impl Registry {
    pub fn backend(&self, addr: &str) -> Arc<BackendState> {
        if let Some(b) = self.backends.get(addr) {
            return b.clone();
        }
        self.backends
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(BackendState::new(addr)))
            .clone()
    }

    pub fn pool(&self, upstream: &str, pool: &str) -> Arc<PoolTraffic> {
        let key = (upstream.to_string(), pool.to_string());
        self.pools.entry(key).or_default().clone()
    }

    /// The state of `addr`, if the plane has seen it.
    pub fn existing_backend(&self, addr: &str) -> Option<Arc<BackendState>> {
        self.backends.get(addr).map(|b| b.clone())
    }

    pub fn existing_pool(&self, upstream: &str, pool: &str) -> Option<Arc<PoolTraffic>> {
        self.pools
            .get(&(upstream.to_string(), pool.to_string()))
            .map(|p| p.clone())
    }

    pub fn budget(&self, upstream: &str) -> Arc<RetryBudget> {
        if let Some(b) = self.budgets.get(upstream) {
            return b.clone();
        }
        self.budgets
            .entry(upstream.to_string())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests;
