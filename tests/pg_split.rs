//! Read/write split under transaction pooling, on a real primary and two streaming
//! replicas: plain reads run on a replica, overrides, transactions and writes on the
//! primary, and pgbench's read-only script (`-S`) is served by the replicas while its
//! default script writes to the primary, with no failed transaction.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use support::pg::client::{connect, Router};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};

const SETTINGS: &str = "pool_mode = \"transaction\"\n\
    pool = { max_size = 4, checkout_timeout = \"30s\" }\n\
    routing = { read_write_split = true }\n\
    failover = { check_interval = \"100ms\", check_timeout = \"500ms\", failure_threshold = 3 }";

fn pgbench(pg: &PgCluster, router: &Router, args: &[&str]) -> anyhow::Result<String> {
    support::pg::bench::pgbench_as(pg, router, (SUPERUSER, SUPERUSER_PASSWORD), args)
}

/// `(processed, failed)` transactions of a pgbench run.
fn summary(out: &str) -> anyhow::Result<(u64, u64)> {
    let value = |prefix: &str| -> anyhow::Result<u64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no {prefix:?} line in:\n{out}"))
    };
    Ok((
        value("number of transactions actually processed:")?,
        value("number of failed transactions:")?,
    ))
}

/// Index scans of `pgbench_accounts` on node `i`, as its statistics show them.
fn scans(pg: &PgCluster, i: usize) -> anyhow::Result<u64> {
    let out = pg.psql(
        i,
        "select coalesce(sum(idx_scan), 0) from pg_stat_user_tables where relname = 'pgbench_accounts'",
    )?;
    out.parse().with_context(|| format!("idx_scan {out:?}"))
}

