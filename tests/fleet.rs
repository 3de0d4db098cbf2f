//! Several Switchyards as one system (issue 9): a real 3-member etcd on loopback and three
//! real `switchyard` processes sharing one config document. A change through any node is
//! applied by all, `If-Match` is fleet-wide, a bad document is refused everywhere with its
//! key path, losing etcd stops changes (503) but never traffic, and version and history
//! survive restarts (etcd and file mode).

mod support;

use std::time::Duration;

use anyhow::{ensure, Context};
use support::backend::Backend;
use support::config::{ADMIN, VIEWER};
use support::etcd_cluster::EtcdCluster;
use support::fleet::{
    converged, fleet, load_all, node, node_via, put, put_ok, shared, start3, CONVERGE,
};
use support::load::Load;
use support::pg::ha::Relay;
use support::{consistently, eventually, live_backend, Request, Switchyard};

/// PUT `text` until it answers 200 (503s while etcd elects a leader); the version running
/// it. A PUT that timed out after etcd committed it answers "unchanged" on the next try.
fn applied_eventually(n: &Switchyard, text: &str) -> anyhow::Result<u64> {
    eventually(Duration::from_secs(15), || {
        let r = put(n, text, None)?;
        ensure!(r.status == 200, "PUT: {}", r.describe());
        r.json()?["version"].as_u64().context("version")
    })
}

