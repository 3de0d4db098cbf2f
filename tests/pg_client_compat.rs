//! What real clients' own test suites found (`scripts/client-suites.sh`, results in
//! `docs/CLIENT_SUITES.md`), each as the smallest end-to-end reproduction through the router
//! in transaction pooling, with tokio-postgres.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;
use tokio_postgres::error::SqlState;

const USERS: &[&str] = &[r#"{ name = "app", password = "app-pw" }"#];

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

/// tokio-postgres `types::domain` (and, through the temporary table it leaked into the pool,
/// `types::test_bpchar_params`): objects created in the temporary schema by name
/// (`pg_temp.x`, without the word `TEMP`) are session state: their client must keep its
/// server connection, and no other client may see them.
#[tokio::test]
async fn objects_created_in_pg_temp_pin_their_client() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let config = router.config("app", "app-pw");
    let a = pg::connect(&config).await?;
    a.batch_execute(
        "CREATE DOMAIN pg_temp.session_id AS bytea CHECK (octet_length(VALUE) = 16);
         CREATE TABLE pg_temp.foo (id pg_temp.session_id);",
    )
    .await?;

    // The only idle server connection is the one `a` created its objects on, unless `a`
    // kept it: a transaction of `b` takes it.
    let b = pg::connect(&config).await?;
    b.batch_execute("BEGIN").await?;
    match b.query("SELECT count(*) FROM pg_temp.foo", &[]).await {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {}
        other => anyhow::bail!("another client saw a's temporary table: {other:?}"),
    }
    b.batch_execute("ROLLBACK").await?;

    // `a` still has them, in later turns, with prepared statements too.
    let insert = a
        .prepare("INSERT INTO pg_temp.foo (id) VALUES ($1::bytea)")
        .await?;
    a.execute(&insert, &[&b"0123456789abcdef".to_vec()]).await?;
    let rows = a.query("SELECT id::bytea FROM pg_temp.foo", &[]).await?;
    assert_eq!(rows.len(), 1);
    let id: Vec<u8> = rows[0].get(0);
    assert_eq!(id, b"0123456789abcdef");

    // When `a` leaves, its connection is reset (DISCARD ALL drops the table) before anyone
    // else gets it.
    drop(a);
    let c = pg::connect(&config).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 'foo' AND relpersistence = 't'",
                &[],
            )
            .await?
            .get(0);
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "a's temporary table outlived its session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// asyncpg `test_cache_invalidation` (`test_prepare_cache_invalidation_silent` and others):
/// after a column changes type, a statement prepared before fails with 0A000 ("cached plan
/// must not change result type"), and the client prepares the same text again. On a server
/// of its own that new statement is planned afresh; through the router it must not be
/// answered from the stale copy the server connection already has.
#[tokio::test]
async fn a_statement_prepared_again_after_ddl_is_planned_afresh() -> anyhow::Result<()> {
    // One server connection, so the new statement meets the stale copy.
    let Some((_pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let a = pg::connect(&router.config("app", "app-pw")).await?;
    a.batch_execute("CREATE TABLE tab1 (a int, b int); INSERT INTO tab1 VALUES (1, 2)")
        .await?;
    let before = a.prepare("SELECT * FROM tab1").await?;
    let row = a.query_one(&before, &[]).await?;
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (1, 2));

    a.batch_execute("ALTER TABLE tab1 ALTER COLUMN b SET DATA TYPE text")
        .await?;
    match a.query_one(&before, &[]).await {
        Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {}
        other => anyhow::bail!("expected 0A000 from the statement prepared before: {other:?}"),
    }

    let after = a.prepare("SELECT * FROM tab1").await?;
    let row = a.query_one(&after, &[]).await?;
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (1, "2".to_string())
    );
    Ok(())
}

