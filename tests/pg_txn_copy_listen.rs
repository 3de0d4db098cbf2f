//! Transaction pooling end to end, what holds a server connection beyond a statement:
//! `COPY` in and out (tokio-postgres, whose copy-in sends a `Sync` the server ignores, and
//! psql), `LISTEN`, which pins its client and gets its notifications, and a cancel that
//! reaches the query of a transaction-pooled client.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;
use tokio_postgres::AsyncMessage;

const USERS: &[&str] = &[r#"{ name = "app", password = "app-pw" }"#];

/// A primary with role `app` and the router over it in transaction mode with `pool`.
fn setup(pool: &str) -> anyhow::Result<Option<(PgCluster, Router)>> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(None);
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; grant create on schema public to app;",
    )?;
    let settings = format!("pool_mode = \"transaction\"\npool = {pool}");
    let router = Router::start(&pg, &settings, USERS)?;
    Ok(Some((pg, router)))
}

#[tokio::test]
async fn copy_in_and_out_through_transaction_pooling() -> anyhow::Result<()> {
    let Some((pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "10s" }"#)? else {
        return Ok(());
    };
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    client
        .batch_execute("create table items (id int, name text)")
        .await?;
    // tokio-postgres sends Bind, Execute, Sync, then the data, CopyDone and another Sync:
    // the first Sync is ignored by a server in copy-in mode.
    let sink = client.copy_in("copy items from stdin").await?;
    let mut sink = std::pin::pin!(sink);
    for i in 0..1000 {
        sink.send(bytes::Bytes::from(format!("{i}\titem {i}\n")))
            .await?;
    }
    assert_eq!(sink.as_mut().finish().await?, 1000);
    // The connection is free again (max_size = 1) and the rows are there.
    let other = pg::connect(&router.config("app", "app-pw")).await?;
    assert_eq!(
        other
            .query_one("select count(*) from items", &[])
            .await?
            .get::<_, i64>(0),
        1000
    );

    let stream = client
        .copy_out("copy (select * from items order by id) to stdout")
        .await?;
    let mut stream = std::pin::pin!(stream);
    let mut text = Vec::new();
    while let Some(chunk) = stream.next().await {
        text.extend_from_slice(&chunk?);
    }
    let text = String::from_utf8(text)?;
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().nth(999), Some("999\titem 999"));

    // A COPY that fails half way leaves the connection usable.
    let sink = client.copy_in("copy items from stdin").await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(b"not a number\tx\n"))
        .await?;
    assert!(sink.as_mut().finish().await.is_err());
    assert_eq!(
        other
            .query_one("select count(*) from items", &[])
            .await?
            .get::<_, i64>(0),
        1000
    );

    // psql: COPY in the simple protocol.
    let psql = |args: &[&str], stdin: &str| -> anyhow::Result<String> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(pg.bin("psql"))
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
            .args(args)
            .env("PGPASSWORD", "app-pw")
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
    psql(&["-c", "copy items from stdin"], "2000\tfrom psql\n\\.\n")?;
    let out = psql(
        &[
            "-c",
            "copy (select name from items where id = 2000) to stdout",
        ],
        "",
    )?;
    assert_eq!(out, "from psql");
    Ok(())
}

#[tokio::test]
async fn listen_pins_its_client_and_notifications_reach_it() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "10s" }"#)? else {
        return Ok(());
    };
    let (listener, mut connection) = router
        .config("app", "app-pw")
        .connect(tokio_postgres::NoTls)
        .await?;
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    listener.batch_execute("listen jobs").await?;
    let pinned: i32 = listener
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);

    let mut notifier = pg::connect(&router.config("app", "app-pw")).await?;
    notifier.batch_execute("notify jobs, 'hello'").await?;
    let t = notifier.transaction().await?;
    t.execute("select pg_notify('jobs', 'from a transaction')", &[])
        .await?;
    t.commit().await?;
    for want in ["hello", "from a transaction"] {
        let got = tokio::time::timeout(Duration::from_secs(5), notes.recv())
            .await
            .with_context(|| format!("no notification {want:?}"))?;
        assert_eq!(got.as_deref(), Some(want));
    }
    // The pinned connection is the listener's alone: others never land on it.
    for _ in 0..10 {
        let pid: i32 = notifier
            .query_one("select pg_backend_pid()", &[])
            .await?
            .get(0);
        assert_ne!(pid, pinned);
    }
    let again: i32 = listener
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    assert_eq!(again, pinned);
    let status = router.cluster_status()?;
    assert_eq!(
        status["transaction_pooling"]["pinned_clients_total"], 1,
        "{status}"
    );

    // When the listener leaves, its connection is reset (UNLISTEN) and shared again.
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = router.cluster_status()?;
        if s["clients"] == 1 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the listener did not leave: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hold = notifier.transaction().await?;
    let other = pg::connect(&router.config("app", "app-pw")).await?;
    let row = other
        .query_one(
            "select pg_backend_pid(), (select count(*) from pg_listening_channels())",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, i64>(1), 0, "LISTEN survived");
    drop(hold);
    Ok(())
}

#[tokio::test]
async fn cancel_reaches_the_query_of_a_transaction_pooled_client() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "10s" }"#)? else {
        return Ok(());
    };
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    let token = client.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = client.execute("select pg_sleep(10)", &[]).await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await?;
    let (r, client) = sleeper.await?;
    let err = r
        .err()
        .ok_or_else(|| anyhow!("pg_sleep(10) was not cancelled"))?;
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(client.query_one("select 5", &[]).await?.get::<_, i32>(0), 5);
    Ok(())
}
