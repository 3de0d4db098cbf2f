//! Fleet-wide blue/green flips (issue 9, item 5): three Switchyards sharing a document in a
//! real 3-member etcd. A flip through one node is applied by all of them without a failed
//! request, and its verification counts the new pool's traffic on every node: a green pool
//! that fails only on traffic through another node is still caught, and the rollback
//! applies everywhere. When the verifying node is killed mid-window, another node takes its
//! etcd lease over and finishes the verification for the fleet. A drain through one node
//! waits for every node's in-flight requests to the backend.

mod support;

use std::time::Duration;

use anyhow::ensure;
use serde_json::Value;
use support::backend::Backend;
use support::config::{OPERATOR, VIEWER};
use support::etcd_cluster::EtcdCluster;
use support::fleet::{blue_green, load_all, node, Node, CONVERGE};
use support::load::Load;
use support::{eventually, Request};

const FLIP: &str = "/v1/upstreams/api/flip";

fn flip(n: &Node, to: &str, verify: &str) -> anyhow::Result<Value> {
    let body = format!(r#"{{"to": "{to}", "verify": {verify}}}"#);
    let r = n.send(Request::post(FLIP, body).bearer(OPERATOR))?;
    ensure!(r.status == 200, "flip: {}", r.describe());
    r.json()
}

/// Wait until the flip seen by `n` is in `state`; returns it.
fn flip_state(n: &Node, state: &str, within: Duration) -> anyhow::Result<Value> {
    eventually(within, || {
        let f = n.send(Request::get(FLIP).bearer(VIEWER))?.json()?;
        ensure!(f["state"] == state, "flip is {}: {f}", f["state"]);
        Ok(f)
    })
}

/// Every node runs weights `blue`/`green` for upstream `api`.
fn weights_everywhere(nodes: &[&Node], blue: u64, green: u64) -> anyhow::Result<()> {
    eventually(CONVERGE, || {
        for n in nodes {
            let s = n.status()?;
            let pools = &s["planes"]["http"]["upstreams"]["api"]["pools"];
            ensure!(
                pools["blue"]["weight"] == blue && pools["green"]["weight"] == green,
                "node {} has {pools}",
                n.addr()
            );
        }
        Ok(())
    })
}

/// Backends blue and green, and nodes A (seeding a document with pools blue, all the
/// traffic, and green), B and C, all running it.
fn blue_green_fleet(etcd: &EtcdCluster) -> anyhow::Result<(Backend, Backend, Node, Node, Node)> {
    let (blue, green) = (Backend::start("blue")?, Backend::start("green")?);
    let doc = blue_green(&blue.addr_str(), &green.addr_str());
    let a = node(etcd, "a", Some(&doc))?;
    let b = node(etcd, "b", None)?;
    let c = node(etcd, "c", None)?;
    weights_everywhere(&[&a, &b, &c], 100, 0)?;
    Ok((blue, green, a, b, c))
}

#[test]
fn a_flip_is_applied_by_every_node_and_verified_on_the_whole_fleets_traffic() -> anyhow::Result<()>
{
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let (_blue, green, a, b, c) = blue_green_fleet(&etcd)?;
    let nodes = [&a, &b, &c];

    // A flip through B while all three carry load: no failed request anywhere, every node
    // ends on green, and B verifies it.
    let loads = load_all(&nodes)?;
    let f = flip(&b, "green", r#"{"window": "2s", "min_requests": 10}"#)?;
    assert_eq!(f["flip"]["state"], "verifying", "{f}");
    weights_everywhere(&nodes, 0, 100)?;
    for l in &loads {
        l.wait_for(20, Duration::from_secs(10))?;
    }
    flip_state(&b, "verified", Duration::from_secs(10))?;
    for l in loads {
        l.finish()?.assert_no_failures()?;
    }
    for n in nodes {
        let r = Request::get("/").send(n.http)?;
        assert!(r.text().contains("green"), "{}", r.describe());
    }

    // Back to blue (no traffic now: kept, unverified).
    flip(&a, "blue", r#"{"window": "1s", "min_requests": 10}"#)?;
    weights_everywhere(&nodes, 100, 0)?;
    flip_state(&a, "unverified", Duration::from_secs(10))?;

    // Green now fails, and only C carries traffic: B, which verifies, sees none of it on its
    // own, yet the fleet's error ratio breaches and every node rolls back to blue.
    green.set_status(500);
    let load_c = Load::start(c.http, 2, Request::get("/"));
    load_c.wait_for(20, Duration::from_secs(10))?;
    flip(
        &b,
        "green",
        r#"{"window": "10s", "min_requests": 10, "max_error_ratio": 0.2}"#,
    )?;
    let f = flip_state(&b, "rolled_back", Duration::from_secs(15))?;
    assert!(
        f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("error ratio")),
        "{f}"
    );
    weights_everywhere(&nodes, 100, 0)?;
    drop(load_c.finish()?);
    Ok(())
}

#[test]
fn when_the_verifier_is_killed_mid_window_another_node_finishes_the_verification(
) -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let (_blue, green, a, mut b, c) = blue_green_fleet(&etcd)?;
    let survivors = [&a, &c];
    let loads = load_all(&survivors)?;

    // B verifies a flip to green; A and C see its progress through etcd.
    let f = flip(
        &b,
        "green",
        r#"{"window": "20s", "min_requests": 10, "max_error_ratio": 0.2}"#,
    )?;
    assert_eq!(f["flip"]["state"], "verifying", "{f}");
    assert_eq!(f["flip"]["verifier"], "b", "{f}");
    weights_everywhere(&[&a, &b, &c], 0, 100)?;
    for n in survivors {
        eventually(Duration::from_secs(10), || {
            let f = n.send(Request::get(FLIP).bearer(VIEWER))?.json()?;
            ensure!(
                f["state"] == "verifying" && f["requests"].as_u64() > Some(0),
                "{f}"
            );
            Ok(())
        })?;
    }

    // B dies mid-window (SIGKILL), then green starts failing: only a verifier that took the
    // window over can see it, and its rollback applies on every survivor.
    b.sy.stop();
    let killed = std::time::Instant::now();
    green.set_status(500);
    for n in survivors {
        let f = flip_state(n, "rolled_back", Duration::from_secs(25))?;
        eprintln!(
            "{}: rolled back {:?} after B was killed: {f}",
            n.addr(),
            killed.elapsed()
        );
        assert!(
            f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("error ratio")),
            "{f}"
        );
        assert!(f["rollback_version"].as_u64().is_some(), "{f}");
        assert!(f["verifier"] == "a" || f["verifier"] == "c", "{f}");
        assert_eq!(
            n.status()?["flips"]["api"],
            f,
            "GET /v1/status shows it too"
        );
    }
    weights_everywhere(&survivors, 100, 0)?;
    for l in loads {
        drop(l.finish()?);
    }
    for n in survivors {
        let r = Request::get("/").send(n.http)?;
        assert!(r.text().contains("blue"), "{}", r.describe());
    }
    Ok(())
}

