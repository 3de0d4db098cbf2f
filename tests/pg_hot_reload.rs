//! Hot reload of a Postgres cluster under transaction pooling, against a real primary and two
//! streaming replicas and the `switchyard` binary: replicas added and removed, a pool size
//! and a lag limit changed by editing the config file, while a client stays connected and a
//! transaction is open across the reload. The client never reconnects; its next turns follow
//! the new config.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::ensure;
use support::pg::client::{connect, Router};
use support::pg::ha::{served_by, wait_until};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};

fn node(port: u16, role: &str) -> String {
    format!(r#"{{ addr = "127.0.0.1:{port}", role = "{role}" }}"#)
}

/// Ports that served `n` reads.
async fn serving(client: &tokio_postgres::Client, n: usize) -> anyhow::Result<HashSet<u16>> {
    let mut ports = HashSet::new();
    for _ in 0..n {
        ports.insert(served_by(client).await?);
    }
    Ok(ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_limits_change_under_a_connected_client() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, "create table t (id int)")?;
    let (p, r1, r2) = (pg.node(0).port, pg.node(1).port, pg.node(2).port);
    let first = [node(p, "primary"), node(r1, "replica")];
    let settings = "routing = { read_write_split = true }\n\
        pool = { max_size = 4 }\n\
        failover = { check_interval = \"100ms\" }";
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let router = Router::start_nodes(&first, settings, &[&user])?;
    let client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    wait_until(Duration::from_secs(10), || async {
        ensure!(
            serving(&client, 10).await? == HashSet::from([r1]),
            "reads not on replica1 yet"
        );
        Ok(())
    })
    .await?;

    // A transaction open across the reload that adds replica2 and resizes the pool.
    client
        .batch_execute("begin; insert into t values (1)")
        .await?;
    let path = router.sy.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path)?;
    let old_nodes = first.join(", ");
    let both = [node(p, "primary"), node(r1, "replica"), node(r2, "replica")].join(", ");
    let grown = text
        .replace(&old_nodes, &both)
        .replace("max_size = 4", "max_size = 6");
    ensure!(grown != text, "the nodes line was not found in:\n{text}");
    let before = tokio::task::block_in_place(|| router.sy.version())?;
    std::fs::write(&path, &grown)?;
    wait_until(Duration::from_secs(10), || async {
        let v = tokio::task::block_in_place(|| router.sy.version())?;
        ensure!(v > before, "not reloaded yet");
        Ok(())
    })
    .await?;
    client
        .batch_execute("insert into t values (2); commit")
        .await?;
    ensure!(
        pg.psql(0, "select count(*) from t")? == "2",
        "the open transaction was lost"
    );
    wait_until(Duration::from_secs(10), || async {
        let ports = serving(&client, 40).await?;
        ensure!(ports.contains(&r2), "replica2 gets no reads: {ports:?}");
        Ok(())
    })
    .await?;
    let s = tokio::task::block_in_place(|| router.cluster_status())?;
    ensure!(s["nodes"].as_array().map(Vec::len) == Some(3), "{s}");

    // Remove replica1: the same client's reads never reach it again.
    let shrunk = grown.replace(&both, &[node(p, "primary"), node(r2, "replica")].join(", "));
    std::fs::write(&path, &shrunk)?;
    wait_until(Duration::from_secs(10), || async {
        let s = tokio::task::block_in_place(|| router.cluster_status())?;
        ensure!(
            s["nodes"].as_array().map(Vec::len) == Some(2),
            "not reloaded yet"
        );
        Ok(())
    })
    .await?;
    let ports = serving(&client, 40).await?;
    ensure!(
        !ports.contains(&r1),
        "a removed replica still gets reads: {ports:?}"
    );
    ensure!(ports.contains(&r2), "{ports:?}");
    Ok(())
}
