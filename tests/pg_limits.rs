//! Client and server connection limits end to end, against a real PostgreSQL:
//! - `max_client_conn`: the client past the cap is told 53300 and closed, counted in
//!   `/v1/status` and Prometheus; a place freed by a leaving client is taken by the next.
//! - `pool.min_size`: server connections are pre-opened before any client comes, on the
//!   primary and the replica, and serve the first client without a new login.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::anyhow;
use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;

const USERS: &[&str] = &[r#"{ name = "app", password = "app-pw" }"#];

fn setup(replicas: usize, settings: &str) -> anyhow::Result<Option<(PgCluster, Router)>> {
    let Some(pg) = PgCluster::start(replicas)? else {
        return Ok(None);
    };
    pg.psql(0, "create role app login password 'app-pw'")?;
    let router = Router::start(&pg, settings, USERS)?;
    Ok(Some((pg, router)))
}

/// Wait (without blocking the runtime) until `check` holds for the cluster's status.
async fn wait_status(
    router: &Router,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = router.cluster_status()?;
        if check(&s) {
            return Ok(s);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_client_past_max_client_conn_gets_53300() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(0, "max_client_conn = 2")? else {
        return Ok(());
    };
    let config = router.config("app", "app-pw");
    let a = pg::connect(&config).await?;
    let b = pg::connect(&config).await?;
    a.query_one("select 1", &[]).await?;
    b.query_one("select 1", &[]).await?;
    let err = pg::connect(&config)
        .await
        .err()
        .ok_or_else(|| anyhow!("a third client got in past max_client_conn = 2"))?;
    let code = err
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .map(|c| c.code().to_string());
    assert_eq!(code.as_deref(), Some("53300"), "{err:#}");
    let s = router.cluster_status()?;
    assert_eq!(s["max_client_conn"], 2, "{s}");
    assert_eq!(s["clients_admitted"], 2, "{s}");
    assert_eq!(s["clients_refused_total"], 1, "{s}");
    let metrics = router.sy.metrics()?;
    assert_eq!(
        support::metric(
            &metrics,
            "switchyard_postgres_clients_refused_total",
            &["cluster=\"main\"", "reason=\"max_client_conn\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    // The clients in are not disturbed; once one leaves, the next client gets its place.
    assert_eq!(a.query_one("select 2", &[]).await?.get::<_, i32>(0), 2);
    drop(b);
    wait_status(&router, "the leaving client's place was not freed", |s| {
        s["clients_admitted"] == 1
    })
    .await?;
    let c = pg::connect(&config).await?;
    assert_eq!(c.query_one("select 3", &[]).await?.get::<_, i32>(0), 3);
    Ok(())
}

#[tokio::test]
async fn min_size_connections_are_open_before_the_first_client() -> anyhow::Result<()> {
    let settings = "pool = { min_size = 3, max_size = 5 }";
    let Some((pg, router)) = setup(1, settings)? else {
        return Ok(());
    };
    let s = wait_status(&router, "pools not filled to min_size", |s| {
        (0..2).all(|i| s["nodes"][i]["pool"]["idle"] == 3)
    })
    .await?;
    assert_eq!(s["clients"], 0, "{s}");
    // The servers see them: three sessions of `app` on each node besides the router's own
    // probes (`switchyard-monitor`, `switchyard-failover`).
    let sessions = "select count(*) from pg_stat_activity where usename = 'app' \
                    and application_name not like 'switchyard-%'";
    for node in 0..2 {
        assert_eq!(pg.psql(node, sessions)?, "3", "node {node}");
    }
    // The first client is served by one of them: no new server connection.
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    client.query_one("select pg_backend_pid()", &[]).await?;
    let s = router.cluster_status()?;
    assert_eq!(s["nodes"][0]["pool"]["open"], 3, "{s}");
    assert_eq!(pg.psql(0, sessions)?, "3");
    Ok(())
}
