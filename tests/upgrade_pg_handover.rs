//! Transaction-pooled Postgres clients handed to the new process at `switchyard upgrade`,
//! against a real PostgreSQL:
//! - pgbench with eight persistent clients (`-M extended`, then `-M prepared`) through three
//!   upgrades: no failed transaction and no aborted client (pgbench aborts a client whose
//!   connection drops; it never reconnects without `-C`);
//! - a psql-like session keeps its `SET`, its `application_name` and a prepared statement
//!   across an upgrade, on the same connection, while the old process is gone.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use support::pg::bench::{pgbench, summary};
use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;
use support::upgrade::{alive, wait_gone, Upgrades};

const USERS: &[&str] = &[r#"{ name = "app", password = "app-pw" }"#];

/// How long an old process may take to hand its sessions over and exit.
const DRAIN: Duration = Duration::from_secs(20);

/// Three upgrades, one after the other, each waiting for the old process to be gone.
fn three_upgrades(router: &Router, ups: &Upgrades) -> anyhow::Result<Vec<Duration>> {
    let mut old = router.sy.pid()?;
    let mut took = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let out = ups.run(router.sy.config_path(), &["--pg-drain", "30s"])?;
        ensure!(out.ok, "upgrade {i}: {out:?}");
        wait_gone(old, DRAIN).with_context(|| format!("upgrade {i}: the old process exits"))?;
        took.push(started.elapsed());
        old = out.pid.context("no new pid")?;
        std::thread::sleep(Duration::from_millis(700));
    }
    Ok(took)
}

#[test]
fn pgbench_clients_go_through_three_upgrades_with_none_aborted() -> anyhow::Result<()> {
    let Some(pg) = pg::primary_with_app()? else {
        return Ok(());
    };
    for mode in ["extended", "prepared"] {
        bench_through_upgrades(&pg, mode).with_context(|| format!("-M {mode}"))?;
    }
    Ok(())
}

/// pgbench `-M mode` with eight clients for 8 s on a router of its own, three upgrades
/// meanwhile.
fn bench_through_upgrades(pg: &PgCluster, mode: &str) -> anyhow::Result<()> {
    let router = Router::start(
        pg,
        "pool_mode = \"transaction\"\npool = { max_size = 4, checkout_timeout = \"30s\" }",
        USERS,
    )?;
    pgbench(pg, &router, &["-i", "-s", "1", "-q"])?;
    let ups = Upgrades::default();
    let args = ["-c", "8", "-j", "2", "-T", "8", "-M", mode];
    let (out, took) = std::thread::scope(|s| -> anyhow::Result<_> {
        let bench = s.spawn(|| pgbench(pg, &router, &args));
        std::thread::sleep(Duration::from_millis(1000));
        let took = three_upgrades(&router, &ups);
        let out = bench
            .join()
            .map_err(|_| anyhow::anyhow!("the pgbench thread panicked"))?;
        Ok((out?, took?))
    })?;
    let run = summary(&out)?;
    ensure!(run.failed == 0 && run.processed > 0, "{run:?}\n{out}");
    ensure!(!out.contains("aborted"), "a client aborted:\n{out}");
    let log = router.sy.stderr();
    ensure!(
        log.contains("Postgres sessions taken over"),
        "no session was handed over:\n{log}"
    );
    eprintln!(
        "pgbench -M {mode}, 8 clients, 8 s, 3 upgrades ({took:?} each, command to old process gone): {} transactions, {} failed, {:.0} tps",
        run.processed, run.failed, run.tps
    );
    Ok(())
}

#[tokio::test]
async fn a_session_keeps_its_set_and_prepared_statement_across_an_upgrade() -> anyhow::Result<()> {
    let Some(pg) = pg::primary_with_app()? else {
        return Ok(());
    };
    let router = Router::start(&pg, "pool_mode = \"transaction\"", USERS)?;
    let mut config = router.config("app", "app-pw");
    config.application_name("upgrade-e2e");
    let client = pg::connect(&config).await?;
    client.batch_execute("set work_mem = '7MB'").await?;
    let plus_one = client.prepare("select $1::int + 1").await?;
    let before: i32 = client.query_one(&plus_one, &[&41i32]).await?.get(0);
    ensure!(before == 42);
    let old = router.sy.pid()?;
    let path = router.sy.config_path().to_path_buf();
    let (out, ups) = tokio::task::spawn_blocking(move || {
        let ups = Upgrades::default();
        ups.run(&path, &[]).map(|o| (o, ups))
    })
    .await??;
    ensure!(out.ok, "{out:?}");
    tokio::task::spawn_blocking(move || wait_gone(old, DRAIN)).await??;
    // The same connection, now served by the new process.
    let after: i32 = client.query_one(&plus_one, &[&1i32]).await?.get(0);
    ensure!(after == 2);
    let work_mem: String = client.query_one("show work_mem", &[]).await?.get(0);
    ensure!(work_mem == "7MB", "work_mem {work_mem}");
    let app: String = client
        .query_one("select current_setting('application_name')", &[])
        .await?
        .get(0);
    ensure!(app == "upgrade-e2e", "application_name {app}");
    ensure!(out.pid.is_some_and(alive), "{out:?}");
    drop(ups);
    Ok(())
}
