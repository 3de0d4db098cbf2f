//! Blue/green operations under traffic, end to end: a flip moves every new request to green
//! without failing one; a flip to a green pool that answers 500 rolls itself back within its
//! verification window (weights, running config and file); weight changes and file reloads
//! cost no request and let a slow request in flight finish; a drained backend gets no new
//! request while its in-flight one finishes, and comes back when enabled.

mod support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use serde_json::Value;
use support::backend::Backend;
use support::http::Request;
use support::load::{Load, Outcome};
use support::proxy::{listener, Proxy};
use support::{config, eventually};

const FLIP: &str = "/v1/upstreams/api/flip";

/// Upstream `api` with pools blue and green (left out when it has no backends) of the given
/// weights, for any host.
fn blue_green(port: u16, blue: (&[&Backend], u32), green: (&[&Backend], u32)) -> String {
    let pool = |name: &str, (bs, weight): (&[&Backend], u32)| {
        if bs.is_empty() {
            return String::new();
        }
        let list: Vec<String> = bs.iter().map(|b| format!("\"{}\"", b.addr())).collect();
        format!(
            "\n[http.upstreams.api.pools.{name}]\nweight = {weight}\nbackends = [{}]\n",
            list.join(", ")
        )
    };
    format!(
        r#"{listener}
[[http.routes]]
host = "*"
upstream = "api"
retries = 2

[http.upstreams.api]
balance = "least_conn"
{blue}{green}"#,
        listener = listener(port),
        blue = pool("blue", blue),
        green = pool("green", green),
    )
}

/// `GET /v1/upstreams/api/flip`.
fn flip_status(proxy: &Proxy) -> anyhow::Result<Value> {
    let r = proxy.send(Request::get(FLIP).bearer(config::VIEWER))?;
    ensure!(r.status == 200, "GET {FLIP}: {}", r.describe());
    r.json()
}

fn weights(proxy: &Proxy) -> anyhow::Result<Vec<(String, u64)>> {
    proxy.pool_weights("api")
}

fn pair(blue: u64, green: u64) -> Vec<(String, u64)> {
    vec![("blue".into(), blue), ("green".into(), green)]
}

#[test]
fn a_flip_under_load_moves_every_new_request_to_green() -> anyhow::Result<()> {
    let blue = Backend::start_many("blue", 2)?;
    let green = Backend::start_many("green", 2)?;
    let (b, g): (Vec<_>, Vec<_>) = (blue.iter().collect(), green.iter().collect());
    let proxy = Proxy::start(|_, p| Ok(blue_green(p, (&b, 100), (&g, 0))))?;

    let load = Load::start(proxy.http_addr(), 4, Request::get("/checkout"));
    load.wait_for(60, Duration::from_secs(20))?;
    let asked = Instant::now();
    let flip = proxy.operate(
        FLIP,
        r#"{"to": "green", "verify": {"window": "2s", "max_error_ratio": 0.01, "min_requests": 5}}"#,
    )?;
    let flipped = Instant::now();
    ensure!(flip["flip"]["state"] == "verifying", "{flip}");
    load.wait_for(100, Duration::from_secs(20))?;
    let report = load.finish()?;

    report.assert_no_failures()?;
    let is_green = |o: &&Outcome| o.backend.as_deref().is_some_and(|b| b.starts_with("green"));
    let before: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| o.answered < asked)
        .collect();
    ensure!(
        !before.is_empty() && !before.iter().any(is_green),
        "before the flip everything goes to blue: {:?}",
        report.by_backend()
    );
    // Requests in flight while the flip was applied may have gone either way; every one sent
    // after it returned went to green.
    let after: Vec<_> = report.sent_after(flipped).collect();
    ensure!(
        after.len() >= 50,
        "only {} requests after the flip",
        after.len()
    );
    let strays: Vec<_> = after.iter().filter(|o| !is_green(o)).collect();
    ensure!(
        strays.is_empty(),
        "sent after the flip but not answered by green: {strays:?}"
    );
    ensure!(weights(&proxy)? == pair(0, 100), "{:?}", weights(&proxy)?);

    let verified = eventually(Duration::from_secs(10), || {
        let f = flip_status(&proxy)?;
        ensure!(f["state"] == "verified", "flip is {}", f["state"]);
        Ok(f)
    })?;
    ensure!(verified["errors"] == 0, "{verified}");
    Ok(())
}

#[test]
fn a_flip_to_a_failing_green_rolls_back_within_its_window() -> anyhow::Result<()> {
    let blue = Backend::start("blue")?;
    let green = Backend::start("green")?;
    green.set_status(500);
    let proxy = Proxy::start(|_, p| Ok(blue_green(p, (&[&blue], 100), (&[&green], 0))))?;
    let original = proxy.config_text()?;

    let load = Load::start(proxy.http_addr(), 2, Request::get("/pay"));
    load.wait_for(20, Duration::from_secs(20))?;
    let window = Duration::from_secs(5);
    proxy.operate(
        FLIP,
        r#"{"to": "green", "verify": {"window": "5s", "max_error_ratio": 0.01, "min_requests": 5}}"#,
    )?;
    let flipped = Instant::now();
    let rolled_back = eventually(window, || {
        let f = flip_status(&proxy)?;
        ensure!(f["state"] == "rolled_back", "flip is {}: {f}", f["state"]);
        Ok(f)
    })?;
    let back = Instant::now();
    ensure!(
        back - flipped < window,
        "rolled back after {:?}",
        back - flipped
    );
    let reason = rolled_back["reason"].as_str().unwrap_or("");
    ensure!(reason.contains("green error ratio"), "{rolled_back}");
    ensure!(green.total() >= 5, "green saw {} requests", green.total());

    // Blue has every new request again; the running weights and the file are as before.
    ensure!(weights(&proxy)? == pair(100, 0), "{:?}", weights(&proxy)?);
    ensure!(
        proxy.config_text()? == original,
        "the config file was not restored"
    );
    load.wait_for(30, Duration::from_secs(20))?;
    let report = load.finish()?;
    let after: Vec<_> = report.sent_after(back).collect();
    ensure!(!after.is_empty(), "no requests after the rollback");
    ensure!(
        after
            .iter()
            .all(|o| o.ok() && o.backend.as_deref() == Some("blue")),
        "after the rollback: {:?}",
        after
            .iter()
            .filter(|o| !o.ok() || o.backend.as_deref() != Some("blue"))
            .collect::<Vec<_>>()
    );
    ensure!(
        proxy.status()?["source"] == "rollback",
        "the rollback is the running version"
    );
    Ok(())
}

