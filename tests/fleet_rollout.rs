//! A rollout is one operation for the fleet (issue 19, item 5): three Switchyards sharing a
//! document in a real 3-member etcd, four backend processes of `v1` (see
//! `support::release`) replaced two at a time by the config's command. The rollout started
//! through A is driven by A under the upstream's lease and its state is in etcd: B refuses
//! a second one naming A, and every node shows A's progress. A is killed (SIGKILL) in the
//! middle of batch 1; B or C takes the lease over, drives the batch on from its step, and
//! finishes the rollout: every backend on `v2`, no failed request through the survivors.
//!
//! The driver judges a batch on the fleet's traffic, not its own: with the load through B
//! and C only, A still fails a `v2` answering 5% of requests with 500. An abort of that
//! failed rollout through B rewrites the fleet's record under the lease, so C shows it
//! `aborted`, with every backend back in rotation.

mod support;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::Value;
use support::config::{control_section, OPERATOR, VIEWER};
use support::etcd_cluster::EtcdCluster;
use support::fleet::{load_all, node, Node};
use support::release::{describe, Behaviour, Release, GOOD};
use support::{eventually, Request};

const ROLLOUT: &str = "/v1/upstreams/api/rollout";

/// Not a test of its own: the backend processes of [`Release`] run this binary with
/// `--exact release_backend_process`; without their variables it returns at once.
#[test]
fn release_backend_process() {
    support::release::serve_if_asked();
}

/// The state of backend `addr` of `api` on node `n` (`healthy`, `draining`, …).
fn backend_state(n: &Node, addr: &str) -> anyhow::Result<String> {
    let s = n.status()?;
    let pools = &s["planes"]["http"]["upstreams"]["api"]["pools"];
    let found = pools
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, p)| p["backends"].as_array().into_iter().flatten())
        .find(|b| b["addr"] == addr)
        .with_context(|| format!("no backend {addr} in {pools}"))?;
    Ok(found["state"].as_str().unwrap_or_default().to_string())
}

/// Wait until every backend of `release` is healthy on `n`.
fn all_healthy(n: &Node, release: &Release) -> anyhow::Result<()> {
    for addr in release.addrs() {
        eventually(Duration::from_secs(10), || {
            let s = backend_state(n, &addr)?;
            ensure!(s == "healthy", "{addr} is {s} on {}", n.addr());
            Ok(())
        })?;
    }
    Ok(())
}

fn rollout(n: &Node) -> anyhow::Result<Value> {
    let r = n.send(Request::get(ROLLOUT).bearer(VIEWER))?;
    ensure!(r.status == 200, "GET {ROLLOUT}: {}", r.describe());
    r.json()
}

