//! Automatic failover end to end, against a real primary and two streaming replicas and the
//! `switchyard` binary with the default failure detection (checks every 300 ms, down after
//! 3 failures):
//!
//! - SIGKILL the primary (and its processes, as a host crash) while 8 clients insert rows:
//!   writes resume on a promoted replica, the clients' connections stay usable (failed
//!   inserts get SQLSTATE class 08), the old primary is fenced in the config (persisted,
//!   audited), the other replica follows the new primary, and the old primary started again
//!   gets no traffic.
//! - With synchronous replication, only the synchronous standby is promoted (even against a
//!   higher `priority`), and every acknowledged insert is on it.
//! - A killed replica: reads issued after it died all succeed (on the other replica or the
//!   primary).
//!
//! The time from the kill to the first acknowledged write is printed; its figures are
//! recorded in BENCHMARKS.md (`benches/failover.sh`). Skips (with a message) only when no
//! PostgreSQL server binaries are installed.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use serde_json::Value;
use support::pg::client::{connect, Router};
use support::pg::ha::{all_healthy, rows, status, superuser, wait_until, Writers};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};

const TABLE: &str = "create table ha (writer int, seq int, primary key (writer, seq))";

/// Index of the node `/v1/status` shows as the primary.
fn primary_index(s: &Value) -> Option<usize> {
    s["nodes"]
        .as_array()?
        .iter()
        .position(|n| n["role"] == "primary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_stays_fenced() -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, TABLE)?;
    let router = Router::start(&pg, "", &[&superuser()])?;
    all_healthy(&router).await?;
    let config = router.config(SUPERUSER, SUPERUSER_PASSWORD);
    let writers = Writers::start(&config, 8).await?;
    writers.wait_acked(200, Duration::from_secs(10)).await?;

    let killed = Instant::now();
    pg.kill(0);
    // Inserts sent before the kill returned may have been answered by the dying primary.
    let dead = Instant::now();
    let resumed = wait_until(Duration::from_secs(15), || async {
        writers
            .first_ack_after(dead)
            .ok_or_else(|| anyhow!("no write since the kill"))
    })
    .await?;
    eprintln!(
        "failover: SIGKILL of the primary to the first acknowledged write: {:?}",
        resumed - killed
    );
    let n = writers.acked();
    // Writes keep going.
    writers.wait_acked(n + 100, Duration::from_secs(5)).await?;
    let seen = writers.finish().await;
    ensure!(
        seen.closed == 0,
        "{} client connections were closed: {:?}\n{}",
        seen.closed,
        seen.errors
            .iter()
            .map(|e| format!("{} {}", e.1, e.2))
            .collect::<std::collections::BTreeSet<_>>(),
        router
            .sy
            .stderr()
            .lines()
            .filter(|l| !l.contains("server login failed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (_, code, message) in &seen.errors {
        ensure!(code.starts_with("08"), "unexpected error {code}: {message}");
    }
    eprintln!(
        "{} inserts acknowledged, {} failed with class 08",
        seen.acked.len(),
        seen.errors.len()
    );

    // The new primary, the fence, the record.
    let s = status(&router)?;
    let new = primary_index(&s).ok_or_else(|| anyhow!("no primary in {s}"))?;
    ensure!(new != 0, "the old primary is still the primary: {s}");
    let old = &s["nodes"][0];
    ensure!(
        old["role"] == "replica" && old["fenced"].is_string(),
        "old primary not fenced: {old}"
    );
    ensure!(
        old["fence"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("failover")),
        "{old}"
    );
    let attempt = &s["failover"]["history"][0];
    ensure!(
        attempt["outcome"] == "ok" && attempt["kind"] == "failover",
        "{attempt}"
    );
    ensure!(
        attempt["new_primary"] == s["nodes"][new]["addr"],
        "{attempt}"
    );
    let text = tokio::task::block_in_place(|| router.sy.config_text())?;
    ensure!(
        text.contains("fenced = "),
        "the fence is not in the config file:\n{text}"
    );
    let audit = tokio::task::block_in_place(|| router.sy.audit())?;
    ensure!(
        audit
            .iter()
            .any(|l| l["action"] == "postgres.failover" && l["result"] == "applied"),
        "no failover in the audit log: {audit:?}"
    );

    // Acknowledged inserts that did not reach the promoted replica (asynchronous
    // replication may lose the last ones; the synchronous test below may not).
    let on_new = rows(&pg, new)?;
    let lost = seen.acked.iter().filter(|r| !on_new.contains(r)).count();
    eprintln!("asynchronous replication: {lost} acknowledged inserts not on the new primary");

    // The other replica follows the new primary.
    let other = 3 - new;
    let client = connect(&config).await?;
    client
        .execute("insert into ha values (100, 1)", &[])
        .await?;
    wait_until(Duration::from_secs(30), || async {
        let n = pg.psql(other, "select count(*) from ha where writer = 100")?;
        ensure!(
            n == "1",
            "replica {other} has not replayed the new primary's write"
        );
        Ok(())
    })
    .await?;

    // The old primary comes back (as a primary, with its own timeline): no traffic.
    pg.restart(0)?;
    wait_until(Duration::from_secs(10), || async {
        let s = status(&router)?;
        ensure!(s["nodes"][0]["reachable"] == true, "{}", s["nodes"][0]);
        Ok(())
    })
    .await?;
    let before = pg.psql(0, "select count(*) from ha")?;
    for seq in 2..50 {
        client
            .execute("insert into ha values (100, $1)", &[&seq])
            .await?;
        client.query("select count(*) from ha", &[]).await?;
    }
    ensure!(
        pg.psql(0, "select count(*) from ha")? == before,
        "the fenced node got writes"
    );
    let s = status(&router)?;
    ensure!(
        s["nodes"][0]["fenced"].is_string() && primary_index(&s) == Some(new),
        "{s}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_replication_promotes_the_synchronous_standby_and_loses_nothing(
) -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, TABLE)?;
    pg.psql(
        0,
        "alter system set synchronous_standby_names = 'FIRST 1 (replica2)'",
    )?;
    pg.psql(0, "select pg_reload_conf()")?;
    pg.wait_for(
        0,
        "select sync_state from pg_stat_replication where application_name = 'replica2'",
        "sync",
        Duration::from_secs(10),
    )?;
    // replica1 has the higher priority: only synchronous mode keeps it from being chosen.
    let nodes = vec![
        format!(
            r#"{{ addr = "127.0.0.1:{}", role = "primary" }}"#,
            pg.node(0).port
        ),
        format!(
            r#"{{ addr = "127.0.0.1:{}", role = "replica", priority = 500 }}"#,
            pg.node(1).port
        ),
        format!(
            r#"{{ addr = "127.0.0.1:{}", role = "replica" }}"#,
            pg.node(2).port
        ),
    ];
    let settings = r#"failover = { check_interval = "100ms", failure_threshold = 3 }"#;
    let router = Router::start_nodes(&nodes, settings, &[&superuser()])?;
    all_healthy(&router).await?;
    wait_until(Duration::from_secs(10), || async {
        let s = status(&router)?;
        let sync = &s["failover"]["synchronous_standbys"];
        ensure!(
            *sync == serde_json::json!(["replica2"]),
            "synchronous standbys: {sync}"
        );
        Ok(())
    })
    .await?;
    let config = router.config(SUPERUSER, SUPERUSER_PASSWORD);
    let writers = Writers::start(&config, 8).await?;
    writers.wait_acked(200, Duration::from_secs(10)).await?;
    let killed = Instant::now();
    pg.kill(0);
    wait_until(Duration::from_secs(15), || async {
        writers
            .first_ack_after(killed)
            .ok_or_else(|| anyhow!("no write since the kill"))
    })
    .await?;
    let seen = writers.finish().await;
    let s = status(&router)?;
    ensure!(
        primary_index(&s) == Some(2),
        "replica2 was not promoted: {s}"
    );
    let on_new = rows(&pg, 2)?;
    let lost: Vec<_> = seen.acked.iter().filter(|r| !on_new.contains(r)).collect();
    ensure!(
        lost.is_empty(),
        "{} acknowledged inserts lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "synchronous: all {} acknowledged inserts are on the new primary",
        seen.acked.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_a_killed_replica() -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    let settings = "routing = { read_write_split = true }\n\
        failover = { check_interval = \"100ms\", failure_threshold = 3 }";
    let router = Router::start(&pg, settings, &[&superuser()])?;
    all_healthy(&router).await?;
    let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    let port = |rows: Vec<tokio_postgres::Row>| -> anyhow::Result<u16> {
        let p: &str = rows.first().context("no row")?.try_get(0)?;
        Ok(p.parse()?)
    };
    // Warm both replicas' pools.
    let mut served = HashSet::new();
    for _ in 0..50 {
        served.insert(port(
            client.query("select current_setting('port')", &[]).await?,
        )?);
    }
    ensure!(
        !served.contains(&pg.node(0).port),
        "reads went to the primary: {served:?}"
    );
    pg.kill(1);
    let dead = pg.node(1).port;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut after = Vec::new();
    while Instant::now() < deadline {
        let p = client
            .query("select current_setting('port')", &[])
            .await
            .context("a read issued after the replica died failed")?;
        after.push(port(p)?);
    }
    ensure!(
        !after.is_empty() && !after.contains(&dead),
        "reads still reached the dead replica"
    );
    let tail = &after[after.len() / 2..];
    ensure!(
        tail.iter().all(|p| *p == pg.node(2).port),
        "reads did not settle on the other replica: {:?}",
        &tail[..tail.len().min(20)]
    );
    let s = status(&router)?;
    ensure!(s["nodes"][1]["down"] == true, "{}", s["nodes"][1]);
    Ok(())
}
