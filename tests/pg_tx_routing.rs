//! Where transactions go with the read/write split, pinned down rule by rule (the README's
//! "Transactions" list says the same): a transaction is routed by the statement that opens
//! it and stays on that node until it ends. `BEGIN READ ONLY` and `START TRANSACTION READ
//! ONLY` (with any isolation level but serializable) run on a replica; a plain `BEGIN`,
//! `BEGIN READ WRITE` and serializable read-only transactions on the primary; a `SET
//! TRANSACTION READ ONLY` inside a transaction does not move it; a session default of
//! read-only (`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`) makes a plain `BEGIN`
//! a read-only transaction, for a replica, and setting it back to `READ WRITE` undoes that
//! (and a read-only transaction sent right after either still goes to a replica, not to the
//! connection the router was still reading the setting back on); a write inside a read-only
//! transaction gets the replica's own error (25006) and the session goes on.
//!
//! Each case runs its statements as separate turns (one simple query each), the way an
//! application sends them, and asks `pg_is_in_recovery()` inside the transaction.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use support::pg::client::{connect, Router};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};
use tokio_postgres::{Client, SimpleQueryMessage};

const SETTINGS: &str = "pool_mode = \"transaction\"\n\
    pool = { max_size = 4, checkout_timeout = \"30s\" }\n\
    routing = { read_write_split = true }\n\
    failover = { check_interval = \"100ms\", check_timeout = \"500ms\", failure_threshold = 3 }";

/// The first column of the first row `sql` returns.
async fn value(client: &Client, sql: &str) -> anyhow::Result<Option<String>> {
    let rows = client.simple_query(sql).await?;
    Ok(rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    }))
}

/// Whether a transaction opened by `opening` (statements sent one by one) runs on a replica.
async fn on_replica(client: &Client, opening: &[&str]) -> anyhow::Result<bool> {
    for sql in opening {
        client.simple_query(sql).await?;
    }
    let in_recovery = value(client, "select pg_is_in_recovery()").await?;
    client.simple_query("COMMIT").await?;
    Ok(in_recovery.as_deref() == Some("t"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_runs_where_its_opening_statement_sends_it() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(1)? else {
        return Ok(());
    };
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let router = Router::start(&pg, SETTINGS, &[&user])?;
    let mut client = connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    client
        .batch_execute("create table tx_routing (id int)")
        .await?;

    // Until the monitor has seen the replica, reads fall back to the primary.
    let deadline = Instant::now() + Duration::from_secs(15);
    while value(&client, "select pg_is_in_recovery()")
        .await?
        .as_deref()
        != Some("t")
    {
        anyhow::ensure!(Instant::now() < deadline, "reads never reached the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cases: &[(&[&str], bool)] = &[
        (&["BEGIN READ ONLY"], true),
        (&["START TRANSACTION READ ONLY"], true),
        (
            &["begin transaction read only, isolation level repeatable read"],
            true,
        ),
        (&["BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"], true),
        (&["BEGIN"], false),
        (&["START TRANSACTION"], false),
        (&["BEGIN READ WRITE"], false),
        // A hot standby refuses serializable transactions: the primary takes them.
        (&["BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"], false),
        // The transaction is already on the primary when it is made read-only.
        (&["BEGIN", "SET TRANSACTION READ ONLY"], false),
        // An override comment is honoured for the transaction it opens.
        (&["/* switchyard: primary */ BEGIN READ ONLY"], false),
        (&["/* switchyard: replica */ BEGIN"], true),
    ];
    for (opening, replica) in cases {
        let got = on_replica(&client, opening).await?;
        assert_eq!(
            got,
            *replica,
            "{opening:?} ran on the {}",
            if got { "replica" } else { "primary" }
        );
    }

    // Every statement of a read-only transaction stays on the node that took its BEGIN.
    client.simple_query("BEGIN READ ONLY").await?;
    let pid = value(&client, "select pg_backend_pid()").await?;
    for _ in 0..5 {
        assert_eq!(value(&client, "select pg_backend_pid()").await?, pid);
        assert_eq!(
            value(&client, "select pg_is_in_recovery()")
                .await?
                .as_deref(),
            Some("t")
        );
    }
    client.simple_query("COMMIT").await?;

    // A write in a read-only transaction gets the replica's own error; the session goes on.
    client.simple_query("BEGIN READ ONLY").await?;
    let e = client
        .simple_query("insert into tx_routing values (1)")
        .await
        .expect_err("a write in a read-only transaction");
    assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
    client.simple_query("ROLLBACK").await?;
    assert_eq!(value(&client, "select 7").await?.as_deref(), Some("7"));

    // tokio-postgres's read-only transactions (extended protocol inside) run on a replica.
    let tx = client.build_transaction().read_only(true).start().await?;
    let row = tx.query_one("select pg_is_in_recovery()", &[]).await?;
    tx.commit().await?;
    assert!(
        row.get::<_, bool>(0),
        "a tokio-postgres read-only transaction ran on the primary"
    );
    // The session's default makes a plain BEGIN read-only: it goes to a replica, as BEGIN
    // READ ONLY does; BEGIN READ WRITE still goes to the primary.
    client
        .simple_query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await?;
    assert!(on_replica(&client, &["BEGIN"]).await?);
    assert!(!on_replica(&client, &["BEGIN READ WRITE"]).await?);
    client
        .simple_query("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        .await?;
    // Back to read-write, the session's read-only transactions still run on a replica, and
    // its plain ones on the primary.
    assert!(
        on_replica(&client, &["BEGIN READ ONLY"]).await?,
        "a read-only transaction right after SET SESSION CHARACTERISTICS ran on the primary"
    );
    let tx = client.build_transaction().read_only(true).start().await?;
    let row = tx.query_one("select pg_is_in_recovery()", &[]).await?;
    tx.commit().await?;
    assert!(
        row.get::<_, bool>(0),
        "a read-only transaction ran on the primary"
    );
    assert!(!on_replica(&client, &["BEGIN"]).await?);

    Ok(())
}
