//! Rolling releases through the ingress, end to end: real backend processes of a version
//! `v1` behind the real binary under constant load, replaced batch by batch by a command of
//! the config (`replace.sh`, see `support::release`) that restarts each one as `v2`.
//!
//! - six backends in batches of two: no failed request over the whole rollout, every
//!   backend on `v2` at the end (paused between batches and resumed through the API);
//! - a `v2` answering 5% of requests with 500: the rollout stops at the first batch, which
//!   stays out of rotation, and the errors stop;
//! - a `v2` that never becomes ready: the rollout stops at `ready_timeout` and says so;
//! - `abort` while a batch waits: every drain and weight is as before the rollout.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::Value;
use support::http::Request;
use support::load::Load;
use support::proxy::{listener, Proxy};
use support::release::{describe, Behaviour, Release, GOOD};
use support::{config, eventually};

const ROLLOUT: &str = "/v1/upstreams/api/rollout";

/// Not a test of its own: the backend processes of [`Release`] run this binary with
/// `--exact release_backend_process`; without their variables it returns at once.
#[test]
fn release_backend_process() {
    support::release::serve_if_asked();
}

/// The config after `[control]`: the replace command, one listener, upstream `api` with the
/// release's backends (those in `drained` drained) in pool `main`, checked every 100 ms.
fn config(release: &Release, port: u16, drained: &[String]) -> String {
    format!("{}{}", listener(port), release.config(drained))
}

fn start(release: &Release, drained: &[String]) -> anyhow::Result<Proxy> {
    let proxy = Proxy::start(|_, p| Ok(config(release, p, drained)))?;
    // Every backend checked healthy before anything starts.
    for a in release.addrs() {
        let want = if drained.contains(&a) {
            "draining"
        } else {
            "healthy"
        };
        proxy.wait_state("api", &a, want, Duration::from_secs(10))?;
    }
    Ok(proxy)
}

/// `POST …/rollout` as the operator, expecting 201.
fn begin(proxy: &Proxy, body: &str) -> anyhow::Result<Value> {
    let r = proxy.send(Request::post(ROLLOUT, body).bearer(config::OPERATOR))?;
    ensure!(r.status == 201, "POST {ROLLOUT}: {}", r.describe());
    Ok(r.json()?["rollout"].clone())
}

/// `GET …/rollout` as a viewer.
fn rollout(proxy: &Proxy) -> anyhow::Result<Value> {
    let r = proxy.send(Request::get(ROLLOUT).bearer(config::VIEWER))?;
    ensure!(r.status == 200, "GET {ROLLOUT}: {}", r.describe());
    r.json()
}

/// Wait until the rollout is in `state`.
fn wait_state(proxy: &Proxy, state: &str, within: Duration) -> anyhow::Result<Value> {
    eventually(within, || {
        let r = rollout(proxy)?;
        ensure!(
            r["state"] == state,
            "rollout is {}, want {state}: {}",
            r["state"],
            describe(&r)
        );
        Ok(r)
    })
}

fn request(version: &str, extra: &str) -> String {
    format!(
        r#"{{"batch_size": 2, "replace": {{"command": "restart"}}, "version": "{version}",
            "drain_timeout": "5s", "ready_timeout": "15s",
            "verify": {{"window": "1s", "max_error_ratio": 0.02, "min_requests": 20}}{extra}}}"#
    )
}

