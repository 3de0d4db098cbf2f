//! Transaction pooling end to end, the pooling side: many clients share few server
//! connections, each keeps its own `SET`s across its transactions, a client that errors or
//! vanishes mid-transaction leaves nothing open behind, and the status counts it all.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;

const USERS: &[&str] = &[r#"{ name = "app", password = "app-pw" }"#];

/// A primary with role `app` and the router over it in transaction mode with `pool`.
fn setup(pool: &str) -> anyhow::Result<Option<(PgCluster, Router)>> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(None);
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; grant create on schema public to app; \
         create schema s0 authorization app; create schema s1 authorization app; \
         create schema s2 authorization app; create schema s3 authorization app;",
    )?;
    let settings = format!("pool_mode = \"transaction\"\npool = {pool}");
    let router = Router::start(&pg, &settings, USERS)?;
    Ok(Some((pg, router)))
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// Backends of user `app` on the primary in `state` (`idle in transaction`, …), the node
/// monitor's own connection aside.
fn backends_in(pg: &PgCluster, state: &str) -> anyhow::Result<u64> {
    Ok(pg
        .psql(
            0,
            &format!(
                "select count(*) from pg_stat_activity where usename = 'app' and state = '{state}' \
                 and application_name not like 'switchyard-%'"
            ),
        )?
        .parse()?)
}

#[tokio::test]
async fn twenty_clients_share_two_server_connections() -> anyhow::Result<()> {
    let Some((pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "20s" }"#)? else {
        return Ok(());
    };
    let setup_client = pg::connect(&router.config("app", "app-pw")).await?;
    setup_client
        .batch_execute("create table work (client int, n int, primary key (client, n))")
        .await?;
    let status = router.cluster_status()?;
    assert_eq!(status["effective_pool_mode"], "transaction", "{status}");

    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(pg::connect(&router.config("app", "app-pw")).await?);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            tokio::spawn(async move {
                for n in 0..5i32 {
                    let tx = client.transaction().await?;
                    tx.execute("insert into work values ($1, $2)", &[&(c as i32), &n])
                        .await?;
                    let seen: i64 = tx
                        .query_one(
                            "select count(*) from work where client = $1",
                            &[&(c as i32)],
                        )
                        .await?
                        .get(0);
                    anyhow::ensure!(seen == i64::from(n) + 1, "client {c} saw {seen} rows");
                    tx.commit().await?;
                }
                anyhow::Ok(client)
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await??);
    }
    assert_eq!(pg.psql(0, "select count(*) from work")?, "100");
    let status = router.cluster_status()?;
    assert_eq!(status["clients"], 21, "{status}");
    assert!(
        status["server_connections"].as_u64() <= Some(2),
        "more than max_size server connections: {status}"
    );
    assert!(
        status["transaction_pooling"]["transactions_total"].as_u64() >= Some(100),
        "{status}"
    );
    // Twenty clients, at most two backends on the server (besides the node monitor's own),
    // none left in a transaction.
    let backends: u64 = pg
        .psql(
            0,
            "select count(*) from pg_stat_activity where usename = 'app' \
             and application_name not like 'switchyard-%'",
        )?
        .parse()?;
    assert!(backends <= 2, "{backends} backends for user app");
    assert_eq!(backends_in(&pg, "idle in transaction")?, 0);
    Ok(())
}

#[tokio::test]
async fn each_client_keeps_its_own_settings_across_shared_connections() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "20s" }"#)? else {
        return Ok(());
    };
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut config = router.config("app", "app-pw");
        config.application_name(format!("startup-{i}"));
        let client = pg::connect(&config).await?;
        // A plain SET (simple protocol), one through the extended protocol, and one that a
        // rolled-back transaction takes back.
        client
            .batch_execute(&format!("set search_path = s{i}, public"))
            .await?;
        client
            .execute(&format!("set statement_timeout = '{}s'", 100 + i), &[])
            .await?;
        client
            .batch_execute("begin; set lock_timeout = '7s'; rollback")
            .await?;
        client
            .batch_execute(&format!(
                "create table mine (owner int); insert into mine values ({i})"
            ))
            .await?;
        clients.push(client);
    }
    for round in 0..5 {
        let checks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| async move {
                let row = client
                    .query_one(
                        "select current_setting('search_path'), current_setting('application_name'), \
                         current_setting('statement_timeout'), current_setting('lock_timeout'), \
                         (select owner from mine)",
                        &[],
                    )
                    .await?;
                let got: (&str, &str, &str, &str, i32) =
                    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
                let want = (
                    format!("s{i}, public"),
                    format!("startup-{i}"),
                    format!("{}s", 100 + i),
                );
                anyhow::ensure!(
                    (got.0, got.1, got.2, got.3, got.4)
                        == (want.0.as_str(), want.1.as_str(), want.2.as_str(), "0", i as i32),
                    "round {round}, client {i}: {got:?}"
                );
                let shown: String = client.query_one("show search_path", &[]).await?.get(0);
                anyhow::ensure!(shown == want.0, "round {round}, client {i}: SHOW gave {shown}");
                anyhow::Ok(())
            })
            .collect();
        for check in checks {
            check.await?;
        }
    }
    // RESET goes back to the startup value, RESET ALL to all of them.
    let c0 = &clients[0];
    c0.batch_execute("set application_name = 'changed'").await?;
    c0.batch_execute("reset application_name").await?;
    c0.batch_execute("reset all").await?;
    let row = c0
        .query_one(
            "select current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout')",
            &[],
        )
        .await?;
    assert_eq!(
        (
            row.get::<_, &str>(0),
            row.get::<_, &str>(1),
            row.get::<_, &str>(2)
        ),
        ("startup-0", "\"$user\", public", "0")
    );
    // The others are untouched.
    let row = clients[1]
        .query_one("select current_setting('search_path')", &[])
        .await?;
    assert_eq!(row.get::<_, &str>(0), "s1, public");
    let status = router.cluster_status()?;
    assert!(
        status["transaction_pooling"]["parameter_replays_total"].as_u64() > Some(0),
        "{status}"
    );
    Ok(())
}

