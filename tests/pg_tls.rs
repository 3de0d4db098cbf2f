//! TLS on both sides of the Postgres router, against a real PostgreSQL and real clients
//! (tokio-postgres over rustls, and libpq's `psql`):
//! - `tls` optional: TLS clients and clients in the clear both get in, in transaction and
//!   session pooling, and large results, `COPY` and pipelined statements cross the TLS link;
//! - `tls` required: a client in the clear is refused with 28000, a TLS client gets in;
//! - `server_tls = "require"` against a primary that refuses logins without TLS: the
//!   router's server connections are encrypted (`pg_stat_ssl`), verified against
//!   `server_tls_ca` when given, and refused when the CA does not match or TLS is off.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context};
use support::pg::client::{self as pg, connect_tls, Router};
use support::pg::PgCluster;
use support::tls::SelfSigned;

const USERS: &[&str] = &[r#"{ name = "app", password = "app-pw" }"#];

/// A certificate for `127.0.0.1` and `localhost` in `dir`: `(cert, key, the certificate)`.
fn certificate(dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf, SelfSigned)> {
    let cert = SelfSigned::new(&["localhost", "127.0.0.1"])?;
    cert.write(dir, stem)?;
    Ok((
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
        cert,
    ))
}

/// SQLSTATE of a failed connection.
fn sqlstate(e: &anyhow::Error) -> Option<String> {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .map(|c| c.code().to_string())
}

/// Work that crosses the link in both directions and in bulk.
async fn exercise(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let big: String = client
        .query_one("select repeat('x', 3000000)", &[])
        .await?
        .get(0);
    assert_eq!(big.len(), 3_000_000);
    let n: i64 = client
        .query_one(
            "select count(*) from generate_series(1, $1::int)",
            &[&50_000i32],
        )
        .await?
        .get(0);
    assert_eq!(n, 50_000);
    let payload = "y".repeat(2_000_000);
    let len: i32 = client
        .query_one("select length($1::text)", &[&payload])
        .await?
        .get(0);
    assert_eq!(len, 2_000_000);
    // Pipelined: several queries in flight at once on one connection.
    let (a, b, c) = tokio::try_join!(
        client.query_one("select 1::int", &[]),
        client.query_one("select 2::int", &[]),
        client.query_one("select 3::int", &[]),
    )?;
    assert_eq!(
        (a.get::<_, i32>(0), b.get::<_, i32>(0), c.get::<_, i32>(0)),
        (1, 2, 3)
    );
    Ok(())
}

/// `psql` (libpq) through the router with `sslmode`; its output, or its error.
fn psql(pg: &PgCluster, port: u16, sslmode: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new(pg.bin("psql"))
        .arg(format!(
            "host=127.0.0.1 port={port} user=app dbname=postgres sslmode={sslmode}"
        ))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", "app-pw")
        .output()
        .context("running psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn optional_tls_serves_tls_and_clear_clients_in_both_pool_modes() -> anyhow::Result<()> {
    let Some(pg) = pg::primary_with_app()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (cert_path, key_path, cert) = certificate(dir.path(), "router")?;
    for mode in ["transaction", "session"] {
        let settings = format!(
            "pool_mode = \"{mode}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            cert_path.display(),
            key_path.display()
        );
        let router = Router::start(&pg, &settings, USERS)?;
        let config = router.config("app", "app-pw");
        let tls = connect_tls(&config, &cert).await.context(mode)?;
        exercise(&tls).await.context(mode)?;
        let clear = pg::connect(&config).await.context(mode)?;
        exercise(&clear).await.context(mode)?;
        // COPY in both directions over TLS.
        tls.batch_execute("create table if not exists t (x int)")
            .await?;
        let sink = tls.copy_in("copy t from stdin").await?;
        futures_util::pin_mut!(sink);
        use futures_util::SinkExt;
        let rows: String = (0..20_000).map(|i| format!("{i}\n")).collect();
        sink.send(bytes::Bytes::from(rows)).await?;
        let copied = sink.finish().await?;
        assert_eq!(copied, 20_000);
        let n: i64 = tls.query_one("select count(*) from t", &[]).await?.get(0);
        assert_eq!(n, 20_000);
        tls.batch_execute("drop table t").await?;
        // libpq: sslmode=require is encrypted, sslmode=disable is not refused.
        let info = psql(&pg, router.port, "require", "select 'tls ok'")?;
        assert_eq!(info, "tls ok");
        assert_eq!(
            psql(&pg, router.port, "disable", "select 'clear ok'")?,
            "clear ok"
        );
        let s = router.cluster_status()?;
        assert_eq!(s["tls"]["mode"], "optional", "{s}");
    }
    Ok(())
}

#[tokio::test]
async fn required_tls_refuses_clear_clients_with_28000() -> anyhow::Result<()> {
    let Some(pg) = pg::primary_with_app()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (cert_path, key_path, cert) = certificate(dir.path(), "router")?;
    let settings = format!(
        "tls = {{ cert = \"{}\", key = \"{}\", mode = \"required\" }}",
        cert_path.display(),
        key_path.display()
    );
    let router = Router::start(&pg, &settings, USERS)?;
    let config = router.config("app", "app-pw");
    let err = pg::connect(&config)
        .await
        .err()
        .ok_or_else(|| anyhow!("a client in the clear got in"))?;
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err:#}");
    assert!(
        psql(&pg, router.port, "disable", "select 1").is_err(),
        "psql in the clear got in"
    );
    let tls = connect_tls(&config, &cert).await?;
    exercise(&tls).await?;
    assert_eq!(psql(&pg, router.port, "require", "select 'ok'")?, "ok");
    // A client that does not trust the certificate gives up.
    let other = SelfSigned::new(&["127.0.0.1"])?;
    assert!(connect_tls(&config, &other).await.is_err());
    Ok(())
}

/// Turn TLS on in the primary with `cert` and refuse `app` logins without it.
fn server_tls_on(pg: &PgCluster, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let data = &pg.primary().data_dir;
    let owner = std::fs::metadata(data)?;
    for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
        let to = data.join(name);
        std::fs::copy(from, &to)?;
        std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid()))?;
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba)?;
    std::fs::write(
        &hba,
        format!("hostnossl all app 127.0.0.1/32 reject\n{rules}"),
    )?;
    pg.psql(0, "alter system set ssl = on")?;
    pg.psql(0, "select pg_reload_conf()")?;
    pg.wait_for(0, "show ssl", "on", Duration::from_secs(10))
}

