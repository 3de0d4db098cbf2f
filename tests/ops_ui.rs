//! The status page at `/ui`, end to end: the real binary serving HTTP (upstream `api`, pools
//! blue and green) and a Postgres cluster over a real primary and streaming replica, and the
//! page in headless Chromium (Debian's `chromium`, driven by npm's `playwright-core`; the
//! browser part is `tests/ui/status_page.cjs`).
//!
//! - The page refuses to show anything without a token, says so for a wrong one, and keeps
//!   a viewer token in `sessionStorage` only.
//! - A drain, a flip and a Postgres switchover made through the API appear on the page within
//!   2 s each.
//! - The page's files are served with a policy that forbids external loads, `no-store` and
//!   `nosniff`; the page holds no data, and the data routes need the token.
//!
//! Screenshots land in `<target>/tmp/ui-screenshots/` (copies are in `docs/ui/`).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context};
use support::config::{OPERATOR, VIEWER};
use support::http::Request;
use support::ops::{playwright_core, repo, tool, Rig};

#[test]
fn the_page_needs_a_token_and_shows_drains_flips_and_switchovers_within_2s() -> anyhow::Result<()> {
    let node = tool("node")?;
    tool("chromium")?;
    let playwright = playwright_core()?;
    let Some(rig) = Rig::start("", "")? else {
        return Ok(());
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots)?;
    // A few requests a second through the proxy while the page watches, for the flip's
    // counters (a gentle pace: the browser and Postgres share the machine).
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if rig.proxy.get("/").is_ok_and(|r| r.status == 200) {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let out = browse(&node, &playwright, &rig, &shots);
        stop.store(true, Ordering::Relaxed);
        out
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nswitchyard:\n{}",
        out.status,
        rig.proxy.stderr()
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(result)?;
    eprintln!("page updates after each API call: {result}");
    for step in ["drain_ms", "flip_ms", "switchover_ms"] {
        let ms = result[step].as_u64().context("missing timing")?;
        ensure!(ms <= 2000, "{step} took {ms} ms");
    }
    let sent = sent.into_inner();
    ensure!(sent > 20, "only {sent} requests went through the proxy");
    for name in ["login", "overview", "flip", "switchover"] {
        ensure!(shots.join(format!("{name}.png")).is_file(), "no {name}.png");
    }
    Ok(())
}

/// Run the browser part against `rig`, screenshots to `shots`.
fn browse(
    node: &Path,
    playwright: &Path,
    rig: &Rig,
    shots: &Path,
) -> anyhow::Result<std::process::Output> {
    Command::new(node)
        .arg(repo().join("tests/ui/status_page.cjs"))
        .env("PLAYWRIGHT_CORE", playwright)
        .env("SY_URL", format!("http://{}", rig.proxy.addr()))
        .env("VIEWER_TOKEN", VIEWER)
        .env("OPERATOR_TOKEN", OPERATOR)
        .env("DRAIN_BACKEND", rig.blue[0].addr_str())
        .env("SWITCHOVER_TO", rig.node_addr(1))
        .env("SHOTS", shots)
        .output()
        .context("running node")
}

#[test]
fn page_files_are_self_contained_and_data_needs_a_token() -> anyhow::Result<()> {
    let sy = support::Switchyard::start(|port| support::config::Conf::new(port).render())?;
    for path in ["/ui", "/ui/", "/ui/app.js", "/ui/style.css"] {
        let r = sy.send(Request::get(path))?;
        ensure!(r.status == 200, "GET {path}: {}", r.describe());
        let csp = r.header("content-security-policy").unwrap_or_default();
        ensure!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{path}: policy {csp:?}"
        );
        ensure!(r.header("x-content-type-options") == Some("nosniff"));
        ensure!(r.header("cache-control") == Some("no-store"));
        let body = r.text();
        for secret in support::config::secrets() {
            ensure!(!body.contains(&secret), "{path} contains a secret");
        }
    }
    for path in [
        "/v1/status",
        "/v1/config/history",
        "/v1/config/diff",
        "/v1/upstreams/api/flip",
    ] {
        let r = sy.send(Request::get(path))?;
        ensure!(r.status == 401, "{path} without a token: {}", r.describe());
        let r = sy.send(Request::get(path).bearer("wrong"))?;
        ensure!(
            r.status == 401,
            "{path} with a wrong token: {}",
            r.describe()
        );
    }
    Ok(())
}