/// A client that prepares a text another client prepared before a schema change the router
/// did not see (a migration run directly, another router's) must get a statement planned
/// now, as its own server would plan its `Parse`, not the 0A000 of the old shared copy that
/// the server connection keeps. (`tests/pg_migration.rs` met this as a race: a `Parse`
/// answered from a shared statement just before the router saw the DDL.)
#[tokio::test]
async fn a_text_prepared_after_ddl_the_router_did_not_see_is_planned_afresh() -> anyhow::Result<()>
{
    // One server connection, so the second client's statement meets the stale copy.
    let Some((pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let config = router.config("app", "app-pw");
    let a = pg::connect(&config).await?;
    a.batch_execute("CREATE TABLE tab3 (a int, b int); INSERT INTO tab3 VALUES (1, 2)")
        .await?;
    let before = a.prepare("SELECT * FROM tab3").await?;
    let row = a.query_one(&before, &[]).await?;
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (1, 2));

    // Past the router: it sees no DDL, and its shared copy stays as it was.
    pg.psql(0, "ALTER TABLE tab3 ALTER COLUMN b SET DATA TYPE text")?;

    let b = pg::connect(&config).await?;
    let fresh = b.prepare("SELECT * FROM tab3").await?;
    let row = b.query_one(&fresh, &[]).await?;
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (1, "2".to_string())
    );
    // The statement `a` prepared before still fails, as on a direct connection.
    match a.query_one(&before, &[]).await {
        Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {}
        other => anyhow::bail!("expected 0A000 from the statement prepared before: {other:?}"),
    }
    // And a third client preparing it now shares `b`'s fresh statement.
    let c = pg::connect(&config).await?;
    let row = c.query_one("SELECT * FROM tab3", &[]).await?;
    assert_eq!(row.get::<_, String>(1), "2");
    Ok(())
}

/// The server's pid of the connection a client's next turn gets.
async fn backend_pid(c: &tokio_postgres::Client) -> anyhow::Result<i32> {
    Ok(c.query_one("select pg_backend_pid()", &[]).await?.get(0))
}

/// A statement prepared before DDL and then bound on a server connection that never had it
/// must behave as the client's own statement on a direct connection: 0A000 when its result
/// type changed, not rows of the new shape decoded with the old description. The router
/// prepares it there again, compares the server's description with the one its client was
/// told, and fails the request as the server would have.
#[tokio::test]
async fn a_statement_prepared_again_after_ddl_elsewhere_fails_as_on_its_own_server(
) -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "5s" }"#)? else {
        return Ok(());
    };
    let config = router.config("app", "app-pw");
    let (a, b, c) = (
        pg::connect(&config).await?,
        pg::connect(&config).await?,
        pg::connect(&config).await?,
    );
    a.batch_execute("CREATE TABLE tab2 (a int, b int); INSERT INTO tab2 VALUES (1, 2)")
        .await?;
    // `b` holds one server connection; `a` prepares and runs its statement on the other.
    b.batch_execute("BEGIN").await?;
    let held = backend_pid(&b).await?;
    let before = a.prepare("SELECT * FROM tab2").await?;
    let row = a.query_one(&before, &[]).await?;
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (1, 2));
    b.batch_execute("COMMIT").await?;
    a.batch_execute("ALTER TABLE tab2 ALTER COLUMN b SET DATA TYPE text")
        .await?;

    // Now hold the connection that has `a`'s statement, so that `a` gets the one that
    // never had it.
    b.batch_execute("BEGIN").await?;
    c.batch_execute("BEGIN").await?;
    let (pb, pc) = (backend_pid(&b).await?, backend_pid(&c).await?);
    let fresh = if pb == held { &c } else { &b };
    anyhow::ensure!(pb != pc, "b and c share a server connection");
    fresh.batch_execute("COMMIT").await?;
    match a.query_one(&before, &[]).await {
        Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {}
        other => anyhow::bail!("expected 0A000 as on a direct connection: {other:?}"),
    }
    // Again: the copy is checked again, as the server checks the client's own statement.
    match a.query_one(&before, &[]).await {
        Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {}
        other => anyhow::bail!("expected 0A000 again: {other:?}"),
    }
    // In a transaction it fails the transaction, as the server's own error would.
    a.batch_execute("BEGIN").await?;
    assert!(a.query_one(&before, &[]).await.is_err());
    match a.query_one("select 1", &[]).await {
        Err(e) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {}
        other => anyhow::bail!("expected 25P02 after the failed statement: {other:?}"),
    }
    a.batch_execute("ROLLBACK").await?;
    let after = a.prepare("SELECT * FROM tab2").await?;
    let row = a.query_one(&after, &[]).await?;
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (1, "2".to_string())
    );
    for t in [&b, &c] {
        t.batch_execute("ROLLBACK").await?;
    }
    Ok(())
}
