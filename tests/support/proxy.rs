//! Switchyard as an HTTP proxy: [`Proxy`] runs the binary with an HTTP listener on a free
//! port (beside the control API) and sends requests through it; [`upstreams`] helpers read the
//! HTTP plane's part of `/v1/status`.
//!
//! The config is the test tokens' `[control]` table followed by the test's `[http]` tables,
//! rendered for the listener's port; [`listener`] writes the usual plain listener.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use serde_json::Value;

use super::config::{self, control_section};
use super::http::{Request, Response};
use super::{eventually, free_port, Switchyard};

/// How long a fresh process may take to answer on its HTTP listener.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// What pingora logs when the listener's port is taken (it then retries, then gives up).
const PORT_TAKEN: &str = "is in use";

/// The environment variable that runs every proxy test's listeners on another HTTP/1
/// engine: `SWITCHYARD_TEST_HTTP1=hyper cargo test --test proxy_balance`.
pub const TEST_ENGINE: &str = "SWITCHYARD_TEST_HTTP1";

/// `text` with `http1 = "<engine>"` on every listener that does not choose one, when
/// [`TEST_ENGINE`] names an engine.
pub fn with_test_engine(text: &str) -> String {
    let Ok(engine) = std::env::var(TEST_ENGINE) else {
        return text.to_string();
    };
    if engine.is_empty() || text.contains("\nhttp1 =") {
        return text.to_string();
    }
    text.replace(
        "[[http.listeners]]\n",
        &format!("[[http.listeners]]\nhttp1 = \"{engine}\"\n"),
    )
}

/// `[[http.listeners]]` named `public` on `port`, with `/health` answered by Switchyard.
pub fn listener(port: u16) -> String {
    format!(
        r#"
[[http.listeners]]
name = "public"
addr = "127.0.0.1:{port}"
health_path = "/health"
"#
    )
}

/// One listener `public` on `port` (with the extra listener keys `listener`), the routes
/// `routes` (TOML tables; `host = "*"` to `api` when empty), and upstream `api` with one blue
/// backend at `backend`.
pub fn one_upstream(port: u16, backend: SocketAddr, listener: &str, routes: &str) -> String {
    let routes = if routes.is_empty() {
        "[[http.routes]]\nhost = \"*\"\nupstream = \"api\"\n"
    } else {
        routes
    };
    format!(
        r#"
[[http.listeners]]
name = "public"
addr = "127.0.0.1:{port}"
{listener}

{routes}
[http.upstreams.api.pools.blue]
backends = ["{backend}"]
"#
    )
}

/// A running Switchyard with an HTTP listener; derefs to the [`Switchyard`] process.
pub struct Proxy {
    sy: Switchyard,
    http_port: u16,
}

impl Deref for Proxy {
    type Target = Switchyard;
    fn deref(&self) -> &Switchyard {
        &self.sy
    }
}

impl DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Switchyard {
        &mut self.sy
    }
}

impl Proxy {
    /// Start with `http(dir, listener_port)` as everything after `[control]`; `dir` is the
    /// config directory (for certificate files). Waits until the (plain HTTP) listener
    /// answers its health path; a port taken meanwhile by someone else means a new try on
    /// new ports.
    pub fn start(http: impl Fn(&Path, u16) -> anyhow::Result<String>) -> anyhow::Result<Self> {
        Self::start_checked(http, |proxy| {
            let r = proxy.request(Request::get("/health"))?;
            ensure!(r.status == 200 && r.text() == "ok\n", "{}", r.describe());
            Ok(())
        })
    }

