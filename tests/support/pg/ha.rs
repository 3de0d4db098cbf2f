//! Helpers for the high-availability tests: [`Writers`], clients that insert rows with
//! sequential ids through the router and remember which inserts were acknowledged and which
//! failed; [`Relay`], a TCP relay that can cut the link between Switchyard and a node; and
//! [`wait_until`], an async deadline wait.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Re-check `check` until it returns `Ok`, or fail after `within` with its last error.
pub async fn wait_until<T, F, Fut>(within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("condition not met within {within:?}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What the writers saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// `(writer, seq)` of every acknowledged insert.
    pub acked: Vec<(i32, i32)>,
    /// `(when, SQLSTATE or "none", message)` of every failed insert.
    pub errors: Vec<(Instant, String, String)>,
    /// When each acknowledged insert was sent, and when it was acknowledged.
    pub acked_at: Vec<(Instant, Instant)>,
    /// Writers whose connection the router closed.
    pub closed: usize,
}

/// `n` clients, each on one connection through the router for the whole run, inserting
/// `(writer, seq)` into table `ha` in a loop (autocommit). A failed insert is recorded and
/// the same connection is used for the next one: the router must keep it usable.
pub struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    pub seen: Arc<Mutex<Seen>>,
}

impl Writers {
    pub async fn start(config: &tokio_postgres::Config, n: i32) -> anyhow::Result<Writers> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        for w in 0..n {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .context("writer connect")?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("writer {w}: connection ended: {e}");
                }
            });
            let (stop, seen) = (stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let started = Instant::now();
                    let r = client
                        .execute("insert into ha (writer, seq) values ($1, $2)", &[&w, &seq])
                        .await;
                    let failed = {
                        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                        match r {
                            Ok(_) => {
                                s.acked.push((w, seq));
                                s.acked_at.push((started, Instant::now()));
                                false
                            }
                            Err(e) => {
                                let code = e.code().map_or("none", |c| c.code()).to_string();
                                s.errors.push((Instant::now(), code, e.to_string()));
                                if client.is_closed() {
                                    s.closed += 1;
                                    return;
                                }
                                true
                            }
                        }
                    };
                    if failed {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        Ok(Writers { stop, tasks, seen })
    }

    /// Acknowledged inserts so far.
    pub fn acked(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acked
            .len()
    }

    /// Wait until at least `n` inserts are acknowledged, at most `within`.
    pub async fn wait_acked(&self, n: usize, within: Duration) -> anyhow::Result<()> {
        wait_until(within, || async {
            let acked = self.acked();
            anyhow::ensure!(acked >= n, "{acked} of {n} inserts acknowledged so far");
            Ok(())
        })
        .await
    }

    /// When the first insert sent after `t` was acknowledged.
    pub fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        let s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        s.acked_at
            .iter()
            .filter(|(sent, _)| *sent > t)
            .map(|(_, acked)| *acked)
            .min()
    }

    /// Stop, wait for every writer, and return what they saw.
    pub async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        Arc::try_unwrap(self.seen)
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default()
    }
}

/// A TCP relay from a free loopback port to `target` that can be cut (open connections are
/// dropped, new ones are accepted and closed at once) and restored.
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: u16) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            let mut open: Vec<JoinHandle<()>> = Vec::new();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {
                        if flag.load(Ordering::Relaxed) {
                            open.drain(..).for_each(|t| t.abort());
                        }
                        continue;
                    }
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if flag.load(Ordering::Relaxed) {
                    // Also here: a client reconnecting faster than the 10 ms tick would
                    // otherwise keep the old connections alive through a cut.
                    open.drain(..).for_each(|t| t.abort());
                    continue;
                }
                open.retain(|t| !t.is_finished());
                open.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Ok(Relay { port, cut, task })
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === helpers shared by the high-availability and routing tests ===

/// The fixture's superuser as a cluster user (TOML inline table): the monitor and the
/// failover log in as the cluster's first user and need its rights.
pub fn superuser() -> String {
    format!(
        r#"{{ name = "{}", password = "{}" }}"#,
        super::SUPERUSER,
        super::SUPERUSER_PASSWORD
    )
}

/// `POST path` with `body` to the router's control API as the operator: the status and the
/// JSON answer (`null` if it is not JSON).
pub fn operator_post(
    router: &super::client::Router,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let r = tokio::task::block_in_place(|| {
        router.sy.send(
            crate::support::http::Request::post(path, body.as_bytes().to_vec())
                .bearer(crate::support::config::OPERATOR),
        )
    })?;
    Ok((r.status, r.json().unwrap_or(serde_json::Value::Null)))
}

/// `/v1/status` of cluster `main` (the HTTP client blocks: run it off the async workers).
pub fn status(router: &super::client::Router) -> anyhow::Result<serde_json::Value> {
    tokio::task::block_in_place(|| router.cluster_status())
}

/// Wait until every node of cluster `main` is reachable.
pub async fn all_healthy(router: &super::client::Router) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(15), || async {
        let s = status(router)?;
        for n in s["nodes"].as_array().into_iter().flatten() {
            anyhow::ensure!(
                n["reachable"] == true && n["down"] == false,
                "not reachable yet: {n}"
            );
        }
        Ok(())
    })
    .await
}

/// The `(writer, seq)` rows of table `ha` on node `i`.
pub fn rows(
    pg: &super::PgCluster,
    i: usize,
) -> anyhow::Result<std::collections::HashSet<(i32, i32)>> {
    let out = pg.psql(i, "select writer || ',' || seq from ha")?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (w, s) = l
                .split_once(',')
                .ok_or_else(|| anyhow::anyhow!("bad row {l}"))?;
            Ok((w.parse()?, s.parse()?))
        })
        .collect()
}

/// The port of the node that served `select current_setting('port')` through `client`.
pub async fn served_by(client: &tokio_postgres::Client) -> anyhow::Result<u16> {
    let rows = client.query("select current_setting('port')", &[]).await?;
    let port: &str = rows.first().context("no row")?.try_get(0)?;
    Ok(port.parse()?)
}

/// Write through `r` into table `t (via text)` (an insert that returns the port of the node that ran it) until a write
/// lands on another node than `old_port`, for at most `within`: when it landed (wall clock),
/// and on which port. The client's session through the sidecar is opened now, before the
/// failover, and opened again only if the sidecar closes it; each write may take 500 ms.
pub async fn write_until_moved(
    r: &super::client::Router,
    old_port: u16,
    within: Duration,
) -> anyhow::Result<JoinHandle<anyhow::Result<(std::time::SystemTime, u16)>>> {
    let config = r.config(super::SUPERUSER, super::SUPERUSER_PASSWORD);
    let mut client = Some(super::client::connect(&config).await?);
    Ok(tokio::spawn(async move {
        let deadline = Instant::now() + within;
        let insert = "insert into t values ('moved') returning inet_server_port()";
        while Instant::now() < deadline {
            let attempt = tokio::time::timeout(Duration::from_millis(500), async {
                if client
                    .as_ref()
                    .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
                {
                    client = Some(super::client::connect(&config).await?);
                }
                let c = client
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("no connection"))?;
                let port: i32 = c.query_one(insert, &[]).await?.get(0);
                anyhow::Ok(port as u16)
            })
            .await;
            if let Ok(Ok(port)) = attempt {
                if port != old_port {
                    return Ok((std::time::SystemTime::now(), port));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(anyhow::anyhow!(
            "no write left the old primary within {within:?}"
        ))
    }))
}
