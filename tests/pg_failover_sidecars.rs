//! Two Switchyard sidecars (one beside each application instance) watching the same real
//! primary and two streaming replicas: when the primary is killed, both fail over to the
//! same replica; exactly one node is promoted (the second sidecar adopts what the first
//! promoted, or both pick the same node by the same rule), and writes through either sidecar
//! land on it.
//!
//! With the etcd failover lease, the sidecar that did not decide learns the decision through
//! an etcd watch: within 1 s of it, its writes go to the new primary, also when it took no
//! part in the failover (`auto_promote = false`).
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, ensure};
use serde_json::Value;
use support::pg::client::{connect, Router};
use support::pg::ha::{status, wait_until, write_until_moved};
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

/// The deciding sidecar's decision, once it is in etcd: who decided (its pid), the new
/// primary and when (Unix milliseconds).
struct Decision {
    pid: u32,
    primary: String,
    at_ms: u64,
}

async fn decision(etcd: &support::etcd::Etcd) -> anyhow::Result<Decision> {
    wait_until(Duration::from_secs(20), || async {
        let text = tokio::task::block_in_place(|| etcd.get("/sy-test/main/decision"))?;
        let d: Value =
            serde_json::from_str(text.as_deref().ok_or_else(|| anyhow!("no decision yet"))?)?;
        let pid = d["by"]
            .as_str()
            .and_then(|b| b.rsplit('/').next())
            .and_then(|p| p.parse().ok());
        Ok(Decision {
            pid: pid.ok_or_else(|| anyhow!("decision without a pid: {d}"))?,
            primary: d["primary"].as_str().unwrap_or("").to_string(),
            at_ms: d["at_ms"]
                .as_u64()
                .ok_or_else(|| anyhow!("decision without a time: {d}"))?,
        })
    })
    .await
}

/// etcd, a primary with two replicas (table `t` created) and two sidecars A and B with the
/// etcd failover lease, both seeing every node; B with `auto_promote = false` if `passive`.
/// `None` when etcd or PostgreSQL is not installed.
async fn etcd_pair(
    passive: bool,
) -> anyhow::Result<Option<(support::etcd::Etcd, PgCluster, Router, Router)>> {
    let Some(etcd) = support::etcd::Etcd::start()? else {
        return Ok(None);
    };
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(None);
    };
    pg.psql(0, "create table t (via text)")?;
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let settings = with_etcd(&etcd.endpoint());
    let a = Router::start(&pg, &settings, &[&user])?;
    let b_settings = match passive {
        true => settings.replace("failover = {", "failover = { auto_promote = false,"),
        false => settings,
    };
    let b = Router::start(&pg, &b_settings, &[&user])?;
    for r in [&a, &b] {
        wait_until(Duration::from_secs(15), || async {
            let s = status(r)?;
            ensure!(s["nodes"][2]["reachable"] == true, "{s}");
            Ok(())
        })
        .await?;
    }
    Ok(Some((etcd, pg, a, b)))
}

/// Milliseconds from the decision (`at_ms`) to `t`.
fn ms_after(at_ms: u64, t: SystemTime) -> anyhow::Result<i64> {
    let t = t.duration_since(SystemTime::UNIX_EPOCH)?.as_millis() as i64;
    Ok(t - at_ms as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_etcd_lease_one_sidecar_promotes_and_the_other_follows() -> anyhow::Result<()> {
    let Some((etcd, mut pg, a, b)) = etcd_pair(false).await? else {
        return Ok(());
    };
    let old_port = pg.node(0).port;
    let writers = [
        write_until_moved(&a, old_port, Duration::from_secs(30)).await?,
        write_until_moved(&b, old_port, Duration::from_secs(30)).await?,
    ];
    pg.kill(0);
    let new = agreed_new_primary(&pg, &[&a, &b], false).await?;
    let primary = format!("127.0.0.1:{}", pg.node(new).port);
    let d = decision(&etcd).await?;
    ensure!(
        d.primary == primary,
        "etcd decided {}, the sidecars {primary}",
        d.primary
    );
    let decider = [&a, &b].iter().position(|r| r.sy.pid().ok() == Some(d.pid));
    let decider = decider.ok_or_else(|| anyhow!("decided by pid {}, neither sidecar", d.pid))?;
    // The other sidecar writes to the new primary within 1 s of the decision.
    for (i, w) in writers.into_iter().enumerate() {
        let (at, port) = w.await??;
        let after = ms_after(d.at_ms, at)?;
        eprintln!("sidecar {i} (decided: {}): first write on the new primary {after} ms after the decision", i == decider);
        ensure!(
            port == pg.node(new).port,
            "sidecar {i} wrote to port {port}"
        );
        ensure!(
            i == decider || after <= 1000,
            "sidecar {i} moved its writes {after} ms after the decision"
        );
    }
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
async fn a_sidecar_that_took_no_part_stops_writing_to_the_old_primary_within_a_second(
) -> anyhow::Result<()> {
    // B never fails over by itself: it only follows what etcd says.
    let Some((etcd, mut pg, a, b)) = etcd_pair(true).await? else {
        return Ok(());
    };
    let old_port = pg.node(0).port;
    let writer = write_until_moved(&b, old_port, Duration::from_secs(30)).await?;
    pg.kill(0);
    let d = decision(&etcd).await?;
    ensure!(d.pid == a.sy.pid()?, "decided by pid {}, not A", d.pid);
    let (at, port) = writer.await??;
    let after = ms_after(d.at_ms, at)?;
    eprintln!(
        "B's first write on the new primary {} came {after} ms after A's decision",
        d.primary
    );
    ensure!(
        format!("127.0.0.1:{port}") == d.primary,
        "B wrote to port {port}, etcd decided {}",
        d.primary
    );
    let log: Vec<String> =
        b.sy.stderr()
            .lines()
            .filter(|l| l.contains("ollow") || l.contains("primary"))
            .map(str::to_string)
            .collect();
    ensure!(
        after <= 1000,
        "B moved its writes {after} ms after the decision; B's log:\n{}",
        log.join("\n")
    );
    // B fenced the old primary (and recorded the change in its own config).
    let s = status(&b)?;
    ensure!(s["nodes"][0]["fenced"].is_string(), "{s}");
    ensure!(primary_of(&s).as_deref() == Some(d.primary.as_str()), "{s}");
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
