//! Operator Postgres operations in a fleet (issue 9): three Switchyard sidecars sharing one
//! config document in a real 3-member etcd, with the etcd failover lease, in front of a real
//! primary and a streaming replica.
//!
//! - A switchover sent to sidecar A holds the cluster's failover lease while it drains (a
//!   transaction through A is still open): a promote sent to B meanwhile gets 409 naming A,
//!   and nothing is promoted by it.
//! - The switchover runs once: one node leaves recovery, it is audited once, and B, which
//!   writes all along, sends its writes to the new primary within 1 s of A's decision.
//! - The old primary rebuilt as a replica and rejoined through B: every sidecar lifts the
//!   fence (none refuses the shared document for a fence it still remembered), and the
//!   fleet converges on one version.
//!
//! Skips (with a message) when etcd or the PostgreSQL server binaries are not installed.

mod support;

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, ensure};
use serde_json::Value;
use support::config::{control_section, AUDIT_LOG, OPERATOR};
use support::etcd_cluster::EtcdCluster;
use support::pg::client::{connect, listener_port, nodes_of, Router};
use support::pg::ha::{
    all_healthy, operator_post, status, superuser, wait_until, write_until_moved,
};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};
use support::{Request, Switchyard};

/// Where the failover lease and decisions live in etcd (the shared document is under
/// `/sy-test`).
const LEASE_PREFIX: &str = "/sy-pg";

/// The shared part: the test tokens and cluster `main` over every node of `pg` (node 0 the
/// primary) with the etcd failover lease. The cluster's listener is written with single
/// quotes so that [`sidecar`] rewrites only the control listener.
fn shared(pg: &PgCluster, etcd: &EtcdCluster) -> String {
    let nodes = nodes_of(pg);
    format!(
        "{control}\n[[postgres.clusters]]\nname = \"main\"\nlisten = '127.0.0.1:0'\n\
         failover = {{ check_interval = \"100ms\", failure_threshold = 3, check_timeout = \"2s\", write_pause_timeout = \"20s\", etcd = {{ endpoints = {endpoints}, prefix = \"{LEASE_PREFIX}\", lease_ttl = \"5s\" }} }}\n\
         nodes = [{nodes}]\nusers = [{user}]\n",
        control = control_section(0, "10s", "50ms"),
        endpoints = etcd.endpoints_toml(),
        nodes = nodes.join(", "),
        user = superuser(),
    )
}