#[test]
fn weight_changes_and_reloads_under_load_lose_nothing() -> anyhow::Result<()> {
    let blue = Backend::start("blue")?;
    let green = Backend::start("green")?;
    let proxy = Proxy::start(|_, p| Ok(blue_green(p, (&[&blue], 100), (&[&green], 0))))?;
    let load = Load::start(proxy.http_addr(), 3, Request::get("/cart"));
    load.wait_for(30, Duration::from_secs(20))?;

    proxy.operate("/v1/upstreams/api/weights", r#"{"blue": 90, "green": 10}"#)?;
    ensure!(weights(&proxy)? == pair(90, 10), "{:?}", weights(&proxy)?);
    load.wait_for(60, Duration::from_secs(20))?;

    // A slow request is in flight through the next two changes.
    let slow = {
        let addr = proxy.http_addr();
        std::thread::spawn(move || Request::get("/slow?delay_ms=3000").send(addr))
    };
    eventually(Duration::from_secs(5), || {
        ensure!(
            blue.delayed() + green.delayed() == 1,
            "slow request not in flight yet"
        );
        Ok(())
    })?;
    proxy.operate("/v1/upstreams/api/weights", r#"{"blue": 50, "green": 50}"#)?;
    ensure!(weights(&proxy)? == pair(50, 50), "{:?}", weights(&proxy)?);

    // A reload from the file: the route now allows three retries.
    let version = proxy.version()?;
    let text = proxy.config_text()?;
    ensure!(text.contains("retries = 2"), "{text}");
    let tmp = proxy.conf_dir().join("switchyard.toml.new");
    std::fs::write(&tmp, text.replace("retries = 2", "retries = 3"))?;
    std::fs::rename(&tmp, proxy.config_path())?;
    eventually(Duration::from_secs(5), || {
        ensure!(proxy.version()? == version + 1, "file not reloaded yet");
        Ok(())
    })?;
    ensure!(
        !slow.is_finished(),
        "the slow request ended before the reload; test is void"
    );

    let slow = slow.join().map_err(|_| anyhow!("slow client panicked"))??;
    ensure!(
        slow.status == 200,
        "slow request across reloads: {}",
        slow.describe()
    );
    load.wait_for(60, Duration::from_secs(20))?;
    let report = load.finish()?;
    report.assert_no_failures()?;
    let seen = report.by_backend();
    ensure!(
        seen.get("green").copied().unwrap_or(0) > 0,
        "green never served: {seen:?}"
    );
    Ok(())
}

#[test]
fn a_drained_backend_finishes_in_flight_work_and_takes_no_new() -> anyhow::Result<()> {
    let bs = Backend::start_many("b", 2)?;
    let proxy = Proxy::start(|_, p| Ok(blue_green(p, (&[&bs[0], &bs[1]], 100), (&[], 0))))?;

    let slow = {
        let addr = proxy.http_addr();
        std::thread::spawn(move || Request::get("/report?delay_ms=1500").send(addr))
    };
    let busy = eventually(Duration::from_secs(5), || {
        bs.iter()
            .find(|b| b.delayed() == 1)
            .ok_or_else(|| anyhow!("slow request not in flight yet"))
    })?;
    let other = bs
        .iter()
        .find(|b| b.name() != busy.name())
        .ok_or_else(|| anyhow!("no other"))?;
    let path = format!(
        "/v1/upstreams/api/backends/{}",
        busy.addr_str().replace(':', "%3A")
    );

    proxy.operate(&format!("{path}/drain"), "")?;
    ensure!(proxy.backend_state("api", &busy.addr_str())? == "draining");
    ensure!(
        busy.delayed() == 1,
        "the in-flight request should still be running"
    );
    let before = busy.total();
    for _ in 0..10 {
        let r = proxy.get("/")?;
        ensure!(
            r.status == 200 && r.header("x-backend") == Some(other.name()),
            "{:?}",
            r.headers
        );
    }
    ensure!(
        busy.total() == before,
        "a draining backend got new requests"
    );
    let slow = slow.join().map_err(|_| anyhow!("slow client panicked"))??;
    ensure!(
        slow.status == 200 && slow.header("x-backend") == Some(busy.name()),
        "the in-flight request on the drained backend: {:?} {}",
        slow.headers,
        slow.describe()
    );

    proxy.operate(&format!("{path}/enable"), "")?;
    ensure!(proxy.backend_state("api", &busy.addr_str())? == "healthy");
    eventually(Duration::from_secs(5), || {
        let r = proxy.get("/")?;
        ensure!(r.status == 200, "{}", r.describe());
        ensure!(
            busy.total() > before,
            "the enabled backend gets no traffic yet"
        );
        Ok(())
    })
}