fn run_bench(pg: &PgCluster, router: &Router, extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["-c", "4", "-j", "2", "-T", "3"];
    args.extend_from_slice(extra);
    let out = pgbench(pg, router, &args)?;
    let (processed, failed) = summary(&out)?;
    assert_eq!(failed, 0, "pgbench {extra:?}:\n{out}");
    assert!(processed > 0, "pgbench {extra:?}:\n{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_writes_to_the_primary() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let router = Router::start(&pg, SETTINGS, &[&user])?;
    let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;

    // Until the monitor has seen the replicas, reads fall back to the primary.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = client.query_one("select pg_is_in_recovery()", &[]).await?;
        if row.get::<_, bool>(0) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "reads never reached a replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The simple protocol too.
    let rows = client.simple_query("select pg_is_in_recovery()").await?;
    let in_recovery = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(in_recovery.as_deref(), Some("t"));

    let row = client
        .query_one("/* switchyard: primary */ select pg_is_in_recovery()", &[])
        .await?;
    assert!(
        !row.get::<_, bool>(0),
        "a primary override ran on a replica"
    );

    client.batch_execute("BEGIN").await?;
    let row = client.query_one("select pg_is_in_recovery()", &[]).await?;
    client.batch_execute("COMMIT").await?;
    assert!(
        !row.get::<_, bool>(0),
        "a read in a transaction left the primary"
    );

    // A read-only transaction may run on a replica.
    let rows = client
        .simple_query("BEGIN READ ONLY; select pg_is_in_recovery(); COMMIT")
        .await?;
    let in_recovery = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(
        in_recovery.as_deref(),
        Some("t"),
        "BEGIN READ ONLY stayed on the primary"
    );

    let e = client
        .simple_query("selec 1 frm nowhere")
        .await
        .expect_err("a syntax error");
    assert_eq!(
        e.code().map(|c| c.code()),
        Some("42601"),
        "not the server's syntax error: {e}"
    );
    // The client stays usable.
    let row = client.query_one("select 2::int4", &[]).await?;
    assert_eq!(row.get::<_, i32>(0), 2);

    // Per-session override, answered by the router.
    client
        .batch_execute("SET switchyard.route = primary")
        .await?;
    let row = client.query_one("select pg_is_in_recovery()", &[]).await?;
    assert!(
        !row.get::<_, bool>(0),
        "SET switchyard.route = primary ignored"
    );
    client.batch_execute("SET switchyard.route = auto").await?;
    let row = client.query_one("select pg_is_in_recovery()", &[]).await?;
    assert!(row.get::<_, bool>(0), "SET switchyard.route = auto ignored");
    drop(client);

    // pgbench -i writes through the router, on the primary.
    pgbench(&pg, &router, &["-i", "-s", "1", "-q"])?;
    assert_eq!(
        pg.psql(0, "select count(*) from pgbench_accounts")?,
        "100000"
    );
    // The replicas have it once they replayed it.
    for i in 1..=2 {
        pg.wait_for(
            i,
            "select count(*) from pgbench_accounts",
            "100000",
            Duration::from_secs(30),
        )?;
    }

    // Read-only: the replicas serve it (before any write run, so that the primary's
    // statistics have nothing left to flush).
    let before: Vec<u64> = (0..3).map(|i| scans(&pg, i)).collect::<Result<_, _>>()?;
    run_bench(&pg, &router, &["-S", "-M", "simple"])?;
    run_bench(&pg, &router, &["-S", "-M", "extended"])?;
    run_bench(&pg, &router, &["-S", "-M", "prepared"])?;
    // Statistics reach the shared counters within seconds of a backend going idle.
    let deadline = Instant::now() + Duration::from_secs(20);
    let grown = loop {
        let now: Vec<u64> = (0..3).map(|i| scans(&pg, i)).collect::<Result<_, _>>()?;
        let grown: Vec<u64> = now.iter().zip(&before).map(|(a, b)| a - b).collect();
        if (grown[1] > 1000 && grown[2] > 1000) || Instant::now() >= deadline {
            break grown;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "index scans of pgbench_accounts during pgbench -S: primary, replica1, replica2 = {grown:?}"
    );
    assert!(
        grown[1] > 1000 && grown[2] > 1000,
        "the replicas did not serve the reads: {grown:?}"
    );
    assert!(
        grown[0] * 20 < grown[1] + grown[2],
        "the primary served reads: {grown:?}"
    );

    // The default script writes, in transactions: on the primary.
    run_bench(&pg, &router, &["-M", "simple"])?;
    run_bench(&pg, &router, &["-M", "prepared"])?;
    let history: u64 = pg
        .psql(0, "select count(*) from pgbench_history")?
        .parse()?;
    assert!(history > 0, "no write reached the primary");

    let metrics = router.sy.metrics()?;
    assert!(
        metrics.contains("switchyard_postgres_queries_routed_total"),
        "no routing metrics"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fallback_error_a_read_no_replica_can_serve_fails_and_the_client_goes_on(
) -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let settings = SETTINGS.replace(
        "routing = { read_write_split = true }",
        "routing = { read_write_split = true, fallback = \"error\" }",
    );
    let router = Router::start(&pg, &settings, &[&user])?;
    let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    // Once the monitor has seen the replicas, stop them.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(
        client
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .map(|r| r.get::<_, bool>(0)),
        Ok(true)
    ) {
        anyhow::ensure!(Instant::now() < deadline, "reads never reached a replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg.stop(1);
    pg.stop(2);

    // Extended protocol: the batch fails with 08006 and the reason. (Until the monitor sees
    // the replicas down, a read may pick one and fail to connect, which ends that session.)
    let deadline = Instant::now() + Duration::from_secs(15);
    let client = loop {
        let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
        let e = client.query_one("select 1::int4", &[]).await.err();
        let db = e.as_ref().and_then(|e| e.as_db_error());
        if db.is_some_and(|d| d.code().code() == "08006" && d.message().contains("no replica")) {
            break client;
        }
        anyhow::ensure!(Instant::now() < deadline, "reads never failed: {e:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Simple protocol too.
    let e = client
        .simple_query("select 1")
        .await
        .expect_err("no replica to read on");
    assert_eq!(e.code().map(|c| c.code()), Some("08006"), "{e}");
    // The client goes on: writes and overridden reads run on the primary.
    let row = client
        .query_one("/* switchyard: primary */ select 3::int4", &[])
        .await?;
    assert_eq!(row.get::<_, i32>(0), 3);
    client
        .batch_execute("create table t (x int); insert into t values (1)")
        .await?;
    let metrics = router.sy.metrics()?;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("switchyard_postgres_queries_routed_total")
                && l.contains("target=\"error\"")
        ),
        "{metrics}"
    );
    Ok(())
}