#[test]
fn six_backends_in_batches_of_two_roll_to_v2_without_a_failed_request() -> anyhow::Result<()> {
    let release = Release::start(6, GOOD)?;
    let proxy = start(&release, &[])?;
    let load = Load::start(proxy.http_addr(), 4, Request::get("/work"));
    load.wait_for(100, Duration::from_secs(20))?;
    let started = Instant::now();
    let r = begin(&proxy, &request("v2", r#", "pause_between_batches": true"#))?;
    ensure!(
        r["batches"].as_array().map(Vec::len) == Some(3),
        "{}",
        describe(&r)
    );
    // Paused after each of the first two batches; resumed through the API.
    for i in 0..2 {
        let paused = wait_state(&proxy, "paused", Duration::from_secs(60))?;
        ensure!(paused["current"] == i, "{}", describe(&paused));
        let resumed = proxy.operate(&format!("{ROLLOUT}/resume"), "")?;
        ensure!(
            resumed["rollout"]["state"] == "running",
            "{}",
            describe(&resumed)
        );
    }
    let done = wait_state(&proxy, "succeeded", Duration::from_secs(60))?;
    let took = started.elapsed();
    load.wait_for(100, Duration::from_secs(20))?;
    let report = load.finish()?;
    report.assert_no_failures()?;
    for p in &release.ports {
        let v = release.version(*p)?;
        ensure!(v == "v2", "backend {p} is {v} after the rollout");
    }
    for b in done["batches"].as_array().into_iter().flatten() {
        ensure!(b["step"] == "done", "{}", describe(b));
        ensure!(
            b["verified"]["requests"].as_u64() >= Some(20),
            "{}",
            describe(b)
        );
        let out = b["replace_output"].as_str().unwrap_or_default();
        ensure!(out.matches("replaced 127.0.0.1:").count() == 2, "{out}");
    }
    let last: Vec<_> = report.outcomes.iter().rev().take(20).collect();
    ensure!(
        last.iter()
            .all(|o| o.backend.as_deref().is_some_and(|b| b.starts_with("v2@"))),
        "the last requests were not all answered by v2: {last:?}"
    );
    eprintln!(
        "rollout of 6 backends in 3 batches: {} requests, 0 failed, {took:?}",
        report.len()
    );
    // Audited: the start by the operator, each drain and enable by the rollout.
    let audit = proxy.audit()?;
    let actions: Vec<&str> = audit.iter().filter_map(|l| l["action"].as_str()).collect();
    ensure!(actions.contains(&"upstream.rollout"), "{actions:?}");
    ensure!(
        actions
            .iter()
            .filter(|a| **a == "upstream.rollout.drain")
            .count()
            == 3,
        "{actions:?}"
    );
    ensure!(
        actions
            .iter()
            .filter(|a| **a == "upstream.rollout.enable")
            .count()
            == 3,
        "{actions:?}"
    );
    Ok(())
}

#[test]
fn a_version_answering_5_percent_500s_stops_at_the_first_batch() -> anyhow::Result<()> {
    let bad = Behaviour {
        error_every: 20,
        ready: true,
    };
    let release = Release::start(6, bad)?;
    let proxy = start(&release, &[])?;
    let load = Load::start(proxy.http_addr(), 4, Request::get("/work"));
    load.wait_for(100, Duration::from_secs(20))?;
    let body = request("v2", "").replace(r#""window": "1s""#, r#""window": "10s""#);
    begin(&proxy, &body)?;
    let failed = wait_state(&proxy, "failed", Duration::from_secs(60))?;
    let stopped = Instant::now();
    ensure!(failed["failed_batch"] == 0, "{}", describe(&failed));
    let batch = &failed["batches"][0];
    let reason = batch["reason"].as_str().unwrap_or_default();
    ensure!(reason.contains("error ratio"), "{}", describe(&failed));
    ensure!(
        failed["batches"][1]["step"] == "pending",
        "{}",
        describe(&failed)
    );
    // The failed batch is out of rotation; the others serve, still v1.
    let out: Vec<String> = batch["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str().map(String::from))
        .collect();
    for a in release.addrs() {
        let want = if out.contains(&a) {
            "draining"
        } else {
            "healthy"
        };
        ensure!(proxy.backend_state("api", &a)? == want, "{a} is not {want}");
    }
    load.wait_for(200, Duration::from_secs(20))?;
    let report = load.finish()?;
    let after: Vec<_> = report.sent_after(stopped).collect();
    ensure!(
        after.len() >= 100,
        "only {} requests after the stop",
        after.len()
    );
    ensure!(
        after
            .iter()
            .all(|o| o.ok() && o.backend.as_deref().is_some_and(|b| b.starts_with("v1@"))),
        "after the stop every request is answered by v1"
    );
    eprintln!("5% of 500s: stopped at batch 1 with {reason}");
    Ok(())
}

#[test]
fn a_version_that_never_becomes_ready_stops_at_ready_timeout() -> anyhow::Result<()> {
    let release = Release::start(
        4,
        Behaviour {
            error_every: 0,
            ready: false,
        },
    )?;
    let proxy = start(&release, &[])?;
    let load = Load::start(proxy.http_addr(), 2, Request::get("/work"));
    let body = request("v2", "").replace(r#""ready_timeout": "15s""#, r#""ready_timeout": "2s""#);
    begin(&proxy, &body)?;
    let failed = wait_state(&proxy, "failed", Duration::from_secs(30))?;
    let reason = failed["batches"][0]["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("not ready after ready_timeout = 2s"),
        "{}",
        describe(&failed)
    );
    ensure!(reason.contains("health check"), "{reason}");
    let report = load.finish()?;
    report.assert_no_failures()?;
    Ok(())
}

#[test]
fn abort_while_a_batch_waits_puts_every_drain_and_weight_back() -> anyhow::Result<()> {
    let release = Release::start(
        4,
        Behaviour {
            error_every: 0,
            ready: false,
        },
    )?;
    let drained = vec![release.addrs()[3].clone()];
    let proxy = start(&release, &drained)?;
    let weights = proxy.pool_weights("api")?;
    let body = request("v2", "").replace(r#""ready_timeout": "15s""#, r#""ready_timeout": "60s""#);
    let r = begin(&proxy, &body)?;
    ensure!(r["skipped"][0] == drained[0].as_str(), "{}", describe(&r));
    eventually(Duration::from_secs(20), || {
        let r = rollout(&proxy)?;
        ensure!(
            r["batches"][0]["step"] == "waiting_ready",
            "{}",
            describe(&r)
        );
        Ok(())
    })?;
    for a in &release.addrs()[..2] {
        ensure!(
            proxy.backend_state("api", a)? != "healthy",
            "{a} still in rotation"
        );
    }
    let aborted = proxy.operate(&format!("{ROLLOUT}/abort"), "")?;
    ensure!(
        aborted["rollout"]["state"] == "aborted",
        "{}",
        describe(&aborted)
    );
    ensure!(
        aborted["rollout"]["batches"][0]["step"] == "aborted",
        "{}",
        describe(&aborted)
    );
    for a in release.addrs() {
        let is_drained = proxy.backend_state("api", &a)? == "draining";
        ensure!(
            is_drained == drained.contains(&a),
            "{a}: drained {is_drained}"
        );
    }
    ensure!(proxy.pool_weights("api")? == weights, "weights changed");
    // Over: a second abort is refused, a new rollout may start.
    let again = proxy
        .send(Request::post(format!("{ROLLOUT}/abort").as_str(), "").bearer(config::OPERATOR))?;
    ensure!(again.status == 409, "{}", again.describe());
    Ok(())
}

#[test]
fn the_command_line_starts_and_follows_a_rollout_batch_by_batch() -> anyhow::Result<()> {
    let release = Release::start(3, GOOD)?;
    let proxy = start(&release, &[])?;
    let load = Load::start(proxy.http_addr(), 2, Request::get("/work"));
    let out = std::process::Command::new(support::BIN)
        .args(["rollout", "--upstream", "api", "start", "--batch-size", "1"])
        .args([
            "--command",
            "restart",
            "--expect-version",
            "v2",
            "--window",
            "1s",
        ])
        .args(["--min-requests", "5", "--follow"])
        .env("SWITCHYARD_API", format!("http://{}", proxy.addr()))
        .env("SWITCHYARD_TOKEN", config::OPERATOR)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "batch 1/3",
        "batch 3/3",
        "verifying: batch 3 error ratio",
        "rollout succeeded",
    ] {
        ensure!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    load.finish()?.assert_no_failures()?;
    let status = std::process::Command::new(support::BIN)
        .args(["rollout", "--upstream", "api", "abort"])
        .env("SWITCHYARD_API", format!("http://{}", proxy.addr()))
        .env("SWITCHYARD_TOKEN", config::OPERATOR)
        .output()?;
    ensure!(
        status.status.code() == Some(2),
        "aborting a finished rollout is refused"
    );
    Ok(())
}