#[test]
fn when_the_driver_is_killed_mid_batch_another_node_finishes_the_rollout() -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let release = Release::start(4, GOOD)?;
    let mut a = node(
        &etcd,
        "a",
        Some(&format!(
            "{}{}",
            control_section(0, "10s", "50ms"),
            release.config(&[])
        )),
    )?;
    let b = node(&etcd, "b", None)?;
    let c = node(&etcd, "c", None)?;
    for n in [&a, &b, &c] {
        all_healthy(n, &release)?;
    }
    let survivors = load_all(&[&b, &c])?;
    let load_a = load_all(&[&a])?;

    // A starts the rollout and drives it.
    let body = r#"{"batch_size": 2, "replace": {"command": "restart"}, "version": "v2",
        "drain_timeout": "5s", "ready_timeout": "15s",
        "verify": {"window": "4s", "max_error_ratio": 0.02, "min_requests": 5}}"#;
    let r = a.send(Request::post(ROLLOUT, body).bearer(OPERATOR))?;
    ensure!(r.status == 201, "POST {ROLLOUT}: {}", r.describe());
    let started = Instant::now();
    assert_eq!(r.json()?["rollout"]["driver"], "a", "{}", r.describe());

    // A second rollout through B is refused, naming A; B and C show A's progress.
    let r = b.send(Request::post(ROLLOUT, body).bearer(OPERATOR))?;
    assert_eq!(r.status, 409, "{}", r.describe());
    let error = r.json()?["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("driven by node \"a\""), "{}", r.describe());
    for n in [&b, &c] {
        eventually(Duration::from_secs(10), || {
            let r = rollout(n)?;
            ensure!(
                r["state"] == "running" && r["driver"] == "a",
                "{}",
                describe(&r)
            );
            Ok(())
        })?;
    }

    // A dies (SIGKILL) while batch 1 is being verified, as B sees it in the store.
    let seen = eventually(Duration::from_secs(20), || {
        let r = rollout(&b)?;
        ensure!(
            r["current"] == 0 && r["batches"][0]["step"] == "verifying",
            "{}",
            describe(&r)
        );
        Ok(r)
    })?;
    a.sy.stop();
    let killed = Instant::now();
    eprintln!(
        "killed A in batch 1 ({}) after {:?}",
        seen["batches"][0]["step"],
        started.elapsed()
    );
    drop(load_a);

    // B or C takes the lease over and finishes the rollout.
    let taken = eventually(Duration::from_secs(30), || {
        let r = rollout(&b)?;
        ensure!(r["driver"] == "b" || r["driver"] == "c", "{}", describe(&r));
        Ok(r)
    })?;
    let took = killed.elapsed();
    let done = eventually(Duration::from_secs(60), || {
        let r = rollout(&c)?;
        ensure!(r["state"] == "succeeded", "{}", describe(&r));
        Ok(r)
    })?;
    let finished = killed.elapsed();
    eprintln!(
        "taken over by {} {took:?} after the kill, succeeded {finished:?} after it: {}",
        taken["driver"],
        describe(&done)
    );
    assert!(
        done["driver"] == "b" || done["driver"] == "c",
        "{}",
        describe(&done)
    );
    assert_eq!(
        done["takeovers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        describe(&done)
    );
    eventually(Duration::from_secs(5), || {
        let r = rollout(&b)?;
        ensure!(r == done, "B shows {}", describe(&r));
        Ok(())
    })?;
    for p in &release.ports {
        assert_eq!(release.version(*p)?, "v2", "backend {p}");
    }
    for n in [&b, &c] {
        all_healthy(n, &release)?;
    }
    for l in survivors {
        let report = l.finish()?;
        eprintln!(
            "{} requests through a survivor, {} failed",
            report.len(),
            report.failures().len()
        );
        report.assert_no_failures()?;
    }
    Ok(())
}

#[test]
fn a_batch_is_judged_on_the_fleets_traffic_and_an_abort_elsewhere_is_kept_in_the_store(
) -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let bad = Behaviour {
        error_every: 20,
        ..GOOD
    };
    let release = Release::start(4, bad)?;
    let seed = format!(
        "{}{}",
        control_section(0, "10s", "50ms"),
        release.config(&[])
    );
    let a = node(&etcd, "a", Some(&seed))?;
    let b = node(&etcd, "b", None)?;
    let c = node(&etcd, "c", None)?;
    for n in [&a, &b, &c] {
        all_healthy(n, &release)?;
    }
    // Every request goes through B and C; A, the driver, serves none.
    let load = load_all(&[&b, &c])?;

    let body = r#"{"batch_size": 2, "replace": {"command": "restart"}, "version": "v2",
        "drain_timeout": "5s", "ready_timeout": "15s",
        "verify": {"window": "6s", "max_error_ratio": 0.02, "min_requests": 20}}"#;
    let r = a.send(Request::post(ROLLOUT, body).bearer(OPERATOR))?;
    ensure!(r.status == 201, "POST {ROLLOUT}: {}", r.describe());
    let failed = eventually(Duration::from_secs(60), || {
        let r = rollout(&a)?;
        ensure!(r["state"] == "failed", "{}", describe(&r));
        Ok(r)
    })?;
    let batch = &failed["batches"][0];
    assert_eq!(failed["failed_batch"], 0, "{}", describe(&failed));
    let reason = batch["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("error ratio"), "{}", describe(&failed));
    let seen = batch["verified"]["requests"].as_u64().unwrap_or(0);
    assert!(
        seen >= 20,
        "A counted {seen} requests of B's and C's: {}",
        describe(&failed)
    );
    eprintln!("judged on B's and C's traffic: {reason} ({seen} requests)");

    // Abort through B: B takes the lease, puts the drains back and writes the record.
    let r = b.send(Request::post(&format!("{ROLLOUT}/abort"), "").bearer(OPERATOR))?;
    ensure!(r.status == 200, "abort through B: {}", r.describe());
    assert_eq!(r.json()?["rollout"]["state"], "aborted", "{}", r.describe());
    eventually(Duration::from_secs(10), || {
        let r = rollout(&c)?;
        ensure!(r["state"] == "aborted", "C shows {}", describe(&r));
        Ok(())
    })?;
    all_healthy(&c, &release)?;
    drop(load);
    Ok(())
}
