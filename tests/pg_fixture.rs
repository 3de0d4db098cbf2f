//! The PostgreSQL test fixture itself: a primary that takes writes and two streaming
//! replicas that are read-only and receive those writes. The router's tests trust this.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use support::pg::{PgCluster, SUPERUSER};

/// How long a write may take to reach a replica.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn primary_takes_writes_and_both_replicas_stream_them() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    assert_eq!(pg.len(), 3);

    let primary = pg.connect(0).await.context("connecting to the primary")?;
    let row = primary.query_one("select pg_is_in_recovery()", &[]).await?;
    assert!(!row.get::<_, bool>(0), "the primary is in recovery");
    primary
        .batch_execute("create table fixture_probe (id int primary key, note text)")
        .await?;
    primary
        .execute(
            "insert into fixture_probe values ($1, $2)",
            &[&1i32, &"from the primary"],
        )
        .await?;

    for i in 1..pg.len() {
        let name = &pg.node(i).name;
        let replica = pg
            .connect(i)
            .await
            .with_context(|| format!("connecting to {name}"))?;
        let row = replica.query_one("select pg_is_in_recovery()", &[]).await?;
        assert!(row.get::<_, bool>(0), "{name} is not in recovery");
        // A replica refuses writes with read_only_sql_transaction.
        let err = replica
            .execute("insert into fixture_probe values (2, 'nope')", &[])
            .await
            .err()
            .with_context(|| format!("{name} accepted a write"))?;
        assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");

        let deadline = Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let rows = replica
                .query("select note from fixture_probe where id = 1", &[])
                .await;
            match rows {
                Ok(rows) if rows.len() == 1 => {
                    assert_eq!(rows[0].get::<_, &str>(0), "from the primary");
                    break;
                }
                _ if Instant::now() >= deadline => {
                    bail!("the row did not reach {name} within {REPLICATION_TIMEOUT:?}: {rows:?}")
                }
                // The table itself may not have arrived yet.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    // Both replicas are streaming from the primary, by name.
    let streaming = pg.psql(
        0,
        "select string_agg(application_name, ',' order by application_name) \
         from pg_stat_replication where state = 'streaming'",
    )?;
    assert_eq!(streaming, "replica1,replica2");
    assert_eq!(
        pg.psql(1, "select current_user")?,
        SUPERUSER,
        "psql helper on a replica"
    );
    Ok(())
}

#[tokio::test]
async fn drop_stops_every_server_and_removes_the_directory() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(1)? else {
        return Ok(());
    };
    let dir = pg.dir().to_path_buf();
    let ports: Vec<u16> = (0..pg.len()).map(|i| pg.node(i).port).collect();
    drop(pg);
    assert!(!dir.exists(), "{} is still there", dir.display());
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port}"
        );
    }
    Ok(())
}
