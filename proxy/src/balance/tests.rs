use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::registry::Registry;

/// An upstream with one pool per `(name, weight, backend weights)`.
fn upstream(balance: &str, pools: &[(&str, u32, &[u32])]) -> (UpstreamRuntime, Registry) {
    let reg = Registry::default();
    let mut text = format!("[http.upstreams.u]\nbalance = \"{balance}\"\nmax_fails = 1\n");
    let mut port = 1000;
    let mut built = Vec::new();
    for (name, weight, backends) in pools {
        let mut entries = Vec::new();
        let mut list = Vec::new();
        for w in backends.iter() {
            port += 1;
            let addr = format!("127.0.0.1:{port}");
            list.push(format!("{{ addr = \"{addr}\", weight = {w} }}"));
            let socket = addr.parse().unwrap_or_else(|e| panic!("{e}"));
            entries.push(entry(
                addr.clone(),
                socket,
                *w,
                AdminState::Enabled,
                reg.backend(&addr),
            ));
        }
        text.push_str(&format!(
            "[http.upstreams.u.pools.{name}]\nweight = {weight}\nbackends = [{}]\n",
            list.join(", ")
        ));
        built.push(PoolRuntime::new(
            name,
            *weight,
            entries,
            reg.pool("u", name),
        ));
    }
    let config = switchyard_config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let up = UpstreamRuntime {
        name: "u".into(),
        config: config.http.upstreams["u"].clone(),
        pools: built,
        budget: Default::default(),
    };
    (up, reg)
}

fn counts(up: &UpstreamRuntime, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let pick = up
            .select(Instant::now(), &[])
            .unwrap_or_else(|| panic!("no pick"));
        *out.entry(up.backend(pick).addr.clone()).or_default() += 1;
    }
    out
}

#[test]
fn idle_least_conn_splits_by_weight() {
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &[1, 3])]);
    let c = counts(&up, 400);
    assert_eq!(c["127.0.0.1:1001"], 100);
    assert_eq!(c["127.0.0.1:1002"], 300);
}

#[test]
fn least_conn_prefers_the_backend_with_fewer_in_flight() {
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &[1, 1, 1])]);
    let busy = &up.pools[0].backends[0].state;
    let _g = (busy.acquire(), busy.acquire());
    let c = counts(&up, 60);
    assert_eq!(c.get("127.0.0.1:1001"), None);
}

#[test]
fn round_robin_is_smooth_and_weighted() {
    let (up, _reg) = upstream("round_robin", &[("blue", 100, &[5, 1, 1])]);
    let order: Vec<usize> = (0..7)
        .map(|_| {
            up.select(Instant::now(), &[])
                .map(|p| p.backend)
                .unwrap_or(99)
        })
        .collect();
    // nginx's smooth weighted round robin for 5:1:1.
    assert_eq!(order, vec![0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn pools_split_by_weight_and_zero_weight_pools_get_nothing() {
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &[1]), ("green", 0, &[1])]);
    let c = counts(&up, 100);
    assert_eq!(c.get("127.0.0.1:1002"), None);
    let (up, _reg) = upstream("least_conn", &[("blue", 90, &[1]), ("green", 10, &[1])]);
    let c = counts(&up, 2000);
    let green = c.get("127.0.0.1:1002").copied().unwrap_or(0);
    assert!((120..=280).contains(&green), "green got {green} of 2000");
}

#[test]
fn tried_and_unhealthy_backends_are_skipped_while_others_exist() {
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &[1, 1, 1])]);
    let now = Instant::now();
    let tried = vec!["127.0.0.1:1001".to_string()];
    up.pools[0].backends[1]
        .state
        .record_failure(now, 1, Duration::from_secs(10), || true);
    for _ in 0..20 {
        let pick = up.select(now, &tried).unwrap_or_else(|| panic!("no pick"));
        assert_eq!(up.backend(pick).addr, "127.0.0.1:1003");
        assert!(!pick.panic);
    }
}

#[test]
fn all_unhealthy_is_panic_mode_not_failure() {
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &[1, 1])]);
    let now = Instant::now();
    for b in &up.pools[0].backends {
        b.state
            .record_failure(now, 1, Duration::from_secs(10), || true);
    }
    let pick = up.select(now, &[]).unwrap_or_else(|| panic!("no pick"));
    assert!(pick.panic);
}

#[test]
fn a_pool_without_healthy_backends_yields_to_another_live_pool() {
    let (up, _reg) = upstream("least_conn", &[("blue", 50, &[1]), ("green", 50, &[1])]);
    let now = Instant::now();
    up.pools[0].backends[0]
        .state
        .record_failure(now, 1, Duration::from_secs(10), || true);
    for _ in 0..50 {
        let pick = up.select(now, &[]).unwrap_or_else(|| panic!("no pick"));
        assert_eq!(pick.pool, 1);
    }
}

#[test]
fn max_ejected_percent_limits_ejections() {
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &[1, 1, 1, 1])]);
    let now = Instant::now();
    let pool = &up.pools[0];
    let mut ejected = 0;
    for b in &pool.backends {
        if b.state
            .record_failure(now, 1, Duration::from_secs(10), || pool.may_eject(now, 50))
        {
            ejected += 1;
        }
    }
    assert_eq!(ejected, 2, "50% of 4");
}

#[test]
fn large_pools_use_two_choices_and_still_avoid_busy_backends() {
    let weights = [1u32; 40];
    let (up, _reg) = upstream("least_conn", &[("blue", 100, &weights)]);
    let guards: Vec<_> = up.pools[0].backends[..20]
        .iter()
        .flat_map(|b| (0..5).map(|_| b.state.acquire()))
        .collect();
    let c = counts(&up, 400);
    let busy: usize = up.pools[0].backends[..20]
        .iter()
        .map(|b| c.get(&b.addr).copied().unwrap_or(0))
        .sum();
    assert!(busy < 150, "busy half got {busy} of 400");
    drop(guards);
    let _ = Arc::strong_count(&up.pools[0].backends[0].state);
}