/// A sidecar named `name` on the shared document in `etcd`; the first one's file holds
/// `seed`, the shared part it seeds the document with.
fn sidecar(etcd: &EtcdCluster, name: &str, seed: Option<&str>) -> anyhow::Result<Router> {
    let endpoints = etcd.endpoints_toml();
    let sy = Switchyard::start_with(&[], &|dir, port| {
        let head = match seed {
            Some(text) => text.replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            ),
            None => {
                format!("[control]\nlisten = \"127.0.0.1:{port}\"\naudit_log = \"{AUDIT_LOG}\"\n")
            }
        };
        let text = format!(
            "{head}\n[store]\nkind = \"etcd\"\nendpoints = {endpoints}\nprefix = \"/sy-test\"\nnode = \"{name}\"\ntimeout = \"1s\"\nlease_ttl = \"3s\"\n"
        );
        let path = dir.join("switchyard.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    })?;
    let port = support::eventually(Duration::from_secs(20), || listener_port(&sy.status()?))?;
    Ok(Router { sy, port })
}

fn primary_of(s: &Value) -> Option<&str> {
    s["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["role"] == "primary")?["addr"]
        .as_str()
}

/// The audit lines of every sidecar with `action` and `result`.
fn audited(sidecars: &[&Router], action: &str, result: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for r in sidecars {
        let lines = tokio::task::block_in_place(|| r.sy.audit())?;
        n += lines
            .iter()
            .filter(|l| l["action"] == action && l["result"] == result)
            .count();
    }
    Ok(n)
}

/// The port of the node that took an insert through `r`.
async fn write_through(r: &Router) -> anyhow::Result<u16> {
    let c = connect(&r.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    let row = c
        .query_one(
            "insert into t values ('w') returning inet_server_port()",
            &[],
        )
        .await?;
    Ok(row.get::<_, i32>(0) as u16)
}

/// A's decision in etcd: who decided and when (Unix milliseconds).
async fn decision(etcd: &EtcdCluster) -> anyhow::Result<(String, u64)> {
    wait_until(Duration::from_secs(10), || async {
        let key = format!("{LEASE_PREFIX}/main/decision");
        let (text, _) = tokio::task::block_in_place(|| etcd.get(&key))?
            .ok_or_else(|| anyhow!("no decision yet"))?;
        let d: Value = serde_json::from_str(&text)?;
        let by = d["by"].as_str().ok_or_else(|| anyhow!("{d}"))?;
        Ok((
            by.to_string(),
            d["at_ms"].as_u64().ok_or_else(|| anyhow!("{d}"))?,
        ))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_and_a_rejoin_sent_to_one_sidecar_happen_once_for_the_fleet(
) -> anyhow::Result<()> {
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let Some(mut pg) = PgCluster::start(1)? else {
        return Ok(());
    };
    pg.psql(0, "create table t (via text)")?;
    let a = sidecar(&etcd, "a", Some(&shared(&pg, &etcd)))?;
    let b = sidecar(&etcd, "b", None)?;
    let c = sidecar(&etcd, "c", None)?;
    let all = [&a, &b, &c];
    for r in all {
        all_healthy(r).await?;
    }
    let (old_port, new_port) = (pg.node(0).port, pg.node(1).port);
    let old = format!("127.0.0.1:{old_port}");
    let new = format!("127.0.0.1:{new_port}");

    // B writes all along; a transaction through A stays open, so A's switchover drains.
    let writer = write_until_moved(&b, old_port, Duration::from_secs(40)).await?;
    let open = connect(&a.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    open.batch_execute("begin; insert into t values ('open')")
        .await?;
    let control = a.sy.addr();
    let body = format!(r#"{{"to": "{new}"}}"#);
    let switchover = std::thread::spawn(move || {
        let req = Request::post("/v1/clusters/main/switchover", body.into_bytes());
        req.bearer(OPERATOR).send(control)
    });

    // While A holds the lease, a promote sent to B is refused, naming A.
    let leader = format!("{LEASE_PREFIX}/main/leader");
    let holder = wait_until(Duration::from_secs(10), || async {
        let held = tokio::task::block_in_place(|| etcd.get(&leader))?;
        held.map(|(v, _)| v)
            .ok_or_else(|| anyhow!("nobody holds the lease"))
    })
    .await?;
    ensure!(
        holder.ends_with(&format!("/{}", a.sy.pid()?)),
        "the lease is held by {holder}, not A"
    );
    let (code, body) = operator_post(
        &b,
        "/v1/clusters/main/promote",
        &format!(r#"{{"node": "{new}"}}"#),
    )?;
    let error = body["error"].as_str().unwrap_or("");
    ensure!(
        code == 409 && error.contains(&holder),
        "a promote through B while A held the lease answered {code}: {body}"
    );
    ensure!(
        pg.psql(1, "select pg_is_in_recovery()")? == "t",
        "promoted before A's drain ended"
    );
    eprintln!("promote through B while A switches over: {code} {error}");

    // The open transaction commits: the switchover goes on, once.
    open.batch_execute("commit").await?;
    let r = tokio::task::block_in_place(|| switchover.join())
        .map_err(|_| anyhow!("the switchover thread panicked"))??;
    ensure!(r.status == 200, "switchover through A: {}", r.describe());
    let (by, at_ms) = decision(&etcd).await?;
    ensure!(by == holder, "decided by {by}, the lease was {holder}'s");
    let (at, port) = writer.await??;
    let after = ms_after(at_ms, at)?;
    eprintln!("B's first write on the new primary came {after} ms after A's decision");
    ensure!(port == new_port, "B wrote to port {port}");
    ensure!(
        after <= 1000,
        "B moved its writes {after} ms after A's decision"
    );
    for (name, r) in [("a", &a), ("b", &b), ("c", &c)] {
        wait_until(Duration::from_secs(5), || async {
            let s = status(r)?;
            ensure!(
                primary_of(&s) == Some(new.as_str()) && s["nodes"][0]["fenced"].is_string(),
                "sidecar {name}: {}",
                s["nodes"]
            );
            Ok(())
        })
        .await?;
        let port = write_through(r).await?;
        ensure!(port == new_port, "sidecar {name} wrote to port {port}");
    }
    ensure!(
        pg.psql(0, "select pg_is_in_recovery()")? == "f"
            && pg.psql(1, "select pg_is_in_recovery()")? == "f",
        "a switchover leaves the old primary running, fenced, and promotes one node"
    );
    ensure!(
        audited(&all, "postgres.switchover", "applied")? == 1,
        "the switchover is not audited exactly once"
    );
    for action in ["postgres.failover", "postgres.promote"] {
        ensure!(
            audited(&all, action, "applied")? == 0,
            "{action} was recorded besides the switchover"
        );
    }

    // The old primary rebuilt as a replica of the new one, rejoined through B: the fence
    // is lifted on every sidecar.
    pg.rebuild_as_replica(0, 1)?;
    let rejoin = format!("/v1/clusters/main/nodes/{old}/rejoin");
    let (code, body) = operator_post(&b, &rejoin, "")?;
    ensure!(code == 200, "rejoin through B answered {code}: {body}");
    for (name, r) in [("a", &a), ("b", &b), ("c", &c)] {
        wait_until(Duration::from_secs(5), || async {
            let s = status(r)?;
            ensure!(
                s["nodes"][0]["fenced"].is_null() && s["nodes"][0]["role"] == "replica",
                "sidecar {name}: {}",
                s["nodes"][0]
            );
            Ok(())
        })
        .await?;
    }
    wait_until(Duration::from_secs(5), || async {
        let versions: Vec<Value> = tokio::task::block_in_place(|| {
            all.iter()
                .map(|r| Ok(r.sy.status()?["version"].clone()))
                .collect::<anyhow::Result<_>>()
        })?;
        ensure!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "the fleet runs different versions: {versions:?}"
        );
        Ok(())
    })
    .await?;
    ensure!(
        audited(&all, "postgres.rejoin", "applied")? == 1,
        "the rejoin is not audited exactly once"
    );
    let leftover = etcd.get(&leader)?;
    ensure!(
        leftover.is_none(),
        "the failover lease was not given back: {leftover:?}"
    );
    Ok(())
}

/// Milliseconds from `at_ms` (Unix milliseconds) to `t`.
fn ms_after(at_ms: u64, t: SystemTime) -> anyhow::Result<i64> {
    let t = t.duration_since(SystemTime::UNIX_EPOCH)?.as_millis() as i64;
    Ok(t - at_ms as i64)
}
