//! Backend selection: pick a pool by the pool weights (blue/green), then a backend inside it
//! by least connections (or smooth weighted round robin).
//!
//! Least connections follows nginx: the lowest in-flight/weight wins and ties go to smooth
//! weighted round robin among the tied backends, so with idle backends traffic still splits by
//! weight. Pools larger than [`EXACT_LIMIT`] use power of two choices instead of a full scan.
//! Backends that are ejected, down or draining are skipped, and so are backends this request
//! already tried while others exist. When nothing healthy is left, the pool is used anyway
//! (panic mode) rather than failing every request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng;
use switchyard_config::{BackendState as AdminState, Balance, Upstream};

use crate::registry::{BackendState, Health, PoolTraffic, RetryBudget};

/// Pools up to this size are scanned exactly; larger ones use two random choices.
pub const EXACT_LIMIT: usize = 16;

/// One backend of a pool, as built for one config.
#[derive(Debug)]
pub struct BackendEntry {
    pub addr: String,
    pub socket: SocketAddr,
    pub weight: u32,
    pub draining: bool,
    pub state: Arc<BackendState>,
}

/// One pool of an upstream.
#[derive(Debug)]
pub struct PoolRuntime {
    pub name: String,
    pub weight: u32,
    pub backends: Vec<BackendEntry>,
    pub traffic: Arc<PoolTraffic>,
    /// Smooth weighted round robin state, one per backend.
    rr: Mutex<Vec<i64>>,
}

/// An upstream with its pools.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub name: String,
    pub config: Upstream,
    pub pools: Vec<PoolRuntime>,
    /// The upstream's retry budget (from the registry: it outlives reloads).
    pub budget: Arc<RetryBudget>,
}

/// The outcome of a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub pool: usize,
    pub backend: usize,
    /// Nothing healthy was available: health was ignored.
    pub panic: bool,
}

impl PoolRuntime {
    pub fn new(
        name: &str,
        weight: u32,
        backends: Vec<BackendEntry>,
        traffic: Arc<PoolTraffic>,
    ) -> Self {
        let n = backends.len();
        PoolRuntime {
            name: name.to_string(),
            weight,
            backends,
            traffic,
            rr: Mutex::new(vec![0; n]),
        }
    }

    /// Backends passive health may still eject without passing `max_ejected_percent`.
    pub fn may_eject(&self, now: Instant, max_ejected_percent: u8) -> bool {
        let n = self.backends.len();
        let ejected = self
            .backends
            .iter()
            .filter(|b| matches!(b.state.health(now), Health::Ejected(_)))
            .count();
        (ejected + 1) * 100 <= n * max_ejected_percent as usize
    }

    /// Effective weight (×1000, for integer arithmetic) under slow start.
    fn weight_of(&self, i: usize, now: Instant, up: &Upstream) -> u64 {
        let b = &self.backends[i];
        ((b.weight as f64 * 1000.0 * b.state.ramp(now, up.slow_start)) as u64).max(1)
    }

    fn usable(&self, i: usize, now: Instant, tried: &[String], strict: bool) -> bool {
        let b = &self.backends[i];
        if b.draining {
            return false;
        }
        if strict && (b.state.health(now) != Health::Up || tried.contains(&b.addr)) {
            return false;
        }
        true
    }

    /// The candidates: healthy and untried; else healthy; else (panic) any non-draining one.
    fn candidates(&self, now: Instant, tried: &[String]) -> (Vec<usize>, bool) {
        let all = 0..self.backends.len();
        let fresh: Vec<usize> = all
            .clone()
            .filter(|&i| self.usable(i, now, tried, true))
            .collect();
        if !fresh.is_empty() {
            return (fresh, false);
        }
        let healthy: Vec<usize> = all
            .clone()
            .filter(|&i| self.usable(i, now, &[], true))
            .collect();
        if !healthy.is_empty() {
            return (healthy, false);
        }
        // Panic mode: prefer the untried ones.
        let untried: Vec<usize> = all
            .clone()
            .filter(|&i| self.usable(i, now, &[], false) && !tried.contains(&self.backends[i].addr))
            .collect();
        if !untried.is_empty() {
            return (untried, true);
        }
        (
            all.filter(|&i| self.usable(i, now, &[], false)).collect(),
            true,
        )
    }

    fn has_healthy(&self, now: Instant, tried: &[String]) -> bool {
        (0..self.backends.len()).any(|i| self.usable(i, now, tried, true))
    }

