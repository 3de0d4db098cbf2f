//! Two Switchyard sidecars (one beside each application instance) watching the same real
//! primary and two streaming replicas: when the primary is killed, both fail over to the
//! same replica; exactly one node is promoted (the second sidecar adopts what the first
//! promoted, or both pick the same node by the same rule), and writes through either sidecar
//! land on it.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::Duration;

use anyhow::{anyhow, ensure};
use serde_json::Value;
use support::pg::client::{connect, Router};
use support::pg::ha::{status, wait_until};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};

const SETTINGS: &str = r#"failover = { check_interval = "100ms", failure_threshold = 3 }"#;

fn primary_of(s: &Value) -> Option<String> {
    s["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["role"] == "primary")
        .and_then(|n| n["addr"].as_str().map(str::to_string))
}

/// After node 0 was killed: wait until every router shows the same new primary (and, with
/// `fenced`, node 0 fenced), check that exactly one node left recovery, and return its index.
async fn agreed_new_primary(
    pg: &PgCluster,
    routers: &[&Router],
    fenced: bool,
) -> anyhow::Result<usize> {
    let old = format!("127.0.0.1:{}", pg.node(0).port);
    let mut primaries = Vec::new();
    for r in routers {
        let p = wait_until(Duration::from_secs(20), || async {
            let s = status(r)?;
            let p = primary_of(&s).ok_or_else(|| anyhow!("no primary: {s}"))?;
            ensure!(
                p != old && (!fenced || s["nodes"][0]["fenced"].is_string()),
                "{}",
                s["failover"]
            );
            Ok(p)
        })
        .await?;
        primaries.push(p);
    }
    ensure!(
        primaries.windows(2).all(|w| w[0] == w[1]),
        "the sidecars disagree: {primaries:?}"
    );
    let promoted: Vec<usize> = (1..pg.len())
        .filter(|&i| {
            pg.psql(i, "select pg_is_in_recovery()")
                .is_ok_and(|v| v == "f")
        })
        .collect();
    ensure!(promoted.len() == 1, "nodes out of recovery: {promoted:?}");
    let new = promoted[0];
    ensure!(primaries[0] == format!("127.0.0.1:{}", pg.node(new).port));
    Ok(new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_fail_over_to_the_same_replica() -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, "create table t (via text)")?;
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let a = Router::start(&pg, SETTINGS, &[&user])?;
    let b = Router::start(&pg, SETTINGS, &[&user])?;
    for r in [&a, &b] {
        wait_until(Duration::from_secs(15), || async {
            let s = status(r)?;
            for n in s["nodes"].as_array().into_iter().flatten() {
                ensure!(n["reachable"] == true, "{n}");
            }
            Ok(())
        })
        .await?;
    }
    pg.kill(0);
    let new = agreed_new_primary(&pg, &[&a, &b], true).await?;
    for (name, r) in [("a", &a), ("b", &b)] {
        let c = connect(&r.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
        c.execute("insert into t values ($1)", &[&name]).await?;
    }
    ensure!(
        pg.psql(new, "select count(*) from t")? == "2",
        "writes did not meet on one primary"
    );
    Ok(())
}

/// The settings with the etcd failover lease at `endpoint`.
fn with_etcd(endpoint: &str) -> String {
    format!(
        r#"failover = {{ check_interval = "100ms", failure_threshold = 3, etcd = {{ endpoints = ["{endpoint}"], prefix = "/sy-test", lease_ttl = "5s" }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_etcd_lease_one_sidecar_promotes_and_the_other_follows() -> anyhow::Result<()> {
    let Some(etcd) = support::etcd::Etcd::start()? else {
        return Ok(());
    };
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let settings = with_etcd(&etcd.endpoint());
    let a = Router::start(&pg, &settings, &[&user])?;
    let b = Router::start(&pg, &settings, &[&user])?;
    for r in [&a, &b] {
        wait_until(Duration::from_secs(15), || async {
            let s = status(r)?;
            ensure!(s["nodes"][2]["reachable"] == true, "{s}");
            Ok(())
        })
        .await?;
    }
    pg.kill(0);
    let new = agreed_new_primary(&pg, &[&a, &b], false).await?;
    let primary = format!("127.0.0.1:{}", pg.node(new).port);
    // The decision is recorded, and the lease given back, after the write route moved (the
    // promotion does not wait on etcd): wait for both.
    wait_until(Duration::from_secs(10), || async {
        let decision = tokio::task::block_in_place(|| etcd.get("/sy-test/main/primary"))?;
        ensure!(
            decision.as_deref() == Some(primary.as_str()),
            "etcd says {decision:?}"
        );
        let leader = tokio::task::block_in_place(|| etcd.get("/sy-test/main/leader"))?;
        ensure!(leader.is_none(), "the lease was not given back: {leader:?}");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_nothing_is_promoted() -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(1)? else {
        return Ok(());
    };
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    // Nothing listens there.
    let closed = format!("http://127.0.0.1:{}", support::free_port()?);
    let router = Router::start(&pg, &with_etcd(&closed), &[&user])?;
    wait_until(Duration::from_secs(15), || async {
        ensure!(status(&router)?["nodes"][1]["reachable"] == true);
        Ok(())
    })
    .await?;
    pg.kill(0);
    let s = wait_until(Duration::from_secs(10), || async {
        let s = status(&router)?;
        let held = s["failover"]["held_back"]["reason"].as_str().unwrap_or("");
        ensure!(held.contains("etcd"), "{}", s["failover"]);
        Ok(s)
    })
    .await?;
    eprintln!("held back: {}", s["failover"]["held_back"]["reason"]);
    ensure!(
        pg.psql(1, "select pg_is_in_recovery()")? == "t",
        "promoted without the lease"
    );
    ensure!(primary_of(&s).as_deref() == Some(format!("127.0.0.1:{}", pg.node(0).port).as_str()));
    Ok(())
}