#[tokio::test]
async fn an_error_in_a_transaction_then_rollback_frees_the_connection() -> anyhow::Result<()> {
    let Some((pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    client.batch_execute("begin").await?;
    let err = client.execute("select 1 / 0", &[]).await.err();
    assert_eq!(err.as_ref().and_then(sqlstate), Some("22012"));
    let err = client.execute("select 1", &[]).await.err();
    assert_eq!(err.as_ref().and_then(sqlstate), Some("25P02"), "{err:?}");
    // The only server connection is held by the failed transaction…
    let other = pg::connect(&router.config("app", "app-pw")).await?;
    let waiting = tokio::spawn(async move {
        let r = other
            .query_one("select 2", &[])
            .await
            .map(|r| r.get::<_, i32>(0));
        (r, other)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second client got the held connection"
    );
    assert_eq!(backends_in(&pg, "idle in transaction (aborted)")?, 1);
    // …until ROLLBACK.
    client.batch_execute("rollback").await?;
    let (r, _other) = waiting.await?;
    assert_eq!(r?, 2);
    assert_eq!(client.query_one("select 3", &[]).await?.get::<_, i32>(0), 3);
    assert_eq!(backends_in(&pg, "idle in transaction (aborted)")?, 0);
    Ok(())
}

#[tokio::test]
async fn a_client_gone_mid_transaction_leaves_no_transaction_open() -> anyhow::Result<()> {
    let Some((pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    client.batch_execute("create table t (x int)").await?;

    // A client that says goodbye in the middle of a transaction.
    client
        .batch_execute("begin; insert into t values (1)")
        .await?;
    drop(client);

    // A psql killed (no goodbye at all) in the middle of another.
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut psql = Command::new(pg.bin("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &router.port.to_string(),
            "-U",
            "app",
            "-d",
            "postgres",
        ])
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1"])
        .env("PGPASSWORD", "app-pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = psql.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(b"begin;\ninsert into t values (2);\nselect 'in';\n")?;
    stdin.flush()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while backends_in(&pg, "idle in transaction")? == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "psql never got into its transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    psql.kill()?;
    psql.wait()?;
    drop(stdin);

    // Nothing stays open, nothing was committed, and the one connection serves again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = backends_in(&pg, "idle in transaction")?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{open} backends still idle in transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = pg::connect(&router.config("app", "app-pw"))
        .await
        .context("the pool no longer serves")?;
    assert_eq!(
        next.query_one("select count(*) from t", &[])
            .await?
            .get::<_, i64>(0),
        0
    );
    let tx_status = router.cluster_status()?;
    assert!(
        tx_status["server_connections"].as_u64() <= Some(1),
        "{tx_status}"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_gone_mid_query_lets_it_finish_and_the_connection_serves_on() -> anyhow::Result<()>
{
    let Some((pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let first = pg::connect(&router.config("app", "app-pw")).await?;
    let pid: i32 = first
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    // psql killed while its query runs: nothing says goodbye, an answer is on its way.
    let mut psql = std::process::Command::new(pg.bin("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &router.port.to_string(),
            "-U",
            "app",
            "-d",
            "postgres",
        ])
        .args(["-XAtq", "-c", "select pg_sleep(0.5)"])
        .env("PGPASSWORD", "app-pw")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeping = "select count(*) from pg_stat_activity where query = 'select pg_sleep(0.5)'";
    while pg.psql(0, sleeping)? == "0" {
        anyhow::ensure!(Instant::now() < deadline, "psql's query never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    psql.kill()?;
    psql.wait()?;
    // The query finishes, the connection goes back: the same backend serves on.
    let again: i32 = first
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    assert_eq!(again, pid, "the connection was closed instead of reused");
    Ok(())
}
