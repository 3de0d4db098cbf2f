//! Lag-aware reads end to end, against a real primary and two streaming replicas and the
//! `switchyard` binary with the read/write split on:
//!
//! - Read-your-writes: a client inserts a row and selects it at once, 1000 times, and never
//!   misses; once the replicas have caught up, its reads go to them again.
//! - A replica whose replay is paused (`pg_wal_replay_pause()`) stops receiving reads once it
//!   is past `max_replica_lag_bytes`; the other replica serves them.
//!
//! Which node served a read is told by `current_setting('port')`. Skips (with a message)
//! only when no PostgreSQL server binaries are installed.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use support::pg::client::{connect, Router};
use support::pg::ha::{all_healthy, served_by, superuser, wait_until};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_always_reads_its_own_writes() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, "create table ryw (id int primary key)")?;
    let settings = "routing = { read_write_split = true, read_your_writes = true }\n\
        failover = { check_interval = \"100ms\" }";
    let router = Router::start(&pg, settings, &[&superuser()])?;
    all_healthy(&router).await?;
    let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    let mut by_node: HashMap<u16, u32> = HashMap::new();
    for id in 0..1000 {
        client
            .execute("insert into ryw values ($1)", &[&id])
            .await?;
        let rows = client
            .query(
                "select id, current_setting('port') from ryw where id = $1",
                &[&id],
            )
            .await?;
        ensure!(rows.len() == 1, "insert {id} was not read back");
        let port: &str = rows[0].try_get(1)?;
        *by_node.entry(port.parse()?).or_default() += 1;
    }
    eprintln!("read-your-writes: 1000 of 1000 read back; reads by node port: {by_node:?}");
    // Quiet for a while: the replicas catch up and take the client's reads again.
    let replicas = [pg.node(1).port, pg.node(2).port];
    wait_until(Duration::from_secs(10), || async {
        let p = served_by(&client).await?;
        ensure!(replicas.contains(&p), "read served by {p}");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_the_lag_limit_gets_no_reads() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, "create table filler (x text)")?;
    let settings = "routing = { read_write_split = true, max_replica_lag_bytes = 65536 }\n\
        failover = { check_interval = \"100ms\" }";
    let router = Router::start(&pg, settings, &[&superuser()])?;
    all_healthy(&router).await?;
    let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    let (paused, other) = (pg.node(1).port, pg.node(2).port);
    pg.psql(1, "select pg_wal_replay_pause()")?;
    // About 1 MB of WAL, far past the limit.
    pg.psql(
        0,
        "insert into filler select repeat('x', 1000) from generate_series(1, 1000)",
    )?;
    wait_until(Duration::from_secs(10), || async {
        let s = tokio::task::block_in_place(|| router.cluster_status())?;
        let lag = s["nodes"][1]["lag_bytes"].as_u64().unwrap_or(0);
        ensure!(lag > 65536, "lag of the paused replica: {lag}");
        // The other replica has replayed the filler (within the limit) before reads start.
        let other_lag = s["nodes"][2]["lag_bytes"].as_u64().unwrap_or(u64::MAX);
        ensure!(other_lag <= 65536, "lag of the other replica: {other_lag}");
        Ok(())
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let (mut n, mut on_other) = (0, 0);
    while Instant::now() < deadline {
        let p = served_by(&client).await?;
        ensure!(
            p != paused,
            "a read went to the paused replica past the lag limit"
        );
        on_other += u32::from(p == other);
        n += 1;
    }
    // The rest fell back to the primary, should the other replica have been checked late.
    ensure!(
        on_other * 2 > n,
        "only {on_other} of {n} reads on the other replica"
    );
    pg.psql(1, "select pg_wal_replay_resume()")?;
    wait_until(Duration::from_secs(10), || async {
        let p = served_by(&client).await?;
        let s = tokio::task::block_in_place(|| router.cluster_status())?;
        ensure!(
            p == paused,
            "the resumed replica gets no reads yet: {}",
            s["nodes"][1]
        );
        Ok(())
    })
    .await?;
    eprintln!("{n} reads during the pause, none on the paused replica");
    Ok(())
}
