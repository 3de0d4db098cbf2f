//! Fleet test support: the configs of nodes sharing a document in etcd (the first node's
//! file seeds it), starting a node and waiting for its HTTP listener, and the checks the
//! fleet tests and the convergence benchmark share.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;

use super::config::{control_section, ADMIN, AUDIT_LOG, VIEWER};
use super::etcd_cluster::EtcdCluster;
use super::load::Load;
use super::proxy::listener;
use super::{eventually, free_port, live_backend, Request, Switchyard};

pub const CONVERGE: Duration = Duration::from_secs(10);

/// The shared part of a node's config: tokens, one upstream `api` on `backend`, a route.
pub fn shared(backend: &str) -> String {
    format!(
        r#"{control}
[http.upstreams.api.pools.blue]
backends = ["{backend}"]

[[http.routes]]
host = "*"
path_prefix = "/"
upstream = "api"
"#,
        control = control_section(0, "10s", "50ms"),
    )
}

/// The shared part with two pools: all traffic on `blue`, none on `green`.
pub fn blue_green(blue: &str, green: &str) -> String {
    shared(blue).replace(
        "[[http.routes]]",
        &format!("[http.upstreams.api.pools.green]\nweight = 0\nbackends = [\"{green}\"]\n\n[[http.routes]]"),
    )
}

/// A node's own file: control listener, audit log, HTTP listener and `[store]`; the first
/// node's also holds the shared part `seed` (it seeds the document).
pub fn local(port: u16, http: u16, endpoints: &str, node: &str, seed: Option<&str>) -> String {
    let head = match seed {
        Some(text) => text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
        None => format!("[control]\nlisten = \"127.0.0.1:{port}\"\naudit_log = \"{AUDIT_LOG}\"\n"),
    };
    format!(
        "{head}{listener}\n[store]\nkind = \"etcd\"\nendpoints = {endpoints}\nprefix = \"/sy-test\"\nnode = \"{node}\"\ntimeout = \"1s\"\nlease_ttl = \"3s\"\n",
        listener = listener(http),
    )
}

pub struct Node {
    pub sy: Switchyard,
    pub http: SocketAddr,
}

impl std::ops::Deref for Node {
    type Target = Switchyard;
    fn deref(&self) -> &Switchyard {
        &self.sy
    }
}

pub fn node(etcd: &EtcdCluster, name: &str, seed: Option<&str>) -> anyhow::Result<Node> {
    node_via(&etcd.endpoints_toml(), name, seed)
}

/// [`node`] reaching etcd at `endpoints` (a TOML array), e.g. through relays.
pub fn node_via(endpoints: &str, name: &str, seed: Option<&str>) -> anyhow::Result<Node> {
    node_with(endpoints, name, seed, "", &[])
}

/// [`node_via`] with `store` appended to the node's `[store]` table (TLS, credentials from
/// the environment) and `env` set for the process.
pub fn node_with(
    endpoints: &str,
    name: &str,
    seed: Option<&str>,
    store: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Node> {
    let http = free_port()?;
    let sy = Switchyard::start_with(env, &|dir, port| {
        let path = dir.join("switchyard.toml");
        let text = local(port, http, endpoints, name, seed);
        std::fs::write(&path, format!("{text}{store}"))?;
        Ok(path)
    })?;
    let http = SocketAddr::from(([127, 0, 0, 1], http));
    eventually(Duration::from_secs(20), || {
        let r = Request::get("/health").send(http)?;
        ensure!(r.status == 200, "{}", r.describe());
        Ok(())
    })?;
    Ok(Node { sy, http })
}

pub fn put(n: &Switchyard, text: &str, if_match: Option<u64>) -> anyhow::Result<super::Response> {
    let req = Request::put("/v1/config", text).bearer(ADMIN);
    n.send(match if_match {
        Some(v) => req.if_match(v),
        None => req,
    })
}

pub fn put_ok(n: &Switchyard, text: &str, if_match: Option<u64>) -> anyhow::Result<u64> {
    let r = put(n, text, if_match)?;
    ensure!(r.status == 200, "PUT: {}", r.describe());
    let v = r.json()?;
    ensure!(v["result"] == "applied", "PUT: {v}");
    v["version"].as_u64().context("version")
}

/// Every node runs `version` with blue backend `backend`.
pub fn converged(nodes: &[&Node], version: u64, backend: &str) -> anyhow::Result<()> {
    eventually(CONVERGE, || {
        for n in nodes {
            let s = n.status()?;
            ensure!(
                s["version"] == version && live_backend(&s) == backend,
                "node on {} runs version {} with {}",
                n.addr(),
                s["version"],
                live_backend(&s)
            );
        }
        Ok(())
    })
}

pub fn fleet(n: &Switchyard) -> anyhow::Result<Value> {
    let r = n.send(Request::get("/v1/fleet").bearer(VIEWER))?;
    ensure!(r.status == 200, "GET /v1/fleet: {}", r.describe());
    r.json()
}

pub fn start3(etcd: &EtcdCluster, backend: &str) -> anyhow::Result<(Node, Node, Node)> {
    let a = node(etcd, "a", Some(&shared(backend)))?;
    let b = node(etcd, "b", None)?;
    let c = node(etcd, "c", None)?;
    converged(&[&a, &b, &c], 1, backend)?;
    Ok((a, b, c))
}

/// Two clients sending `GET /` through each node's HTTP listener, each under way.
pub fn load_all(nodes: &[&Node]) -> anyhow::Result<Vec<Load>> {
    let loads: Vec<Load> = nodes
        .iter()
        .map(|n| Load::start(n.http, 2, Request::get("/")))
        .collect();
    for l in &loads {
        l.wait_for(20, Duration::from_secs(10))?;
    }
    Ok(loads)
}
