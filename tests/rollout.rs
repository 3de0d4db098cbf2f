//! Rolling releases through the ingress, end to end: real backend processes of a version
//! `v1` behind the real binary under constant load, replaced batch by batch by a command of
//! the config (`replace.sh`, see `support::release`) that restarts each one as `v2`.
//!
//! - six backends in batches of two: no failed request over the whole rollout, every
//!   backend on `v2` at the end (paused between batches and resumed through the API);
//! - a `v2` answering 5% of requests with 500: the rollout stops at the first batch, which
//!   stays out of rotation, and the errors stop;
//! - a `v2` that never becomes ready: the rollout stops at `ready_timeout` and says so;
//! - `abort` while a batch waits: every drain and weight is as before the rollout;
//! - a `v2` 150 ms slower than `v1`: the first batch fails on `max_p99_ratio` with both p99s;
//! - no traffic at all: each batch goes through slow start, its window is extended, and it
//!   ends `unverified`, as does the rollout;
//! - replaced by a webhook: a test server restarts the batch it is sent;
//! - a flip and a rollout of one upstream refuse each other (409), also when sent together;
//! - with the file store, a paused rollout survives a SIGKILL and restart and resumes.

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

/// `POST …/rollout/resume` as the operator; the rollout is running again.
fn resume(proxy: &Proxy) -> anyhow::Result<()> {
    let resumed = proxy.operate(&format!("{ROLLOUT}/resume"), "")?;
    ensure!(
        resumed["rollout"]["state"] == "running",
        "{}",
        describe(&resumed)
    );
    Ok(())
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
        resume(&proxy)?;
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
        ..GOOD
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
            ..GOOD
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
            ..GOOD
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
        .args(["--min-requests", "5", "--max-p99-ratio", "20", "--follow"])
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

#[test]
fn a_version_slower_at_p99_fails_its_batch_with_both_figures() -> anyhow::Result<()> {
    let slow = Behaviour {
        delay_ms: 150,
        ..GOOD
    };
    let release = Release::start(6, slow)?;
    let proxy = start(&release, &[])?;
    let load = Load::start(proxy.http_addr(), 4, Request::get("/work"));
    load.wait_for(100, Duration::from_secs(20))?;
    let body =
        request("v2", "").replace(r#""window": "1s""#, r#""window": "2s", "max_p99_ratio": 2"#);
    begin(&proxy, &body)?;
    let failed = wait_state(&proxy, "failed", Duration::from_secs(60))?;
    let batch = &failed["batches"][0];
    let reason = batch["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("batch 1 p99") && reason.contains("not yet replaced"),
        "{}",
        describe(&failed)
    );
    let lat = &batch["latency"];
    let (batch_p99, others_p99) = (lat["batch_p99_ms"].as_f64(), lat["others_p99_ms"].as_f64());
    ensure!(
        batch_p99 >= Some(150.0)
            && batch_p99 > others_p99.map(|o| 2.0 * o.max(1.0))
            && lat["others_requests"].as_u64() >= Some(20),
        "{}",
        describe(lat)
    );
    ensure!(
        failed["batches"][1]["step"] == "pending",
        "{}",
        describe(&failed)
    );
    load.finish()?;
    eprintln!("150 ms slower v2: {reason}");
    Ok(())
}

#[test]
fn batches_without_traffic_ramp_up_then_end_unverified() -> anyhow::Result<()> {
    let release = Release::start(2, GOOD)?;
    let proxy = Proxy::start(|_, p| {
        let text = config(&release, p, &[]);
        Ok(text.replace(
            "balance = \"round_robin\"",
            "balance = \"round_robin\"\nslow_start = \"1s\"",
        ))
    })?;
    for a in release.addrs() {
        proxy.wait_state("api", &a, "healthy", Duration::from_secs(10))?;
    }
    let body = request("v2", "").replace(r#""batch_size": 2"#, r#""batch_size": 1"#);
    begin(&proxy, &body)?;
    let done = wait_state(&proxy, "unverified", Duration::from_secs(60))?;
    let reason = done["reason"].as_str().unwrap_or_default();
    ensure!(reason.contains("batch(es) 1, 2"), "{}", describe(&done));
    for b in done["batches"].as_array().into_iter().flatten() {
        ensure!(b["step"] == "unverified", "{}", describe(b));
        let steps: Vec<&str> = (b["steps"].as_array().into_iter().flatten())
            .filter_map(|s| s["step"].as_str())
            .collect();
        ensure!(
            steps
                == [
                    "draining",
                    "replacing",
                    "waiting_ready",
                    "slow_start",
                    "verifying"
                ],
            "{steps:?}"
        );
        let notes = describe(&b["steps"]);
        ensure!(
            notes.contains("weight ramped from 10% to 100% over 1s"),
            "{notes}"
        );
        ensure!(notes.contains("window extended to 2s"), "{notes}");
    }
    Ok(())
}

/// A deploy hook for the webhook test: answers each `POST` by running the release's
/// replace script with the batch it names, as a deploy tool would.
fn deploy_hook(release: &Release) -> anyhow::Result<(u16, std::sync::mpsc::Receiver<Value>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let script = release.script();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let batch: Value = serde_json::from_slice(&body).unwrap_or_default();
            let backends: Vec<&str> = (batch["backends"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let out = std::process::Command::new("/bin/sh")
                .arg(&script)
                .env("SWITCHYARD_ROLLOUT_BACKENDS", backends.join(" "))
                .env(
                    "SWITCHYARD_ROLLOUT_VERSION",
                    batch["version"].as_str().unwrap_or(""),
                )
                .output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            let text = text.unwrap_or_else(|e| format!("cannot run: {e}"));
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = reader.get_mut().write_all(answer.as_bytes());
            let _ = tx.send(batch);
        }
    });
    Ok((port, rx))
}

#[test]
fn a_webhook_replaces_each_batch_it_is_sent() -> anyhow::Result<()> {
    let release = Release::start(4, GOOD)?;
    let (hook, calls) = deploy_hook(&release)?;
    let proxy = Proxy::start(|_, p| {
        let webhook = format!(
            "[rollout.webhooks.deploy]\nurl = \"http://127.0.0.1:{hook}/deploy\"\ntimeout = \"20s\"\n\n[rollout.commands.restart]"
        );
        Ok(config(&release, p, &[]).replace("[rollout.commands.restart]", &webhook))
    })?;
    for a in release.addrs() {
        proxy.wait_state("api", &a, "healthy", Duration::from_secs(10))?;
    }
    let load = Load::start(proxy.http_addr(), 2, Request::get("/work"));
    load.wait_for(50, Duration::from_secs(20))?;
    let body = request("v2", "").replace(r#"{"command": "restart"}"#, r#"{"webhook": "deploy"}"#);
    begin(&proxy, &body)?;
    let done = wait_state(&proxy, "succeeded", Duration::from_secs(60))?;
    load.finish()?.assert_no_failures()?;
    let sent: Vec<Value> = calls.try_iter().collect();
    ensure!(sent.len() == 2, "{sent:?}");
    for (i, call) in sent.iter().enumerate() {
        ensure!(
            call["upstream"] == "api" && call["batch"] == i + 1,
            "{call}"
        );
        ensure!(call["backends"] == done["batches"][i]["backends"], "{call}");
        let out = done["batches"][i]["replace_output"]
            .as_str()
            .unwrap_or_default();
        ensure!(
            out.starts_with("200 OK") && out.contains("replaced 127.0.0.1:"),
            "{out}"
        );
    }
    for p in &release.ports {
        let v = release.version(*p)?;
        ensure!(v == "v2", "backend {p} is {v} after the rollout");
    }
    Ok(())
}

/// A proxy over `release` (pool `main`) with an empty-weight pool `spare` to flip to, once
/// every backend is healthy.
fn with_spare_pool(release: &Release) -> anyhow::Result<Proxy> {
    let proxy = Proxy::start(|_, p| {
        let spare =
            "\n[http.upstreams.api.pools.spare]\nweight = 0\nbackends = [\"127.0.0.1:9\"]\n";
        Ok(config(release, p, &[]) + spare)
    })?;
    for a in release.addrs() {
        proxy.wait_state("api", &a, "healthy", Duration::from_secs(10))?;
    }
    Ok(proxy)
}

#[test]
fn a_flip_and_a_rollout_of_one_upstream_refuse_each_other() -> anyhow::Result<()> {
    let release = Release::start(3, GOOD)?;
    let proxy = with_spare_pool(&release)?;
    let flip = r#"{"to": "spare", "verify": {"window": "60s"}}"#;
    // A rollout waiting for a version that never comes.
    let body = r#"{"backends": {"pool": "main"}, "replace": "external", "version": "v9", "ready_timeout": "60s"}"#;
    begin(&proxy, body)?;
    let r = proxy.send(Request::post("/v1/upstreams/api/flip", flip).bearer(config::OPERATOR))?;
    ensure!(r.status == 409, "{}", r.describe());
    let error = r.json()?["error"].as_str().unwrap_or_default().to_string();
    ensure!(
        error.contains("a rollout of upstream \"api\" is \"running\"")
            && error.contains("before a flip"),
        "{error}"
    );
    proxy.operate(&format!("{ROLLOUT}/abort"), "")?;
    let flipped = proxy.operate("/v1/upstreams/api/flip", flip)?;
    ensure!(
        flipped["flip"]["state"] == "verifying",
        "{}",
        describe(&flipped)
    );
    let r = proxy.send(Request::post(ROLLOUT, body).bearer(config::OPERATOR))?;
    ensure!(r.status == 409, "{}", r.describe());
    let error = r.json()?["error"].as_str().unwrap_or_default().to_string();
    ensure!(
        error.contains("a flip of upstream \"api\" is being verified"),
        "{error}"
    );
    Ok(())
}

/// A flip and a rollout of one upstream sent at the same moment: one of them starts, the
/// other gets 409 (one claim per upstream, taken with one check). Five rounds.
#[test]
fn a_flip_and_a_rollout_sent_together_never_both_start() -> anyhow::Result<()> {
    let release = Release::start(3, GOOD)?;
    let proxy = with_spare_pool(&release)?;
    let body = r#"{"backends": {"pool": "main"}, "replace": "external", "version": "v9", "ready_timeout": "60s"}"#;
    let flip_path = "/v1/upstreams/api/flip";
    let (mut flips, mut rollouts) = (0, 0);
    for round in 0..5 {
        let to = if round % 2 == 0 { "spare" } else { "main" };
        let flip = format!(r#"{{"to": "{to}", "verify": {{"window": "1s"}}}}"#);
        let gate = std::sync::Barrier::new(2);
        let (f, r) = std::thread::scope(|s| {
            let f = s.spawn(|| {
                gate.wait();
                proxy.send(Request::post(flip_path, flip.as_str()).bearer(config::OPERATOR))
            });
            let r = s.spawn(|| {
                gate.wait();
                proxy.send(Request::post(ROLLOUT, body).bearer(config::OPERATOR))
            });
            (f.join(), r.join())
        });
        let (Ok(f), Ok(r)) = (f, r) else {
            anyhow::bail!("a request thread panicked");
        };
        let (f, r) = (f?, r?);
        let started = [f.status == 200, r.status == 201];
        ensure!(
            started.iter().filter(|s| **s).count() == 1,
            "round {round}: flip {} / rollout {}",
            f.describe(),
            r.describe()
        );
        ensure!(
            [f.status, r.status].contains(&409),
            "round {round}: flip {} / rollout {}",
            f.describe(),
            r.describe()
        );
        if started[1] {
            rollouts += 1;
            proxy.operate(&format!("{ROLLOUT}/abort"), "")?;
        } else {
            flips += 1;
        }
        // Wait until the upstream is free again (the flip's 1 s window ends unverified).
        eventually(Duration::from_secs(10), || {
            let r = proxy.send(Request::get(flip_path).bearer(config::VIEWER))?;
            let state = r.json().ok().map(|v| v["state"].clone());
            ensure!(
                r.status == 404 || state.as_ref().is_some_and(|s| s != "verifying"),
                "{}",
                r.describe()
            );
            Ok(())
        })?;
    }
    eprintln!("sent together 5 times: {flips} flip(s) started, {rollouts} rollout(s)");
    Ok(())
}

/// With the file store, a rollout paused between batches survives a SIGKILL and a restart
/// of the binary: `GET` shows it paused after batch 1, and `resume` runs it to the end.
#[test]
fn a_paused_rollout_survives_a_restart_and_resumes() -> anyhow::Result<()> {
    let release = Release::start(4, GOOD)?;
    let mut proxy = start(&release, &[])?;
    let load = Load::start(proxy.http_addr(), 2, Request::get("/work"));
    load.wait_for(50, Duration::from_secs(20))?;
    begin(&proxy, &request("v2", r#", "pause_between_batches": true"#))?;
    let paused = wait_state(&proxy, "paused", Duration::from_secs(60))?;
    ensure!(paused["current"] == 0, "{}", describe(&paused));
    proxy.restart()?;
    let kept = wait_state(&proxy, "paused", Duration::from_secs(20))?;
    ensure!(
        kept["current"] == 0 && kept["batches"][0]["step"] == "done",
        "after the restart: {}",
        describe(&kept)
    );
    resume(&proxy)?;
    let done = wait_state(&proxy, "succeeded", Duration::from_secs(60))?;
    load.finish()?;
    for p in &release.ports {
        let v = release.version(*p)?;
        ensure!(v == "v2", "backend {p} is {v}: {}", describe(&done));
    }
    Ok(())
}
