//! Balancing and the listener's own behaviour, end to end: the real binary in front of real
//! HTTP backends. Least connections sends a slow backend less; weights split idle traffic;
//! round robin ignores load; the listener answers its health path itself, says 404 for a host
//! no route matches, and tells the backend who the client is (`X-Forwarded-*`, `X-Real-IP`).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use support::backend::Backend;
use support::http::Request;
use support::load::Load;
use support::proxy::{listener, Proxy};

/// One upstream `api` of `backends` (TOML array items) balanced by `balance`, routed for any
/// host.
fn single_pool(port: u16, balance: &str, backends: &[String]) -> String {
    format!(
        r#"{listener}
[[http.routes]]
host = "*"
upstream = "api"

[http.upstreams.api]
balance = "{balance}"

[http.upstreams.api.pools.blue]
backends = [{backends}]
"#,
        listener = listener(port),
        backends = backends.join(", "),
    )
}

fn quoted(b: &Backend) -> String {
    format!("\"{}\"", b.addr())
}

/// Requests each backend saw, by name.
fn counts(backends: &[&Backend]) -> BTreeMap<String, u64> {
    backends
        .iter()
        .map(|b| (b.name().to_string(), b.total()))
        .collect()
}

#[test]
fn least_conn_sends_more_to_the_fast_backend() -> anyhow::Result<()> {
    let fast = Backend::start("fast")?;
    let slow = Backend::start("slow")?;
    slow.set_delay(Duration::from_millis(200));
    let backends = [quoted(&fast), quoted(&slow)];
    let proxy = Proxy::start(|_, p| Ok(single_pool(p, "least_conn", &backends)))?;

    let load = Load::start(proxy.http_addr(), 8, Request::get("/work"));
    load.wait_for(200, Duration::from_secs(30))?;
    let report = load.finish()?;

    report.assert_no_failures()?;
    let seen = report.by_backend();
    eprintln!("least_conn: {seen:?}");
    let (f, s) = (seen["fast"], seen.get("slow").copied().unwrap_or(0));
    ensure!(
        f > 3 * s,
        "fast should serve more than 3x slow: {seen:?} (backends saw {:?})",
        counts(&[&fast, &slow])
    );
    Ok(())
}

#[test]
fn weights_split_idle_traffic() -> anyhow::Result<()> {
    let light = Backend::start("light")?;
    let heavy = Backend::start("heavy")?;
    let backends = [
        format!("{{ addr = \"{}\", weight = 1 }}", light.addr()),
        format!("{{ addr = \"{}\", weight = 3 }}", heavy.addr()),
    ];
    let proxy = Proxy::start(|_, p| Ok(single_pool(p, "least_conn", &backends)))?;

    for _ in 0..200 {
        let r = proxy.get("/")?;
        ensure!(r.status == 200, "{}", r.describe());
    }

    let (l, h) = (light.total() as f64, heavy.total() as f64);
    ensure!(l + h == 200.0, "backends saw {l} + {h} requests, not 200");
    ensure!(
        (45.0..=55.0).contains(&l) && (135.0..=165.0).contains(&h),
        "weights 1:3 should split 200 requests about 50:150, got {l}:{h}"
    );
    Ok(())
}

#[test]
fn round_robin_takes_turns_whatever_the_load() -> anyhow::Result<()> {
    let fast = Backend::start("fast")?;
    let slow = Backend::start("slow")?;
    slow.set_delay(Duration::from_millis(100));
    let backends = [quoted(&fast), quoted(&slow)];
    let proxy = Proxy::start(|_, p| Ok(single_pool(p, "round_robin", &backends)))?;

    // Under least_conn the slow backend would get far fewer; round robin alternates.
    let load = Load::start(proxy.http_addr(), 6, Request::get("/"));
    load.wait_for(60, Duration::from_secs(30))?;
    let report = load.finish()?;

    report.assert_no_failures()?;
    let (f, s) = (fast.total(), slow.total());
    eprintln!("round_robin: fast {f}, slow {s}");
    ensure!(
        f.abs_diff(s) <= 1 && f + s == report.len() as u64,
        "round robin should alternate: fast {f}, slow {s} of {} requests",
        report.len()
    );
    Ok(())
}

#[test]
fn listener_answers_health_routes_by_host_and_forwards_client_info() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let addr = app.addr();
    let proxy = Proxy::start(|_, p| {
        Ok(format!(
            r#"{listener}
[[http.routes]]
host = "api.test"
upstream = "api"

[http.upstreams.api.pools.blue]
backends = ["{addr}"]
"#,
            listener = listener(p)
        ))
    })?;

    // The health path is Switchyard's own answer: the backend never hears of it.
    let r = proxy.get("/health")?;
    ensure!(r.status == 200 && r.text() == "ok\n", "{}", r.describe());
    ensure!(r.header("x-backend").is_none(), "answered by a backend");
    ensure!(
        app.total() == 0 && app.health_checks() == 0,
        "backend saw it"
    );

    // No route for this host: 404 from Switchyard, nothing reaches the backend.
    let r = proxy.request(Request::get("/users").host("other.test"))?;
    ensure!(
        r.status == 404 && r.text() == "no route\n",
        "{}",
        r.describe()
    );
    ensure!(app.total() == 0, "backend saw an unrouted request");

    // Routed: the backend learns the client chain, scheme and original host.
    let r = proxy.request(
        Request::get("/users")
            .host("api.test")
            .header("X-Forwarded-For", "203.0.113.7"),
    )?;
    ensure!(
        r.status == 200 && r.header("x-backend") == Some("app"),
        "{}",
        r.describe()
    );
    let seen = app
        .last_headers()
        .ok_or_else(|| anyhow::anyhow!("no request seen"))?;
    let header = |name: &str| seen.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    ensure!(
        header("x-forwarded-for") == "203.0.113.7, 127.0.0.1",
        "X-Forwarded-For should be appended to: {seen:?}"
    );
    ensure!(header("x-real-ip") == "127.0.0.1", "X-Real-IP: {seen:?}");
    ensure!(
        header("x-forwarded-proto") == "http",
        "X-Forwarded-Proto: {seen:?}"
    );
    ensure!(
        header("x-forwarded-host") == "api.test",
        "X-Forwarded-Host: {seen:?}"
    );
    ensure!(header("host") == "api.test", "Host kept: {seen:?}");

    // Without an incoming X-Forwarded-For the chain starts with the client.
    let r = proxy.request(Request::get("/users").host("api.test"))?;
    ensure!(r.status == 200, "{}", r.describe());
    let seen = app
        .last_headers()
        .ok_or_else(|| anyhow::anyhow!("no request seen"))?;
    ensure!(
        seen.get("x-forwarded-for").and_then(|v| v.to_str().ok()) == Some("127.0.0.1"),
        "{seen:?}"
    );
    ensure!(
        app.total() == 2,
        "backend saw {} requests, want 2",
        app.total()
    );
    Ok(())
}
