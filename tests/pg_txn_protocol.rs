//! Transaction pooling end to end, the extended protocol: named prepared statements that
//! follow their client to other server connections, pipelined batches, `Flush` without
//! `Sync`, errors in the middle of a pipeline — with tokio-postgres, and a raw wire client
//! for what real clients do not spell out. (`COPY`, `LISTEN` and cancel:
//! `pg_txn_copy_listen.rs`.)
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::Duration;

use anyhow::anyhow;
use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USERS: &[&str] = &[
    r#"{ name = "app", password = "app-pw" }"#,
    r#"{ name = "cron", password = "cron-pw", client_auth = "trust" }"#,
];

fn setup(pool: &str) -> anyhow::Result<Option<(PgCluster, Router)>> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(None);
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; create role cron login password 'cron-pw'; \
         grant create on schema public to app, cron;",
    )?;
    let settings = format!("pool_mode = \"transaction\"\npool = {pool}");
    let router = Router::start(&pg, &settings, USERS)?;
    Ok(Some((pg, router)))
}

/// A client on the wire, logged in as the trusted user `cron`.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

fn msg(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    let mut out = vec![tag];
    out.extend_from_slice(&(len as i32).to_be_bytes());
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(
        b'P',
        &[name.as_bytes(), b"\0", sql.as_bytes(), b"\0", &[0, 0]],
    )
}

fn bind(stmt: &str) -> Vec<u8> {
    msg(b'B', &[b"\0", stmt.as_bytes(), b"\0", &[0, 0, 0, 0, 0, 0]])
}

fn execute() -> Vec<u8> {
    msg(b'E', &[b"\0", &[0, 0, 0, 0]])
}

const SYNC: &[u8] = b"S\0\0\0\x04";
const FLUSH: &[u8] = b"H\0\0\0\x04";

impl Raw {
    async fn connect(port: u16) -> anyhow::Result<Raw> {
        let mut raw = Raw {
            s: TcpStream::connect(("127.0.0.1", port)).await?,
            buf: Vec::new(),
        };
        let hello = pg::startup(0x0003_0000, &[("user", "cron"), ("database", "postgres")]);
        raw.s.write_all(&hello).await?;
        raw.until(b'Z').await?;
        Ok(raw)
    }

    async fn send(&mut self, parts: &[&[u8]]) -> anyhow::Result<()> {
        self.s.write_all(&parts.concat()).await?;
        Ok(())
    }

    /// The next message, within `within`.
    async fn recv_within(&mut self, within: Duration) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let end = 1 + len as usize;
                if self.buf.len() >= end {
                    let m: Vec<u8> = self.buf.drain(..end).collect();
                    return Ok(Some((m[0], m[5..].to_vec())));
                }
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => anyhow::bail!("the router closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n?]),
            }
        }
    }

    /// The tags of the messages up to and including the next `tag`.
    async fn until(&mut self, tag: u8) -> anyhow::Result<String> {
        let mut tags = String::new();
        loop {
            let (t, body) = self
                .recv_within(Duration::from_secs(10))
                .await?
                .ok_or_else(|| anyhow!("no '{}' after {tags:?}", tag as char))?;
            tags.push(t as char);
            if t == b'E' && tag != b'E' {
                let text = String::from_utf8_lossy(&body).replace('\0', "|");
                tags.push_str(&format!("[{text}]"));
            }
            if t == tag {
                return Ok(tags);
            }
        }
    }
}

#[tokio::test]
async fn flush_is_answered_and_a_batch_keeps_its_connection_until_sync() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 1, checkout_timeout = "10s" }"#)? else {
        return Ok(());
    };
    let mut raw = Raw::connect(router.port).await?;
    raw.send(&[&parse("", "select 41 + 1"), FLUSH]).await?;
    assert_eq!(
        raw.until(b'1').await?,
        "1",
        "ParseComplete after Flush, without Sync"
    );

    // The server said idle long ago, but the batch is not over: the only server connection
    // stays with this client. (Another client of the same user logs in meanwhile without a
    // server connection, on what the first login told.)
    let other = pg::connect(&router.config("cron", "")).await?;
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
        "the connection was given away mid-batch"
    );
    raw.send(&[&bind(""), &execute(), FLUSH]).await?;
    assert_eq!(raw.until(b'C').await?, "2DC");
    assert!(raw.recv_within(Duration::from_millis(200)).await?.is_none());
    raw.send(&[SYNC]).await?;
    assert_eq!(raw.until(b'Z').await?, "Z");
    let (r, _other) = waiting.await?;
    assert_eq!(r?, 2);
    Ok(())
}