    /// Like [`Proxy::start`], with `ready` telling when the listener serves (a TLS
    /// listener needs a TLS client).
    pub fn start_checked(
        http: impl Fn(&Path, u16) -> anyhow::Result<String>,
        ready: impl Fn(&Proxy) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let mut last = anyhow!("not started");
        for _ in 0..5 {
            let http_port = Mutex::new(0);
            let sy = Switchyard::start_with(&[], &|dir, port| {
                // Two calls may return the same port; the config would then be refused.
                let mut p = free_port()?;
                while p == port {
                    p = free_port()?;
                }
                *http_port.lock().unwrap_or_else(|e| e.into_inner()) = p;
                let text = format!("{}{}", control_section(port, "10s", "50ms"), http(dir, p)?);
                let text = with_test_engine(&text);
                let path = dir.join("switchyard.toml");
                std::fs::write(&path, text)?;
                Ok(path)
            })?;
            let http_port = http_port.into_inner().unwrap_or_else(|e| e.into_inner());
            let proxy = Proxy { sy, http_port };
            match proxy.wait_listening(&ready) {
                Ok(()) => return Ok(proxy),
                Err(e) if proxy.stderr().contains(PORT_TAKEN) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn wait_listening(&self, ready: &dyn Fn(&Proxy) -> anyhow::Result<()>) -> anyhow::Result<()> {
        eventually(LISTEN_TIMEOUT, || {
            ensure!(
                !self.stderr().contains(PORT_TAKEN),
                "HTTP listener port {} taken",
                self.http_port
            );
            ready(self)
        })
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Send a request through the HTTP listener.
    pub fn request(&self, req: Request) -> anyhow::Result<Response> {
        req.send(self.http_addr())
    }

    /// `GET path` through the HTTP listener.
    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.request(Request::get(path))
    }

    /// `GET {prefix}0` .. `GET {prefix}{n-1}`, each answered 200, then wait until the
    /// access log at `log` has exactly `n` lines naming `prefix`.
    pub fn get_logged(&self, prefix: &str, n: usize, log: &Path) -> anyhow::Result<()> {
        for i in 0..n {
            let r = self.get(&format!("{prefix}{i}"))?;
            ensure!(r.status == 200, "{prefix}{i}: {}", r.describe());
        }
        eventually(Duration::from_secs(10), || {
            let got = super::lines_with(log, prefix);
            ensure!(got == n, "{got} lines with {prefix} in {}", log.display());
            Ok(())
        })
    }

    /// `POST path` to the control API as the operator, expecting 200; the JSON answer.
    pub fn operate(&self, path: &str, body: &str) -> anyhow::Result<Value> {
        let r = self.send(Request::post(path, body).bearer(config::OPERATOR))?;
        ensure!(r.status == 200, "POST {path}: {}", r.describe());
        r.json()
    }

    /// `planes.http.upstreams.<name>` of `/v1/status`.
    pub fn upstream(&self, name: &str) -> anyhow::Result<Value> {
        let s = self.status()?;
        let up = &s["planes"]["http"]["upstreams"][name];
        ensure!(up.is_object(), "no upstream {name} in status: {s}");
        Ok(up.clone())
    }

    /// The state (`healthy`, `ejected`, `draining`, `down`) of backend `addr` of `upstream`.
    pub fn backend_state(&self, upstream: &str, addr: &str) -> anyhow::Result<String> {
        let up = self.upstream(upstream)?;
        backend_entry(&up, addr)?["state"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no state for {addr} in {up}"))
    }

    /// Wait until backend `addr` of `upstream` is in `state`.
    pub fn wait_state(
        &self,
        upstream: &str,
        addr: &str,
        state: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        eventually(within, || {
            let now = self.backend_state(upstream, addr)?;
            ensure!(now == state, "{addr} is {now}, want {state}");
            Ok(())
        })
    }

    /// The weight of each pool of `upstream`, as the running HTTP plane has it.
    pub fn pool_weights(&self, upstream: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let up = self.upstream(upstream)?;
        let pools = up["pools"]
            .as_object()
            .ok_or_else(|| anyhow!("no pools in {up}"))?;
        pools
            .iter()
            .map(|(name, p)| {
                let w = p["weight"]
                    .as_u64()
                    .with_context(|| format!("pool {name}: {p}"))?;
                Ok((name.clone(), w))
            })
            .collect()
    }
}

/// The status entry of backend `addr` in an upstream's status.
pub fn backend_entry<'a>(upstream: &'a Value, addr: &str) -> anyhow::Result<&'a Value> {
    let pools = upstream["pools"]
        .as_object()
        .ok_or_else(|| anyhow!("no pools in {upstream}"))?;
    for pool in pools.values() {
        if let Some(b) = pool["backends"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["addr"] == addr))
        {
            return Ok(b);
        }
    }
    bail!("no backend {addr} in {upstream}")
}
