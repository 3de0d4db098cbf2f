//! Passive and active health, end to end: a backend that dies under load costs no request
//! and is ejected, then serves again once it is back and `fail_timeout` has passed; a backend
//! answering 503 costs no GET (retried elsewhere) but a POST that reached it is not replayed;
//! a backend whose health check fails is taken out until it passes again.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use support::backend::Backend;
use support::eventually;
use support::http::Request;
use support::load::Load;
use support::proxy::{listener, Proxy};

/// How long a state change may take to show in `/v1/status`.
const SHOWS_WITHIN: Duration = Duration::from_secs(5);

/// Upstream `api` with `settings` (TOML lines) and one pool of `backends`, for any host.
fn upstream(port: u16, settings: &str, backends: &[&Backend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    format!(
        r#"{listener}
[[http.routes]]
host = "*"
upstream = "api"

[http.upstreams.api]
{settings}

[http.upstreams.api.pools.blue]
backends = [{list}]
"#,
        listener = listener(port),
        list = list.join(", "),
    )
}

#[test]
fn a_backend_dies_under_load_and_comes_back() -> anyhow::Result<()> {
    let bs = Backend::start_many("b", 3)?;
    let victim = &bs[1];
    let addr = victim.addr_str();
    let proxy = Proxy::start(|_, p| {
        Ok(upstream(
            p,
            "fail_timeout = \"1s\"",
            &bs.iter().collect::<Vec<_>>(),
        ))
    })?;

    let load = Load::start(proxy.http_addr(), 3, Request::get("/orders"));
    load.wait_for(60, Duration::from_secs(20))?;
    ensure!(
        victim.total() > 0,
        "{} served nothing before it died",
        victim.name()
    );

    victim.stop();
    proxy.wait_state("api", &addr, "ejected", SHOWS_WITHIN)?;
    // Keep the stream going while it is down: it must cost nothing.
    load.wait_for(100, Duration::from_secs(20))?;

    let before = victim.total();
    victim.restart()?;
    let back_at = Instant::now();
    eventually(SHOWS_WITHIN, || {
        ensure!(
            victim.total() > before + 5,
            "{} serves again: {} requests since its restart",
            victim.name(),
            victim.total() - before
        );
        Ok(())
    })?;
    load.wait_for(30, Duration::from_secs(20))?;
    let report = load.finish()?;

    report.assert_no_failures()?;
    let served_again = report
        .sent_after(back_at)
        .filter(|o| o.backend.as_deref() == Some(victim.name()))
        .count();
    ensure!(
        served_again > 0,
        "no response from {} after it came back",
        victim.name()
    );
    proxy.wait_state("api", &addr, "healthy", SHOWS_WITHIN)?;
    Ok(())
}

#[test]
fn gets_avoid_a_backend_answering_503() -> anyhow::Result<()> {
    let good = Backend::start("good")?;
    let bad = Backend::start("bad")?;
    bad.set_status(503);
    let proxy = Proxy::start(|_, p| Ok(upstream(p, "fail_timeout = \"1s\"", &[&good, &bad])))?;

    let load = Load::start(proxy.http_addr(), 3, Request::get("/items"));
    load.wait_for(150, Duration::from_secs(20))?;
    let report = load.finish()?;

    report.assert_no_failures()?;
    ensure!(
        report.by_backend().keys().all(|b| b == "good"),
        "{:?}",
        report.by_backend()
    );
    // It was tried (and its 503 retried on the good one), not just never picked.
    ensure!(bad.count("GET") > 0, "the 503 backend was never tried");
    Ok(())
}

#[test]
fn a_post_that_got_503_is_not_replayed() -> anyhow::Result<()> {
    let good = Backend::start("good")?;
    let bad = Backend::start("bad")?;
    bad.set_status(503);
    // No ejection and strict turns: every other POST reaches the 503 backend.
    let settings = "balance = \"round_robin\"\nmax_fails = 0";
    let proxy = Proxy::start(|_, p| Ok(upstream(p, settings, &[&good, &bad])))?;

    let (mut got_503, mut got_200) = (0, 0);
    for i in 0..10 {
        let r = proxy.request(Request::post("/orders", format!("order {i}")))?;
        match (r.status, r.header("x-backend")) {
            (503, Some("bad")) => got_503 += 1,
            (200, Some("good")) => got_200 += 1,
            _ => anyhow::bail!(
                "POST {i}: unexpected answer {:?}: {}",
                r.headers,
                r.describe()
            ),
        }
    }

    ensure!(got_503 > 0, "no POST reached the 503 backend");
    // Each POST reached exactly one backend: the 503 ones were not sent again elsewhere.
    ensure!(
        bad.count("POST") == got_503 && good.count("POST") == got_200,
        "bad saw {} POSTs for {got_503} 503s, good saw {} for {got_200} 200s",
        bad.count("POST"),
        good.count("POST")
    );
    Ok(())
}

#[test]
fn a_failing_health_check_takes_a_backend_out_until_it_passes() -> anyhow::Result<()> {
    let steady = Backend::start("steady")?;
    let flaky = Backend::start("flaky")?;
    let addr = flaky.addr_str();
    let settings = r#"health_check = { path = "/health", interval = "100ms", timeout = "500ms", rise = 2, fall = 2 }"#;
    let proxy = Proxy::start(|_, p| Ok(upstream(p, settings, &[&steady, &flaky])))?;
    eventually(SHOWS_WITHIN, || {
        ensure!(flaky.health_checks() >= 2, "no health checks yet");
        Ok(())
    })?;
    proxy.wait_state("api", &addr, "healthy", SHOWS_WITHIN)?;

    flaky.set_health(500);
    proxy.wait_state("api", &addr, "down", SHOWS_WITHIN)?;
    let before = flaky.total();
    for _ in 0..20 {
        let r = proxy.get("/")?;
        ensure!(
            r.status == 200 && r.header("x-backend") == Some("steady"),
            "{:?} {}",
            r.header("x-backend"),
            r.describe()
        );
    }
    ensure!(
        flaky.total() == before,
        "a backend that is down got traffic"
    );

    flaky.set_health(200);
    proxy.wait_state("api", &addr, "healthy", SHOWS_WITHIN)?;
    eventually(SHOWS_WITHIN, || {
        let r = proxy.get("/")?;
        ensure!(r.status == 200, "{}", r.describe());
        ensure!(flaky.total() > before, "flaky gets no traffic yet");
        Ok(())
    })?;
    Ok(())
}