/// `POST …/backends/{b}/drain?wait=…` through `n`.
fn drain(n: &Node, backend: &str, wait: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/upstreams/api/backends/{backend}/drain?wait={wait}");
    let r = n.send(Request::post(&path, "").bearer(OPERATOR))?;
    ensure!(r.status == 200, "drain: {}", r.describe());
    r.json()
}

#[test]
fn a_drain_waits_for_every_nodes_requests_in_flight() -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let (slow, fast) = (Backend::start("slow")?, Backend::start("fast")?);
    let text = support::fleet::shared(&slow.addr_str()).replace(
        &format!("backends = [\"{}\"]", slow.addr_str()),
        &format!(
            "backends = [\"{}\", \"{}\"]",
            slow.addr_str(),
            fast.addr_str()
        ),
    );
    let a = node(&etcd, "a", Some(&text))?;
    let b = node(&etcd, "b", None)?;
    let c = node(&etcd, "c", None)?;
    let nodes = [&a, &b, &c];
    slow.set_delay(Duration::from_millis(2500));
    let loads = load_all(&nodes)?;
    // Requests in flight to the slow backend on every node.
    eventually(Duration::from_secs(10), || {
        ensure!(slow.in_flight() >= 2, "{} in flight", slow.in_flight());
        Ok(())
    })?;

    // Too short a wait: the answer names the nodes that still have requests in flight.
    let d = drain(&a, &slow.addr_str(), "200ms")?;
    assert_eq!(d["result"], "applied", "{d}");
    assert_eq!(d["drain"]["drained"], false, "{d}");
    assert!(
        !d["drain"]["waiting_on"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{d}"
    );
    assert_eq!(
        d["drain"]["instances"].as_array().map(Vec::len),
        Some(3),
        "{d}"
    );

    // Long enough: every node's requests to it finished (and none started since).
    let d = drain(&b, &slow.addr_str(), "20s")?;
    assert_eq!(d["drain"]["drained"], true, "{d}");
    for l in loads {
        l.finish()?.assert_no_failures()?;
    }
    Ok(())
}