/// `GET /v1/config/history` and its versions, newest first.
fn history(n: &Switchyard) -> anyhow::Result<(serde_json::Value, Vec<u64>)> {
    let h = n
        .send(Request::get("/v1/config/history").bearer(VIEWER))?
        .json()?;
    let versions = h["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    Ok((h, versions))
}

#[test]
fn a_change_through_any_node_is_applied_by_all_and_if_match_is_fleet_wide() -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let (blue, green) = (Backend::start("blue")?, Backend::start("green")?);
    let (a, b, c) = start3(&etcd, &blue.addr_str())?;

    // A change on A: B and C apply it, and serve it.
    assert_eq!(put_ok(&a, &shared(&green.addr_str()), Some(1))?, 2);
    converged(&[&a, &b, &c], 2, &green.addr_str())?;
    for n in [&b, &c] {
        let r = Request::get("/").send(n.http)?;
        assert_eq!(
            (r.status, r.text().contains("green")),
            (200, true),
            "{}",
            r.describe()
        );
    }

    // A stale If-Match on another node: 412, with the fleet's version as the ETag.
    let r = put(&b, &shared(&blue.addr_str()), Some(1))?;
    assert_eq!(r.status, 412, "{}", r.describe());
    assert_eq!(r.header("etag"), Some("\"2\""));

    // Two changes racing on two nodes from the same version: one wins, the other gets 412,
    // nothing is lost.
    let (t1, t2) = (shared("127.0.0.1:9101"), shared("127.0.0.1:9102"));
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| put(&a, &t1, Some(2)));
        let hb = s.spawn(|| put(&b, &t2, Some(2)));
        (ha.join(), hb.join())
    });
    let statuses = match (ra, rb) {
        (Ok(Ok(ra)), Ok(Ok(rb))) => {
            let mut s = [ra.status, rb.status];
            s.sort();
            s
        }
        other => anyhow::bail!("racing PUTs failed: {other:?}"),
    };
    assert_eq!(statuses, [200, 412]);
    let winner = eventually(CONVERGE, || {
        let s = c.status()?;
        ensure!(s["version"] == 3, "{s}");
        Ok(live_backend(&s))
    })?;
    assert!(
        winner == "127.0.0.1:9101" || winner == "127.0.0.1:9102",
        "{winner}"
    );
    converged(&[&a, &b, &c], 3, &winner)?;

    // The fleet view: every node, converged on version 3.
    let f = eventually(CONVERGE, || {
        let f = fleet(&c)?;
        ensure!(
            f["converged"] == true && f["members"].as_array().map(Vec::len) == Some(3),
            "{f}"
        );
        Ok(f)
    })?;
    assert_eq!(f["version"], 3);
    let ids: Vec<&str> = f["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(f["members"][0]["heartbeat"].is_string(), "{f}");

    // The history is the fleet's: C rolls back to the version A wrote.
    let r = c.send(Request::post("/v1/config/rollback", r#"{"version": 2}"#).bearer(ADMIN))?;
    assert_eq!(r.status, 200, "{}", r.describe());
    converged(&[&a, &b, &c], 4, &green.addr_str())?;
    let (h, versions) = history(&b)?;
    assert_eq!(versions, [4, 3, 2, 1], "{h}");
    assert_eq!(h["history"][2]["actor"], "admin");
    Ok(())
}

#[test]
fn a_bad_document_is_refused_by_every_node_with_its_key_path() -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let blue = Backend::start("blue")?;
    let (a, b, c) = start3(&etcd, &blue.addr_str())?;
    let nodes = [&a, &b, &c];
    let refused = |path: &str| {
        eventually(CONVERGE, || {
            for n in nodes {
                let s = n.status()?;
                let e = &s["last_reload_error"];
                ensure!(
                    e["source"] == "store",
                    "no store error on {}: {s}",
                    n.addr()
                );
                ensure!(e["errors"][0]["path"] == path, "want {path}, got {e}");
                ensure!(
                    s["version"] == 1 && live_backend(&s) == blue.addr_str(),
                    "{s}"
                );
            }
            Ok(())
        })
    };

    // Not TOML at all (written behind Switchyard's back, as with etcdctl).
    etcd.put("/sy-test/config", "[http\nbackends = 1\n")?;
    refused("(syntax)")?;
    // TOML that fails validation: the key path of the problem.
    let bad = shared(&blue.addr_str()).replace("backends = [", "weight = \"heavy\"\nbackends = [");
    etcd.put("/sy-test/config", &bad)?;
    refused("http.upstreams.api.pools.blue.weight")?;
    for n in nodes {
        let r = Request::get("/").send(n.http)?;
        assert_eq!(r.status, 200, "still serving version 1: {}", r.describe());
    }

    // Through the API a bad document is refused before it reaches etcd.
    let r = put(&b, &bad, None)?;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(
        r.json()?["errors"][0]["path"],
        "http.upstreams.api.pools.blue.weight"
    );
    assert_eq!(etcd.get("/sy-test/config")?.map(|(_, v)| v), Some(3));

    // A good change repairs the fleet: every node applies it and the error clears.
    let green = Backend::start("green")?;
    assert_eq!(put_ok(&c, &shared(&green.addr_str()), None)?, 4);
    converged(&nodes, 4, &green.addr_str())?;
    for n in nodes {
        assert!(n.status()?["last_reload_error"].is_null());
    }
    Ok(())
}

#[test]
fn losing_etcd_stops_changes_never_traffic_and_the_fleet_catches_up() -> anyhow::Result<()> {
    let Some(mut etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let blue = Backend::start("blue")?;
    let (a, b, c) = start3(&etcd, &blue.addr_str())?;
    let nodes = [&a, &b, &c];
    let loads = load_all(&nodes)?;

    // One member (the leader) killed: changes still apply everywhere.
    let leader = etcd.leader()?;
    etcd.kill(leader);
    let b1 = Backend::start("b1")?;
    let v = applied_eventually(&a, &shared(&b1.addr_str()))?;
    converged(&nodes, v, &b1.addr_str())?;
    etcd.start_all()?;

    // All of etcd gone: every node keeps serving, changes get 503, status says why.
    etcd.stop_all();
    for n in nodes {
        eventually(CONVERGE, || {
            let s = n.status()?;
            ensure!(s["store"]["reachable"] == false, "{}", s["store"]);
            ensure!(
                s["store"]["unreachable_since"].is_string(),
                "{}",
                s["store"]
            );
            Ok(())
        })?;
    }
    let r = put(&b, &shared("127.0.0.1:9"), None)?;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert!(
        r.text().contains("config store unreachable"),
        "{}",
        r.describe()
    );
    let r = b.send(Request::get("/v1/fleet").bearer(VIEWER))?;
    assert_eq!(r.status, 503, "{}", r.describe());
    let served: Vec<u64> = loads.iter().map(Load::done).collect();
    consistently(Duration::from_secs(1), || {
        for n in nodes {
            ensure!(n.version()? == v, "version moved");
        }
        Ok(())
    })?;
    for (l, before) in loads.iter().zip(served) {
        ensure!(
            l.done() > before,
            "a node stopped serving while etcd was down"
        );
    }

    // etcd back: every node reconnects, a change applies everywhere, the fleet converges.
    etcd.start_all()?;
    for n in nodes {
        eventually(Duration::from_secs(20), || {
            let s = n.status()?;
            ensure!(s["store"]["reachable"] == true, "{}", s["store"]);
            Ok(())
        })?;
    }
    let b2 = Backend::start("b2")?;
    let v2 = applied_eventually(&c, &shared(&b2.addr_str()))?;
    converged(&nodes, v2, &b2.addr_str())?;
    eventually(CONVERGE, || {
        let f = fleet(&a)?;
        ensure!(f["converged"] == true && f["version"] == v2, "{f}");
        Ok(())
    })?;
    for l in loads {
        l.finish()?.assert_no_failures()?;
    }
    Ok(())
}

#[test]
fn a_restarted_node_keeps_version_and_history_with_etcd() -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let blue = Backend::start("blue")?;
    let a = node(&etcd, "a", Some(&shared(&blue.addr_str())))?;
    let mut b = node(&etcd, "b", None)?;
    put_ok(&a, &shared("127.0.0.1:9102"), Some(1))?;
    put_ok(&b, &shared("127.0.0.1:9103"), Some(2))?;
    converged(&[&a, &b], 3, "127.0.0.1:9103")?;
    b.sy.restart()?;
    let s = b.status()?;
    assert_eq!(
        (s["version"].as_u64(), live_backend(&s)),
        (Some(3), "127.0.0.1:9103".into())
    );
    assert_eq!(s["applied_by"], "admin");
    let (h, versions) = history(&b)?;
    assert_eq!(versions, [3, 2, 1], "{h}");
    // SIGHUP (systemd's reload) re-reads referenced files; it must not kill a fleet node.
    b.signal("HUP")?;
    consistently(Duration::from_millis(500), || {
        ensure!(b.version()? == 3, "version moved");
        Ok(())
    })?;
    assert!(b
        .stderr()
        .contains("SIGHUP: the config comes from the store"));
    // The seeding node's file is not applied again: the store's version wins.
    let mut a = a;
    a.sy.restart()?;
    assert_eq!(a.version()?, 3);
    Ok(())
}

#[test]
fn a_restarted_node_keeps_version_and_history_with_a_state_file() -> anyhow::Result<()> {
    let conf = |port: u16, backend: u16| {
        format!(
            "{}\n[store]\nstate_file = \"state.json\"\n",
            support::config::Conf::new(port).backend(backend).render()
        )
    };
    let mut sy = Switchyard::start(|p| conf(p, 9001))?;
    let port = sy.port();
    assert_eq!(put_ok(&sy, &conf(port, 9002), Some(1))?, 2);
    assert_eq!(put_ok(&sy, &conf(port, 9003), Some(2))?, 3);
    sy.restart()?;
    let s = sy.status()?;
    assert_eq!(
        (s["version"].as_u64(), s["source"].as_str()),
        (Some(3), Some("api"))
    );
    // It holds the history's secrets: owner only.
    let mode = std::fs::metadata(sy.conf_dir().join("state.json"))?.permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(live_backend(&s), "127.0.0.1:9003");
    let (h, versions) = history(&sy)?;
    assert_eq!(versions, [3, 2, 1], "{h}");
    // Roll back to a version from before the restart.
    let r = sy.send(Request::post("/v1/config/rollback", r#"{"version": 2}"#).bearer(ADMIN))?;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(live_backend(&sy.status()?), "127.0.0.1:9002");
    // Edited while stopped: a new version on top of the kept ones.
    sy.stop();
    std::fs::write(sy.config_path(), conf(port, 9005))?;
    sy.restart()?;
    let s = sy.status()?;
    assert_eq!(
        (s["version"].as_u64(), s["source"].as_str()),
        (Some(5), Some("startup"))
    );
    Ok(())
}

#[test]
fn a_node_cut_off_from_etcd_keeps_serving_and_resyncs_after_compaction() -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let blue = Backend::start("blue")?;
    let a = node(&etcd, "a", Some(&shared(&blue.addr_str())))?;
    let b = node(&etcd, "b", None)?;
    // C reaches etcd only through relays the test can cut.
    let rt = support::backend::runtime();
    let mut relays = Vec::new();
    for e in etcd.endpoints() {
        let port: u16 = e.rsplit(':').next().context("port")?.parse()?;
        relays.push(rt.block_on(Relay::start(port))?);
    }
    let through: Vec<String> = relays
        .iter()
        .map(|r| format!("\"http://127.0.0.1:{}\"", r.port))
        .collect();
    let c = node_via(&format!("[{}]", through.join(", ")), "c", None)?;
    converged(&[&a, &b, &c], 1, &blue.addr_str())?;
    let load = Load::start(c.http, 2, Request::get("/"));
    load.wait_for(20, Duration::from_secs(10))?;

    relays.iter().for_each(Relay::cut);
    eventually(CONVERGE, || {
        let s = c.status()?;
        ensure!(s["store"]["reachable"] == false, "{}", s["store"]);
        Ok(())
    })?;
    let green = Backend::start("green")?;
    assert_eq!(put_ok(&a, &shared(&green.addr_str()), Some(1))?, 2);
    converged(&[&a, &b], 2, &green.addr_str())?;
    let r = put(&c, &shared(&blue.addr_str()), None)?;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(c.version()?, 1, "C cannot have seen version 2");
    // etcd forgets the revisions C would resume from: C must read the document in full.
    etcd.compact()?;

    relays.iter().for_each(Relay::restore);
    converged(&[&a, &b, &c], 2, &green.addr_str())?;
    eventually(CONVERGE, || {
        let s = c.status()?;
        ensure!(s["store"]["reachable"] == true, "{}", s["store"]);
        Ok(())
    })?;
    assert!(
        c.stderr().contains("reading the config document in full"),
        "C resynced without noticing the compaction:\n{}",
        c.stderr()
    );
    load.wait_for(20, Duration::from_secs(10))?;
    load.finish()?.assert_no_failures()?;
    Ok(())
}

#[test]
fn a_node_started_while_etcd_is_down_runs_its_own_file_then_catches_up() -> anyhow::Result<()> {
    let Some(mut etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let blue = Backend::start("blue")?;
    let a = node(&etcd, "a", Some(&shared(&blue.addr_str())))?;
    let green = Backend::start("green")?;
    assert_eq!(put_ok(&a, &shared(&green.addr_str()), Some(1))?, 2);
    etcd.stop_all();
    // D's own file holds a whole config (as a ConfigMap would): with etcd down it runs that
    // as version 0 and serves it; once etcd answers, the store's version wins.
    let d = node(&etcd, "d", Some(&shared(&blue.addr_str())))?;
    let s = d.status()?;
    assert_eq!(
        (s["version"].as_u64(), live_backend(&s)),
        (Some(0), blue.addr_str())
    );
    assert_eq!(s["store"]["reachable"], false, "{s}");
    let r = Request::get("/").send(d.http)?;
    assert!(r.text().contains("blue"), "{}", r.describe());
    etcd.start_all()?;
    converged(&[&a, &d], 2, &green.addr_str())?;
    let r = Request::get("/").send(d.http)?;
    assert!(r.text().contains("green"), "{}", r.describe());
    Ok(())
}
