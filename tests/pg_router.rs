//! The Postgres router end to end: the real `switchyard` binary in front of a real primary
//! and replica (the fixture), with real clients (tokio-postgres, psql) logging in by SCRAM,
//! md5 and trust, running queries, transactions and prepared statements, cancelling a query;
//! and clients that send garbage or the wrong password, which must be refused alone.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use support::pg::client::{self as pg, raw_error, startup, Router};
use support::pg::PgCluster;

/// Users the router knows, and the roles the servers have for them.
const USERS: &[&str] = &[
    r#"{ name = "app", password = "app-pw" }"#,
    r#"{ name = "legacy", password = "legacy-pw", client_auth = "md5" }"#,
    r#"{ name = "cron", password = "cron-pw", client_auth = "trust" }"#,
];

/// A primary and a replica with the roles of [`USERS`], and the router in front of them.
fn setup() -> anyhow::Result<Option<(PgCluster, Router)>> {
    let Some(pg) = PgCluster::start(1)? else {
        return Ok(None);
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; \
         create role legacy login password 'legacy-pw'; \
         create role cron login password 'cron-pw'; \
         grant create on schema public to app, legacy, cron;",
    )?;
    let router = Router::start(&pg, r#"pool_mode = "session""#, USERS)?;
    Ok(Some((pg, router)))
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

#[tokio::test]
async fn scram_client_runs_queries_a_transaction_and_a_prepared_statement() -> anyhow::Result<()> {
    let Some((pg, router)) = setup()? else {
        return Ok(());
    };
    let mut client = pg::connect(&router.config("app", "app-pw"))
        .await
        .context("logging in through the router by SCRAM")?;
    let row = client
        .query_one("select current_user::text, pg_is_in_recovery()", &[])
        .await?;
    assert_eq!(row.get::<_, &str>(0), "app");
    assert!(!row.get::<_, bool>(1), "session mode goes to the primary");

    client
        .batch_execute(
            "create table jobs (id int primary key, name text); insert into jobs values (1, 'one')",
        )
        .await?;
    // A transaction that commits and one that rolls back.
    let tx = client.transaction().await?;
    tx.execute("insert into jobs values (2, 'two')", &[])
        .await?;
    tx.commit().await?;
    let tx = client.transaction().await?;
    tx.execute("insert into jobs values (3, 'three')", &[])
        .await?;
    tx.rollback().await?;
    // A prepared statement, executed several times with parameters.
    let stmt = client
        .prepare("select name from jobs where id = $1")
        .await?;
    for (id, want) in [(1i32, Some("one")), (2, Some("two")), (3, None)] {
        let rows = client.query(&stmt, &[&id]).await?;
        assert_eq!(rows.first().map(|r| r.get::<_, &str>(0)), want, "id {id}");
    }
    // Messages far larger than a read buffer, both ways.
    let big = "x".repeat(1 << 20);
    let row = client
        .query_one("select length($1::text), repeat('y', 1 << 20)", &[&big])
        .await?;
    assert_eq!(row.get::<_, i32>(0), 1 << 20);
    assert_eq!(row.get::<_, &str>(1).len(), 1 << 20);
    // An error inside a session leaves it usable.
    let err = client.execute("select * from no_such_table", &[]).await;
    assert_eq!(err.as_ref().err().and_then(sqlstate), Some("42P01"));
    assert_eq!(
        client
            .query_one("select 41 + 1", &[])
            .await?
            .get::<_, i32>(0),
        42
    );

    // What the router wrote is on the primary.
    assert_eq!(
        pg.psql(0, "select string_agg(name, ',' order by id) from jobs")?,
        "one,two"
    );
    let status = router.cluster_status()?;
    assert_eq!(status["serving"], true, "{status}");
    assert_eq!(status["clients"], 1, "{status}");
    assert_eq!(status["server_connections"], 1, "{status}");

    drop(stmt);
    drop(client);
    // (Waiting without blocking the runtime: the dropped client's connection task must run
    // to say goodbye.) The server connection stays, idle in the pool: tests/pg_pool.rs.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = router.cluster_status()?;
        if s["clients"] == 0 && s["nodes"][0]["pool"]["idle"] == 1 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the session was not cleaned up: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing was left open on the server (the node monitor's own session aside).
    assert_eq!(
        pg.psql(
            0,
            "select string_agg(state, ',') from pg_stat_activity where usename = 'app' \
             and application_name not like 'switchyard-%'"
        )?,
        "idle"
    );
    Ok(())
}

#[tokio::test]
async fn psql_runs_through_the_router() -> anyhow::Result<()> {
    let Some((pg, router)) = setup()? else {
        return Ok(());
    };
    // psql asks for TLS first (sslmode=prefer) and goes on in the clear after our "N".
    let psql = |args: &[&str], stdin: &str| -> anyhow::Result<String> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(pg.bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &router.port.to_string()])
            .args([
                "-U",
                "app",
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(args)
            .env("PGPASSWORD", "app-pw")
            .env("PGAPPNAME", "psql-through-switchyard")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin"))?
            .write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let out = psql(
        &[
            "-c",
            "select 1",
            "-c",
            "select current_setting('application_name')",
        ],
        "",
    )?;
    assert_eq!(out, "1\npsql-through-switchyard");
    // COPY in both directions.
    psql(&["-c", "create table copied (id int, name text)"], "")?;
    psql(&["-c", "copy copied from stdin"], "1\tone\n2\ttwo\n\\.\n")?;
    let out = psql(
        &["-c", "copy (select * from copied order by id) to stdout"],
        "",
    )?;
    assert_eq!(out, "1\tone\n2\ttwo");
    assert_eq!(pg.psql(0, "select count(*) from copied")?, "2");
    Ok(())
}

#[tokio::test]
async fn md5_and_trust_users_log_in_and_wrong_passwords_get_28p01() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup()? else {
        return Ok(());
    };
    let legacy = pg::connect(&router.config("legacy", "legacy-pw")).await?;
    assert_eq!(
        legacy
            .query_one("select current_user::text", &[])
            .await?
            .get::<_, &str>(0),
        "legacy"
    );
    let cron = pg::connect(&router.config("cron", "anything")).await?;
    assert_eq!(
        cron.query_one("select current_user::text", &[])
            .await?
            .get::<_, &str>(0),
        "cron"
    );

    for (user, password) in [("app", "wrong"), ("legacy", "wrong"), ("nobody", "app-pw")] {
        let err = pg::connect(&router.config(user, password))
            .await
            .err()
            .ok_or_else(|| anyhow!("{user} logged in with a wrong password"))?;
        let db = err
            .downcast_ref::<tokio_postgres::Error>()
            .ok_or_else(|| anyhow!("not a database error: {err:#}"))?;
        assert_eq!(sqlstate(db), Some("28P01"), "{user}: {db}");
    }
    let status = router.cluster_status()?;
    assert_eq!(status["auth_failures_total"], 3, "{status}");
    // The clients that logged in are still fine.
    legacy.query_one("select 1", &[]).await?;
    cron.query_one("select 1", &[]).await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_is_refused_for_that_client_alone() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup()? else {
        return Ok(());
    };
    let bystander = pg::connect(&router.config("app", "app-pw")).await?;

    let cases: &[(&str, Vec<u8>, &str)] = &[
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "08P01",
        ),
        (
            "a 1 GB startup packet",
            vec![0x40, 0, 0, 0, 0, 3, 0, 0],
            "08P01",
        ),
        (
            "protocol 2.0",
            startup(0x0002_0000, &[("user", "app")]),
            "0A000",
        ),
        (
            "no user",
            startup(0x0003_0000, &[("database", "postgres")]),
            "28000",
        ),
        (
            "replication",
            startup(0x0003_0000, &[("user", "app"), ("replication", "true")]),
            "0A000",
        ),
    ];
    for (what, bytes, want) in cases {
        let (code, closed) = raw_error(router.port, bytes).with_context(|| what.to_string())?;
        assert_eq!(&code, want, "{what}");
        assert!(closed, "{what}: the connection was left open");
    }
    // A logged-in client that then sends a message no client sends: 08P01, closed.
    let mut s = TcpStream::connect(("127.0.0.1", router.port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&startup(
        0x0003_0000,
        &[("user", "cron"), ("database", "postgres")],
    ))?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Wait for ReadyForQuery ('Z', length 5, status 'I').
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        anyhow::ensure!(Instant::now() < deadline, "no ReadyForQuery: {seen:?}");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "closed before ReadyForQuery: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"\x01\x00\x00\x00\x04")?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert_eq!(rest.first(), Some(&b'E'), "{rest:?}");
    assert!(rest.windows(6).any(|w| w == b"C08P01"), "{rest:?}");

    // Everyone else is unaffected.
    assert_eq!(
        bystander.query_one("select 7", &[]).await?.get::<_, i32>(0),
        7
    );
    let fresh = pg::connect(&router.config("app", "app-pw")).await?;
    fresh.query_one("select 1", &[]).await?;
    Ok(())
}

#[tokio::test]
async fn cancel_reaches_the_server_connection_in_use() -> anyhow::Result<()> {
    let Some((pg, router)) = setup()? else {
        return Ok(());
    };
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = client.execute("select pg_sleep(10)", &[]).await;
        (r, client)
    });
    // Cancel once the server runs it (a cancel that arrives before the query does nothing).
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = "select count(*) from pg_stat_activity where query = 'select pg_sleep(10)' and state = 'active'";
    while pg.psql(0, running)? != "1" {
        anyhow::ensure!(Instant::now() < deadline, "pg_sleep(10) never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let started = Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await?;
    let (r, client) = sleeper.await?;
    let err = r
        .err()
        .ok_or_else(|| anyhow!("pg_sleep(10) was not cancelled"))?;
    assert_eq!(sqlstate(&err), Some("57014"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // The session goes on after a cancel.
    assert_eq!(client.query_one("select 5", &[]).await?.get::<_, i32>(0), 5);
    let status = router.cluster_status()?;
    assert_eq!(status["cancel_requests_total"], 1, "{status}");
    Ok(())
}
