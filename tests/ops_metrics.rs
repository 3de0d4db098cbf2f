//! Every metric name that the Grafana dashboard (`deploy/grafana/`) and the Prometheus alert
//! rules (`deploy/prometheus/`) use exists in a real `/metrics` scrape of the binary.
//!
//! Counters appear only once their event happened, so the test makes each event happen for
//! real: HTTP traffic, a backend down by health check and one refusing connections (ejection,
//! retries, panic mode), a flip to a failing pool (rolled back), Postgres traffic through the
//! router with its lag limits set, a refused client and a failed login, a planned switchover
//! (a failover record), and a config file edit that is rejected.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context};
use support::http::Request;
use support::ops::{repo, Rig};
use support::pg::client::{client_config, connect};
use support::pg::{SUPERUSER, SUPERUSER_PASSWORD};
use support::{eventually, metric};

/// Every `switchyard_…` name in a file.
fn names_in(path: &str) -> anyhow::Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join(path)).with_context(|| path.to_string())?;
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("switchyard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `switchyard_` inside a longer word (`my_switchyard_x`) is not a metric name.
        let starts_word = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if starts_word {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    Ok(names)
}

/// The metric names of the samples in a scrape.
fn scraped(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_in_the_dashboard_and_the_alert_rules_is_served() -> anyhow::Result<()> {
    let http = r#"max_fails = 1
fail_timeout = "30s"
health_check = { path = "/health", interval = "200ms", timeout = "500ms", rise = 1, fall = 1 }"#;
    let cluster = r#"max_client_conn = 1
routing = { max_replica_lag_bytes = 16777216, max_replica_lag = "30s" }"#;
    let Some(rig) = Rig::start(http, cluster)? else {
        return Ok(());
    };
    let used: BTreeSet<String> = names_in("deploy/grafana/switchyard-dashboard.json")?
        .into_iter()
        .chain(names_in("deploy/prometheus/switchyard.rules.yml")?)
        .collect();
    ensure!(used.len() > 20, "only {} names found: {used:?}", used.len());

    // HTTP traffic.
    for _ in 0..20 {
        let r = rig.proxy.get("/")?;
        ensure!(r.status == 200, "{}", r.describe());
    }
    // Postgres: a failed login, a client that works, one refused past max_client_conn.
    let port = rig.pg_port()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let wrong = client_config(port, SUPERUSER, "not-the-password", "postgres");
        ensure!(connect(&wrong).await.is_err(), "a wrong password got in");
        let client = connect(&client_config(
            port,
            SUPERUSER,
            SUPERUSER_PASSWORD,
            "postgres",
        ))
        .await?;
        client
            .batch_execute("create table t (id int); insert into t values (1)")
            .await?;
        client.query("select count(*) from t", &[]).await?;
        let config = client_config(port, SUPERUSER, SUPERUSER_PASSWORD, "postgres");
        ensure!(
            connect(&config).await.is_err(),
            "a second client got in past max_client_conn = 1"
        );
        drop(client);
        anyhow::Ok(())
    })?;
    // A planned switchover: a failover record and its duration.
    let to = rig.node_addr(1);
    rig.proxy.operate(
        "/v1/clusters/main/switchover",
        &format!(r#"{{"to": "{to}"}}"#),
    )?;

    // A flip to a pool that fails: rolled back.
    rig.green.set_status(503);
    rig.proxy.operate(
        "/v1/upstreams/api/flip",
        r#"{"to": "green", "verify": {"window": "30s", "min_requests": 3}}"#,
    )?;
    eventually(Duration::from_secs(20), || {
        let _ = rig.proxy.get("/");
        let flip = rig
            .proxy
            .send(Request::get("/v1/upstreams/api/flip").bearer(support::config::VIEWER))?
            .json()?;
        ensure!(flip["state"] == "rolled_back", "flip is {}", flip["state"]);
        Ok(())
    })?;
    // Blue: one backend down by its health check, the other refusing connections.
    rig.blue[0].set_health(500);
    rig.blue[1].stop();
    eventually(Duration::from_secs(20), || {
        let _ = rig.proxy.get("/");
        let text = rig.proxy.metrics()?;
        for name in [
            "switchyard_http_ejections_total",
            "switchyard_http_panic_mode_total",
        ] {
            ensure!(metric(&text, name, &[]).is_some(), "no {name} yet");
        }
        ensure!(
            metric(
                &text,
                "switchyard_http_health_transitions_total",
                &["to=\"down\""]
            )
            .is_some(),
            "no health transition yet"
        );
        Ok(())
    })?;
    // A config file edit that is rejected.
    let good = rig.proxy.config_text()?;
    std::fs::write(
        rig.proxy.config_path(),
        good.replace("[[http.routes]]", "[[http.routes]]\nnope = 1"),
    )?;
    eventually(Duration::from_secs(20), || {
        let text = rig.proxy.metrics()?;
        ensure!(
            metric(&text, "switchyard_control_reload_failing", &[]) == Some(1.0),
            "reload not failing yet"
        );
        Ok(())
    })?;

    let served = eventually(Duration::from_secs(20), || {
        let served = scraped(&rig.proxy.metrics()?);
        let missing: Vec<_> = used.difference(&served).collect();
        ensure!(missing.is_empty(), "used but not served: {missing:?}");
        Ok(served)
    })?;
    eprintln!(
        "{} metric names used, all among the {} served",
        used.len(),
        served.len()
    );
    Ok(())
}
