//! Shared end-to-end test support: runs the real `switchyard` binary against a config in a
//! temporary directory, on a free port, and kills it when the test is done.
//!
//! - [`Switchyard`] owns one running process (and its directory); dropping it kills the
//!   process, so a failing test leaves nothing behind.
//! - [`conn`] is raw HTTP/1.1 on one kept-alive connection, and a backend that records heads.
//! - [`http`] is a small blocking HTTP/1.1 client on `std::net::TcpStream` that can also send
//!   raw bytes no well-behaved client would.
//! - [`config`] writes the configs the tests start from, and the tokens they call with.
//! - [`eventually`] and [`consistently`] wait on conditions under a deadline.
//! - For the HTTP data plane: [`backend`] runs real HTTP backends in process, [`proxy`] runs
//!   Switchyard with an HTTP listener, [`load`] sends a steady stream of requests through it,
//!   [`tls`] makes certificates and is a TLS (HTTP/1.1 and HTTP/2) client.
//! - For the Postgres router: [`pg`] runs a real PostgreSQL primary with streaming replicas.
//! - For the operations tests: [`ops`] finds their tools and runs HTTP and Postgres together.
//!
//! Each test binary uses a different part of this module, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod backend;
pub mod config;
pub mod conn;
pub mod etcd;
pub mod etcd_cluster;
pub mod fleet;
pub mod http;
pub mod load;
pub mod ops;
pub mod pg;
pub mod proxy;
pub mod release;
pub mod tls;
pub mod upgrade;

use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tempfile::TempDir;

pub use http::{Request, Response};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// How long a fresh process may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How often conditions are re-checked while waiting.
const POLL: Duration = Duration::from_millis(20);

/// A port that was free a moment ago: bind `127.0.0.1:0`, read the port, let it go.
///
/// Another process could take it before we use it; [`Switchyard::start_with`] retries on a
/// new port when its bind fails.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Re-check `check` until it returns `Ok`, or fail after `within` with its last error.
pub fn eventually<T>(
    within: Duration,
    mut check: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("condition not met within {within:?}")))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Re-check `check` for the whole of `period`; fail at the first time it does not hold.
///
/// For invariants ("the watcher never undoes it"): `period` must span several runs of the
/// mechanism that could break the invariant.
pub fn consistently(
    period: Duration,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        check().context("invariant broken")?;
        std::thread::sleep(POLL);
    }
    check().context("invariant broken at the end")
}

/// Lay out the config for a run in `dir` with the control API on `port`; returns the path
/// to pass as `--config`.
pub type Layout<'a> = &'a dyn Fn(&Path, u16) -> anyhow::Result<PathBuf>;

/// One running `switchyard run` process and its temporary directory.
///
/// The config lives in `<tmp>/conf/` (the directory the watcher watches, where the audit log
/// also goes by default); stdout and stderr go to `<tmp>/logs/`, outside it.
pub struct Switchyard {
    tmp: TempDir,
    config_path: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Switchyard {
    /// Start with `make(port)` as `conf/switchyard.toml`.
    pub fn start(make: impl Fn(u16) -> String) -> anyhow::Result<Self> {
        Self::start_with(&[], &|dir, port| {
            let path = dir.join("switchyard.toml");
            std::fs::write(&path, make(port))?;
            Ok(path)
        })
    }

    /// Start with a custom layout of the config directory and extra environment variables.
    pub fn start_with(env: &[(&str, &str)], layout: Layout<'_>) -> anyhow::Result<Self> {
        let mut last = anyhow!("not started");
        for _ in 0..5 {
            let tmp = tempfile::Builder::new()
                .prefix("switchyard-e2e-")
                .tempdir()?;
            let conf = tmp.path().join("conf");
            std::fs::create_dir_all(&conf)?;
            std::fs::create_dir_all(tmp.path().join("logs"))?;
            let port = free_port()?;
            let config_path = layout(&conf, port)?;
            let mut sy = Switchyard {
                tmp,
                config_path,
                port,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                child: None,
            };
            match sy.spawn() {
                Ok(()) => return Ok(sy),
                // Someone took the port between `free_port` and our bind: try another.
                Err(e) if sy.stderr().contains("binding the control API") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Start the process on the current config file and wait until `/health` answers.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let logs = self.tmp.path().join("logs");
        let open = |name: &str| -> anyhow::Result<File> {
            Ok(OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(name))?)
        };
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.tmp.path())
            .env(
                "RUST_LOG",
                std::env::var("SWITCHYARD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("SWITCHYARD_CONFIG")
            .env_remove("SWITCHYARD_LOG_FORMAT")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(open("stdout.log")?)
            .stderr(open("stderr.log")?);
        self.child = Some(cmd.spawn().context("spawning switchyard")?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(exit) = child.try_wait()? {
                    self.child = None;
                    bail!("switchyard exited at start ({exit}):\n{}", self.stderr());
                }
            }
            if let Ok(r) = self.send(Request::get("/health")) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "switchyard did not answer /health within {START_TIMEOUT:?}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stop the process and start it again on the same config file.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Stop the process (SIGKILL); [`Switchyard::restart`] starts it again.
    pub fn stop(&mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The config directory (`<tmp>/conf`).
    pub fn conf_dir(&self) -> PathBuf {
        self.tmp.path().join("conf")
    }

    /// The temporary directory holding everything of this run.
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The path given as `--config`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config file's current text.
    pub fn config_text(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.config_path).context("reading the config file")
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("switchyard is not running"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Send a signal (`HUP`, `TERM`, …) with `kill(1)`.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid()?.to_string())
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -s {name} failed: {status}");
        Ok(())
    }

    /// Everything the process (and earlier runs) wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("logs/stderr.log")).unwrap_or_default()
    }

    /// Send a request to the control API.
    pub fn send(&self, req: Request) -> anyhow::Result<Response> {
        req.send(self.addr())
    }

    /// Send raw bytes to the control API.
    pub fn send_raw(&self, bytes: &[u8]) -> anyhow::Result<Response> {
        http::send_raw(self.addr(), bytes)
    }

    /// `GET /v1/status` as the viewer.
    pub fn status(&self) -> anyhow::Result<Value> {
        let r = self.send(Request::get("/v1/status").bearer(config::VIEWER))?;
        anyhow::ensure!(r.status == 200, "GET /v1/status: {}", r.describe());
        r.json()
    }

    /// The running config version.
    pub fn version(&self) -> anyhow::Result<u64> {
        let s = self.status()?;
        s["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("no version in status: {s}"))
    }

    /// `GET /metrics` as the viewer.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let r = self.send(Request::get("/metrics").bearer(config::VIEWER))?;
        anyhow::ensure!(r.status == 200, "GET /metrics: {}", r.describe());
        Ok(r.text())
    }

    /// The audit log, one JSON value per line.
    pub fn audit(&self) -> anyhow::Result<Vec<Value>> {
        let path = self.conf_dir().join(config::AUDIT_LOG);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("audit line {l:?}")))
            .collect()
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of a Prometheus sample whose name is `name` and whose labels include every one
/// of `labels` (`source="api"`), or `None` when there is no such line.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let series = l.split_whitespace().next().unwrap_or("");
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|want| rest.contains(want))
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// How many lines of the file at `path` contain `needle` (0 when there is no file).
pub fn lines_with(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The address of the first blue backend of upstream `api` as the running HTTP plane has it.
pub fn live_backend(status: &Value) -> String {
    status["planes"]["http"]["upstreams"]["api"]["pools"]["blue"]["backends"][0]["addr"]
        .as_str()
        .unwrap_or("(none)")
        .to_string()
}