#[tokio::test]
async fn server_tls_encrypts_and_verifies_the_router_s_logins() -> anyhow::Result<()> {
    let Some(pg) = pg::primary_with_app()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (cert_path, key_path, _) = certificate(dir.path(), "server")?;
    server_tls_on(&pg, &cert_path, &key_path)?;
    let (wrong_ca, _, _) = certificate(dir.path(), "other")?;
    let encrypted = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

    for (settings, pool) in [
        (r#"server_tls = "require""#.to_string(), "transaction"),
        (
            format!(
                "server_tls = \"require\"\nserver_tls_ca = \"{}\"\npool_mode = \"session\"",
                cert_path.display()
            ),
            "session",
        ),
        // The default, prefer, takes TLS when the server offers it.
        (String::new(), "transaction"),
    ] {
        let router = Router::start(&pg, &settings, USERS)?;
        // The node monitor logs in with the same TLS (the server refuses `app` in the
        // clear): the primary is seen up, so no failover is started by mistake.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let node = router.cluster_status()?["nodes"][0].clone();
            if node["reachable"] == true {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{settings:?}: the monitor cannot reach the primary: {node}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let client = pg::connect(&router.config("app", "app-pw"))
            .await
            .with_context(|| format!("{settings:?}"))?;
        let ssl: bool = client.query_one(encrypted, &[]).await?.get(0);
        assert!(
            ssl,
            "{settings:?} ({pool}): the server link is not encrypted"
        );
        exercise(&client).await?;
    }

    // A CA that did not sign the server's certificate, or no TLS: no login.
    for settings in [
        format!(
            "server_tls = \"require\"\nserver_tls_ca = \"{}\"",
            wrong_ca.display()
        ),
        r#"server_tls = "disable""#.to_string(),
    ] {
        let router = Router::start(&pg, &settings, USERS)?;
        let got = pg::connect(&router.config("app", "app-pw")).await;
        let refused = match got {
            Err(_) => true,
            // Transaction pooling may answer the login from cache; the first query fails.
            Ok(c) => c.query_one("select 1", &[]).await.is_err(),
        };
        assert!(refused, "{settings:?}: a login went through");
    }
    Ok(())
}
