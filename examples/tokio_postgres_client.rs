//! A tokio-postgres client session, run by `fuzz/capture_seeds.py` through its recording relay
//! so that the Postgres fuzz seeds hold what this driver really sends and receives (issue 15).
//! tokio-postgres is the driver of Rust services, and Switchyard's own monitor and pools use
//! it; its traffic differs from psql's and pgbench's: every `query` is a named `Parse` with a
//! `Describe`, types are looked up by OID in `pg_catalog` on first use, and `COPY` and
//! pipelined queries share one connection.
//!
//! ```text
//! tokio_postgres_client PORT PASSWORD
//! ```
//!
//! Connects to `127.0.0.1:PORT` as `postgres` (SCRAM, no TLS) and runs: a simple query, a
//! parameterised query, a statement prepared with explicit types and run twice, a
//! transaction with a savepoint that rolls back, a failing statement, two pipelined
//! queries, `COPY … TO STDOUT`, and a `COPY … FROM STDIN` into a temporary table. Exits 1
//! with the error if any step fails.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::types::Type;
use tokio_postgres::NoTls;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(password)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: tokio_postgres_client PORT PASSWORD");
    };
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable \
         application_name=tokio-postgres-capture password={password}"
    );
    let (mut client, connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
    let driver = tokio::spawn(connection);

    client.simple_query("SELECT 1; SHOW server_version").await?;
    let row = client
        .query_one("SELECT $1::int8 + 1, $2::text", &[&41i64, &"tokio"])
        .await?;
    anyhow::ensure!(row.get::<_, i64>(0) == 42, "wrong sum");

    let stmt = client
        .prepare_typed(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            &[Type::INT4],
        )
        .await?;
    for aid in [1i32, 2] {
        client.query(&stmt, &[&aid]).await?;
    }

    let mut tx = client.transaction().await?;
    tx.execute(
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        &[&1i32, &1i32],
    )
    .await?;
    {
        let sp = tx.savepoint("before_mistake").await?;
        sp.batch_execute("UPDATE pgbench_branches SET bbalance = 0")
            .await?;
        sp.rollback().await?;
    }
    tx.commit().await?;

    // An error and what follows it: the server's ErrorResponse, then ReadyForQuery.
    anyhow::ensure!(
        client
            .simple_query("SELECT * FROM no_such_table")
            .await
            .is_err(),
        "the failing statement succeeded"
    );

    // Two queries in flight at once: tokio-postgres pipelines them on the connection.
    let (a, b) = tokio::join!(
        client.query("SELECT count(*) FROM pgbench_branches", &[]),
        client.query("SELECT now()", &[]),
    );
    a?;
    b?;

    let out = client
        .copy_out("COPY (SELECT * FROM pgbench_branches) TO STDOUT")
        .await?;
    let chunks: Vec<_> = out.collect().await;
    anyhow::ensure!(chunks.iter().all(|c| c.is_ok()), "COPY out failed");

    client
        .batch_execute("CREATE TEMP TABLE capture_copy (id int, note text)")
        .await?;
    let sink = client.copy_in("COPY capture_copy FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tone\n2\ttwo\n")).await?;
    anyhow::ensure!(sink.finish().await? == 2, "COPY in wrote the wrong count");

    drop(client);
    driver.await??;
    Ok(())
}