#[tokio::test]
async fn pipelines_mirror_the_servers_skip_to_sync_after_an_error() -> anyhow::Result<()> {
    let Some((_pg, router)) = setup(r#"{ max_size = 2, checkout_timeout = "10s" }"#)? else {
        return Ok(());
    };
    let mut raw = Raw::connect(router.port).await?;
    // Three batches in one write: fine, failing (bad statement, then a Bind of it that the
    // server skips), fine again.
    raw.send(&[
        &parse("a", "select 1"),
        &bind("a"),
        &execute(),
        SYNC,
        &parse("bad", "selec 2"),
        &bind("bad"),
        &execute(),
        SYNC,
        &parse("c", "select 3"),
        &bind("c"),
        &execute(),
        SYNC,
    ])
    .await?;
    assert_eq!(raw.until(b'Z').await?, "12DCZ");
    let second = raw.until(b'Z').await?;
    assert!(
        second.starts_with("E[") && second.contains("42601") && second.ends_with('Z'),
        "{second}"
    );
    assert_eq!(raw.until(b'Z').await?, "12DCZ");

    // Later turns: "a" and "c" still exist for this client, "bad" never did.
    raw.send(&[&bind("c"), &execute(), &bind("a"), &execute(), SYNC])
        .await?;
    assert_eq!(raw.until(b'Z').await?, "2DC2DCZ");
    raw.send(&[&bind("bad"), &execute(), SYNC]).await?;
    let missing = raw.until(b'Z').await?;
    assert!(
        missing.contains("26000") && missing.contains("bad"),
        "{missing}"
    );

    // tokio-postgres pipelining: requests joined, written back to back, several Syncs.
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    let stmt = client.prepare("select $1::int * 10").await?;
    let (a, b, c) = tokio::join!(
        client.query_one(&stmt, &[&1i32]),
        client.query_one("select $1::text || '!'", &[&"two"]),
        client.query_one(&stmt, &[&3i32]),
    );
    assert_eq!(
        (
            a?.get::<_, i32>(0),
            b?.get::<_, String>(0),
            c?.get::<_, i32>(0)
        ),
        (10, "two!".into(), 30)
    );
    Ok(())
}

#[tokio::test]
async fn prepared_statements_follow_their_client_to_other_server_connections() -> anyhow::Result<()>
{
    let Some((_pg, router)) = setup(r#"{ max_size = 4, checkout_timeout = "10s" }"#)? else {
        return Ok(());
    };
    let client = pg::connect(&router.config("app", "app-pw")).await?;
    let holder = pg::connect(&router.config("app", "app-pw")).await?;
    let stmt = client
        .prepare("select pg_backend_pid(), $1::int + 1")
        .await?;
    let mut pids = Vec::new();
    for i in 0..4i32 {
        let row = client.query_one(&stmt, &[&i]).await?;
        assert_eq!(row.get::<_, i32>(1), i + 1);
        let pid: i32 = row.get(0);
        pids.push(pid);
        // Hold the server connection the statement just ran on, so that its next run
        // must happen on another one.
        holder.batch_execute("begin").await?;
        let held: i32 = holder
            .query_one("select pg_backend_pid()", &[])
            .await?
            .get(0);
        assert_eq!(
            held, pid,
            "the pool did not hand out the most recently used connection"
        );
        let row = client.query_one(&stmt, &[&(i * 2)]).await?;
        assert_eq!(row.get::<_, i32>(1), i * 2 + 1);
        assert_ne!(row.get::<_, i32>(0), pid);
        holder.batch_execute("commit").await?;
    }
    let status = router.cluster_status()?;
    assert!(
        status["transaction_pooling"]["prepared_injections_total"].as_u64() >= Some(1),
        "{status}"
    );
    // Two clients preparing the same text share one global statement.
    let statements = |s: serde_json::Value| s["transaction_pooling"]["prepared_statements"].clone();
    let before = statements(router.cluster_status()?);
    let again = holder
        .prepare("select pg_backend_pid(), $1::int + 1")
        .await?;
    assert_eq!(
        holder.query_one(&again, &[&5i32]).await?.get::<_, i32>(1),
        6
    );
    assert_eq!(statements(router.cluster_status()?), before);
    // A statement dropped by its client (Close) is gone for that client only.
    drop(stmt);
    assert_eq!(
        holder.query_one(&again, &[&6i32]).await?.get::<_, i32>(1),
        7
    );
    Ok(())
}