    /// Pick a backend among `cands` by least connections.
    fn least_conn(&self, cands: &[usize], now: Instant, up: &Upstream) -> usize {
        if cands.len() > EXACT_LIMIT {
            let mut rng = rand::rng();
            let a = cands[rng.random_range(0..cands.len())];
            let mut b = cands[rng.random_range(0..cands.len() - 1)];
            if b == a {
                b = cands[cands.len() - 1];
            }
            // in_flight_a / w_a <= in_flight_b / w_b, without division.
            let (wa, wb) = (self.weight_of(a, now, up), self.weight_of(b, now, up));
            let (fa, fb) = (
                self.backends[a].state.in_flight(),
                self.backends[b].state.in_flight(),
            );
            return if fa * wb <= fb * wa { a } else { b };
        }
        if let [only] = cands {
            return *only;
        }
        let mut best: Vec<usize> = Vec::with_capacity(cands.len());
        let (mut best_f, mut best_w) = (0u64, 1u64);
        for &i in cands {
            let (f, w) = (
                self.backends[i].state.in_flight(),
                self.weight_of(i, now, up),
            );
            if best.is_empty() || f * best_w < best_f * w {
                best.clear();
                best.push(i);
                (best_f, best_w) = (f, w);
            } else if f * best_w == best_f * w {
                best.push(i);
            }
        }
        if best.len() == 1 {
            return best[0];
        }
        self.round_robin(&best, now, up)
    }

    /// Smooth weighted round robin (nginx) among `cands`.
    fn round_robin(&self, cands: &[usize], now: Instant, up: &Upstream) -> usize {
        let mut rr = self.rr.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0i64;
        let mut best = cands[0];
        for &i in cands {
            let w = self.weight_of(i, now, up) as i64;
            rr[i] += w;
            total += w;
            if rr[i] > rr[best] {
                best = i;
            }
        }
        rr[best] -= total;
        best
    }
}

impl UpstreamRuntime {
    /// Choose a backend for an attempt, avoiding those in `tried` while others exist.
    pub fn select(&self, now: Instant, tried: &[String]) -> Option<Pick> {
        // Among pools with weight: prefer those with a healthy untried backend, then a healthy
        // one, then any.
        let pool = self
            .weighted_pool(|p| p.has_healthy(now, tried))
            .or_else(|| self.weighted_pool(|p| p.has_healthy(now, &[])))
            .or_else(|| self.weighted_pool(|_| true))?;
        let p = &self.pools[pool];
        let (cands, panic) = p.candidates(now, tried);
        if cands.is_empty() {
            return None;
        }
        let backend = match self.config.balance {
            Balance::LeastConn => p.least_conn(&cands, now, &self.config),
            Balance::RoundRobin => p.round_robin(&cands, now, &self.config),
        };
        Some(Pick {
            pool,
            backend,
            panic,
        })
    }

    /// A pool with weight for which `eligible` holds, chosen by the pool weights; `None`
    /// if there is none. Allocates nothing: with one eligible pool (the common case) it is
    /// the answer, otherwise a second pass finds the weighted pick.
    fn weighted_pool(&self, eligible: impl Fn(&PoolRuntime) -> bool) -> Option<usize> {
        let ok = |p: &PoolRuntime| p.weight > 0 && eligible(p);
        let (mut total, mut count, mut last) = (0u64, 0usize, None);
        for (i, p) in self.pools.iter().enumerate() {
            if ok(p) {
                total += u64::from(p.weight);
                count += 1;
                last = Some(i);
            }
        }
        if count <= 1 {
            return last;
        }
        let mut x = rand::rng().random_range(0..total);
        for (i, p) in self.pools.iter().enumerate() {
            // Health may change between the passes: then `last` is the answer.
            if ok(p) {
                let w = u64::from(p.weight);
                if x < w {
                    return Some(i);
                }
                x -= w;
            }
        }
        last
    }

    pub fn backend(&self, pick: Pick) -> &BackendEntry {
        &self.pools[pick.pool].backends[pick.backend]
    }
}

/// Build a backend entry (the address must already be resolved).
pub fn entry(
    addr: String,
    socket: SocketAddr,
    weight: u32,
    admin: AdminState,
    state: Arc<BackendState>,
) -> BackendEntry {
    BackendEntry {
        addr,
        socket,
        weight,
        draining: admin == AdminState::Drain,
        state,
    }
}

#[cfg(test)]
mod tests;
