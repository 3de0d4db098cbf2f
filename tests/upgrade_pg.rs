//! `switchyard upgrade` with Postgres clients, against a real PostgreSQL: the Postgres
//! listener moves to the new process in the same handover, and clients already connected
//! stay on the old one. A TLS client inside a transaction when the drain timeout ends is not
//! cut: its transaction commits, and only then is it told 57P01 and closed. A client that
//! connects afterwards gets the new process. A cancel for a session left on the old
//! process reaches the new process's listener and is passed back to the old one.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context};
use support::eventually;
use support::pg::client::{connect_tls, tls_connector, Router};
use support::pg::PgCluster;
use support::tls::SelfSigned;
use support::upgrade::{alive, wait_gone, Upgrades};

/// The drain timeout the test asks for: sessions are asked to close after it.
const PG_DRAIN: &str = "1s";

/// A router in `mode` with TLS from `router.crt` and `router.key` in `dir`, user `app`.
fn tls_router(pg: &PgCluster, dir: &std::path::Path, mode: &str) -> anyhow::Result<Router> {
    let settings = format!(
        "pool_mode = \"{mode}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
        dir.join("router.crt").display(),
        dir.join("router.key").display()
    );
    Router::start(pg, &settings, &[r#"{ name = "app", password = "app-pw" }"#])
}

#[tokio::test]
async fn a_tls_client_inside_a_transaction_is_not_cut_by_an_upgrade() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(());
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; grant create on schema public to app; \
         create table public.moved (n int); grant all on public.moved to app;",
    )?;
    let dir = tempfile::tempdir()?;
    let cert = SelfSigned::new(&["localhost", "127.0.0.1"])?;
    cert.write(dir.path(), "router")?;
    for mode in ["transaction", "session"] {
        let router = tls_router(&pg, dir.path(), mode)?;
        let ups = Upgrades::default();
        let old = router.sy.pid()?;
        let config = router.config("app", "app-pw");
        let client = connect_tls(&config, &cert).await.context(mode)?;
        client
            .batch_execute("begin; insert into moved values (1)")
            .await?;

        let path = router.sy.config_path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            ups.run(&path, &["--pg-drain", PG_DRAIN, "--grace", "10s"])
                .map(|o| (o, ups))
        })
        .await??;
        let (out, ups) = out;
        ensure!(out.ok, "{mode}: {out:?}");
        ensure!(
            alive(old),
            "{mode}: the old process left with a transaction open"
        );
        // Past the drain timeout, the transaction goes on on the old process.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let n: i64 = client
            .query_one("select count(*) from moved where n = 1", &[])
            .await
            .context("a statement inside the transaction after the drain timeout")?
            .get(0);
        ensure!(n == 1, "{mode}: {n}");
        client
            .batch_execute("insert into moved values (2); commit")
            .await?;
        // Between transactions now: told 57P01 and closed.
        let next = client.simple_query("select 1").await;
        let code = next
            .as_ref()
            .err()
            .and_then(|e| e.code())
            .map(|c| c.code().to_string());
        ensure!(
            next.is_err() && code.as_deref().is_none_or(|c| c == "57P01"),
            "{mode}: after the commit: {next:?}"
        );
        tokio::task::spawn_blocking(move || wait_gone(old, Duration::from_secs(20))).await??;
        // Both rows committed; a new client gets the new process.
        let fresh = connect_tls(&config, &cert)
            .await
            .context("after the upgrade")?;
        let both: i64 = fresh
            .query_one("select count(*) from moved", &[])
            .await?
            .get(0);
        ensure!(both == 2, "{mode}: {both} rows");
        fresh.batch_execute("delete from moved").await?;
        ensure!(out.pid.is_some_and(alive), "{mode}: {out:?}");
        drop(ups);
    }
    Ok(())
}

#[tokio::test]
async fn a_cancel_for_a_session_left_on_the_old_process_reaches_it() -> anyhow::Result<()> {
    let Some(pg) = support::pg::client::primary_with_app()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let cert = SelfSigned::new(&["localhost", "127.0.0.1"])?;
    cert.write(dir.path(), "router")?;
    let router = tls_router(&pg, dir.path(), "session")?;
    let old = router.sy.pid()?;
    let config = router.config("app", "app-pw");
    let client = connect_tls(&config, &cert).await?;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = client.simple_query("select pg_sleep(60)").await;
        r.err().and_then(|e| e.code().map(|c| c.code().to_string()))
    });
    let pg = std::sync::Arc::new(pg);
    let watch = pg.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(20), || {
            let n = watch.psql(
                0,
                "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)'",
            )?;
            ensure!(n == "1", "the sleep is not running yet");
            Ok(())
        })
    })
    .await??;
    let path = router.sy.config_path().to_path_buf();
    let (out, ups) = tokio::task::spawn_blocking(move || {
        let ups = Upgrades::default();
        ups.run(&path, &["--pg-drain", "60s"]).map(|o| (o, ups))
    })
    .await??;
    ensure!(out.ok, "{out:?}");
    // The listener is the new process's now; the session is on the old one.
    token.cancel_query(tls_connector(&cert)?).await?;
    let code = tokio::time::timeout(Duration::from_secs(20), sleeper).await??;
    ensure!(
        code.as_deref() == Some("57014"),
        "the sleep ended with {code:?}"
    );
    ensure!(
        alive(old),
        "the old process should still hold the TLS session"
    );
    drop(ups);
    Ok(())
}
