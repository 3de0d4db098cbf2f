//! Backend processes with a version, for the rollout tests: each is this test binary run
//! again as `--exact release_backend_process`, which serves HTTP on `RELEASE_PORT` when the
//! `RELEASE_*` variables are set ([`serve_if_asked`]) and is a test that does nothing
//! otherwise.
//!
//! A backend answers every request with `x-version` and `x-backend: VERSION@PORT`; every
//! `RELEASE_ERROR_EVERY`-th request (not health checks) is a 500, and every request (not
//! health checks) waits `RELEASE_DELAY_MS` before it is answered. `GET /health` is 200 with
//! `x-version`, or 503 when `RELEASE_READY=0` (a version that never becomes ready). It
//! exits when its directory disappears (the test ended, whatever way).
//!
//! [`Release`] starts the first version of `n` backends and writes `replace.sh`, the replace
//! command of the config: for every address in `SWITCHYARD_ROLLOUT_BACKENDS` it stops the
//! backend on that port and starts `SWITCHYARD_ROLLOUT_VERSION` there. Dropping it kills
//! every backend process it or the script started (their pids are in `<port>.pid`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;

use super::eventually;
use super::http::Request as Get;

/// Serve as a backend process when the `RELEASE_*` variables say so; return otherwise.
pub fn serve_if_asked() {
    let Ok(port) = std::env::var("RELEASE_PORT") else {
        return;
    };
    let version = std::env::var("RELEASE_VERSION").unwrap_or_default();
    let every: u64 = std::env::var("RELEASE_ERROR_EVERY")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let ready = std::env::var("RELEASE_READY").as_deref() != Ok("0");
    let delay = Duration::from_millis(
        std::env::var("RELEASE_DELAY_MS")
            .ok()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
    );
    let dir = PathBuf::from(std::env::var("RELEASE_DIR").unwrap_or_default());
    std::thread::spawn(move || loop {
        if !dir.exists() {
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => std::process::exit(2),
    };
    rt.block_on(serve(port, version, every, ready, delay));
    std::process::exit(0);
}

async fn serve(port: String, version: String, every: u64, ready: bool, delay: Duration) {
    // The previous version may still be letting go of the port.
    let mut listener = None;
    for _ in 0..200 {
        match tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let Some(listener) = listener else {
        eprintln!("cannot bind port {port}");
        std::process::exit(3);
    };
    let count = Arc::new(AtomicU64::new(0));
    let name = format!("{version}@{port}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (version, name, count) = (version.clone(), name.clone(), count.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let health = req.uri().path() == "/health";
                let n = if health {
                    0
                } else {
                    count.fetch_add(1, SeqCst) + 1
                };
                let status = match (health, ready) {
                    (true, true) => 200,
                    (true, false) => 503,
                    (false, _) if every > 0 && n % every == 0 => 500,
                    (false, _) => 200,
                };
                let resp = Response::builder()
                    .status(status)
                    .header("x-version", version.as_str())
                    .header("x-backend", name.as_str())
                    .body(Full::new(Bytes::from(format!("{name}\n"))));
                async move {
                    if !health && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(resp.unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What a version does.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Every n-th request is a 500 (0: none).
    pub error_every: u64,
    /// `/health` answers 200 (else 503).
    pub ready: bool,
    /// Every request (not health checks) is answered this many milliseconds late.
    pub delay_ms: u64,
}

pub const GOOD: Behaviour = Behaviour {
    error_every: 0,
    ready: true,
    delay_ms: 0,
};

/// `n` backend processes of version `v1`, and the replace command that brings the next.
pub struct Release {
    dir: TempDir,
    pub ports: Vec<u16>,
}

impl Release {
    /// Start `n` backends of version `v1`; `next` is how the version the replace command
    /// starts behaves.
    pub fn start(n: usize, next: Behaviour) -> anyhow::Result<Release> {
        let dir = tempfile::tempdir()?;
        let exe = std::env::current_exe()?;
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push(super::free_port()?);
        }
        let release = Release { dir, ports };
        for p in &release.ports {
            let mut child = backend_command(&exe, release.dir.path(), *p, "v1", GOOD).spawn()?;
            std::fs::write(release.pid_file(*p), child.id().to_string())?;
            // Reaped when the replace script stops it.
            std::thread::spawn(move || child.wait());
        }
        let script = format!(
            r#"#!/bin/sh
# Replace the backends of $SWITCHYARD_ROLLOUT_BACKENDS with $SWITCHYARD_ROLLOUT_VERSION.
set -eu
for addr in $SWITCHYARD_ROLLOUT_BACKENDS; do
  port="${{addr##*:}}"
  old="$(cat "{dir}/$port.pid")"
  kill "$old" 2>/dev/null || true
  RELEASE_PORT="$port" RELEASE_VERSION="$SWITCHYARD_ROLLOUT_VERSION" RELEASE_DIR="{dir}" \
    RELEASE_ERROR_EVERY="{every}" RELEASE_READY="{ready}" RELEASE_DELAY_MS="{delay}" \
    "{exe}" --exact release_backend_process --nocapture >>"{dir}/$port.log" 2>&1 &
  echo $! > "{dir}/$port.pid"
  echo "replaced $addr (was pid $old, now $!)"
done
"#,
            dir = release.dir.path().display(),
            exe = exe.display(),
            every = next.error_every,
            delay = next.delay_ms,
            ready = if next.ready { 1 } else { 0 },
        );
        std::fs::write(release.script(), script)?;
        for p in &release.ports {
            release.wait_version(*p, "v1")?;
        }
        Ok(release)
    }

    fn pid_file(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("{port}.pid"))
    }

    /// The replace script, for `argv = ["/bin/sh", SCRIPT]`.
    pub fn script(&self) -> PathBuf {
        self.dir.path().join("replace.sh")
    }

    pub fn addrs(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The version backend `port` reports on `/health` now (whatever the status).
    pub fn version(&self, port: u16) -> anyhow::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = Get::get("/health").send(addr)?;
        Ok(r.header("x-version").unwrap_or_default().to_string())
    }

    fn wait_version(&self, port: u16, want: &str) -> anyhow::Result<()> {
        eventually(Duration::from_secs(20), || {
            let v = self.version(port)?;
            ensure!(v == want, "backend {port} is {v:?}, want {want:?}");
            Ok(())
        })
    }

    /// The config's rollout part: the replace command `restart`, a route to upstream `api`
    /// and `api` itself with the release's backends (those in `drained` drained) in pool
    /// `main`, checked every 100 ms with the version in `x-version`.
    pub fn config(&self, drained: &[String]) -> String {
        let backends: Vec<String> = self
            .addrs()
            .iter()
            .map(|a| match drained.contains(a) {
                true => format!("{{ addr = \"{a}\", state = \"drain\" }}"),
                false => format!("\"{a}\""),
            })
            .collect();
        format!(
            r#"
[rollout.commands.restart]
argv = ["/bin/sh", "{script}"]
timeout = "20s"

[[http.routes]]
host = "*"
upstream = "api"
retries = 2

[http.upstreams.api]
balance = "round_robin"
failure_statuses = [500, 502, 503, 504]
health_check = {{ path = "/health", interval = "100ms", timeout = "1s", rise = 1, fall = 1, version_header = "x-version" }}

[http.upstreams.api.pools.main]
weight = 100
backends = [{backends}]
"#,
            script = self.script().display(),
            backends = backends.join(", "),
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        for p in &self.ports {
            if let Ok(pid) = std::fs::read_to_string(self.pid_file(*p)) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn backend_command(exe: &Path, dir: &Path, port: u16, version: &str, b: Behaviour) -> Command {
    let mut c = Command::new(exe);
    c.args(["--exact", "release_backend_process", "--nocapture"])
        .env("RELEASE_PORT", port.to_string())
        .env("RELEASE_VERSION", version)
        .env("RELEASE_DIR", dir)
        .env("RELEASE_ERROR_EVERY", b.error_every.to_string())
        .env("RELEASE_READY", if b.ready { "1" } else { "0" })
        .env("RELEASE_DELAY_MS", b.delay_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Context for a failed wait on a rollout: its state as the API shows it.
pub fn describe(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
