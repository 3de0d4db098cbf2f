//! The node monitor end to end, against a real primary and two streaming replicas and the
//! `switchyard` binary: `/v1/status` and the Prometheus series show each node's role,
//! reachability and lag; a stopped replica is marked down within `failure_threshold` checks
//! and comes back when started again; a replica whose replay is paused shows its lag grow
//! while the primary writes; nodes removed and added by a reload stop and start being
//! checked.
//!
//! Checks run every 100 ms with a threshold of 3, so "down" is due 300 ms after a stop (plus
//! the check in flight); the tests allow 2 s more, and print what they measured.
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use serde_json::Value;
use support::pg::client::Router;
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};
use support::{consistently, eventually, metric};

const INTERVAL: Duration = Duration::from_millis(100);
const THRESHOLD: u32 = 3;
const SETTINGS: &str =
    r#"failover = { check_interval = "100ms", check_timeout = "500ms", failure_threshold = 3 }"#;
/// Time allowed beyond `THRESHOLD × INTERVAL` for a state change to show.
const MARGIN: Duration = Duration::from_secs(2);

/// A primary and two replicas, and the router over them; the monitor logs in as the
/// superuser (the cluster's first user), which may read `pg_stat_wal_receiver`.
fn setup() -> anyhow::Result<Option<(PgCluster, Router)>> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(None);
    };
    let user = format!(r#"{{ name = "{SUPERUSER}", password = "{SUPERUSER_PASSWORD}" }}"#);
    let router = Router::start(&pg, SETTINGS, &[&user])?;
    Ok(Some((pg, router)))
}

/// Node `i` of cluster `main` in `/v1/status`.
fn node(router: &Router, i: usize) -> anyhow::Result<Value> {
    Ok(router.cluster_status()?["nodes"][i].clone())
}

fn lag_bytes(n: &Value) -> anyhow::Result<u64> {
    n["lag_bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("no lag_bytes: {n}"))
}

/// Wait until every node is reachable with the role it is configured with, and each replica
/// streams with a small lag.
fn wait_all_healthy(router: &Router) -> anyhow::Result<Value> {
    eventually(Duration::from_secs(10), || {
        let s = router.cluster_status()?;
        for (i, n) in s["nodes"].as_array().into_iter().flatten().enumerate() {
            let role = if i == 0 { "primary" } else { "replica" };
            ensure!(
                n["reachable"] == true && n["down"] == false,
                "node {i}: {n}"
            );
            ensure!(
                n["role"] == role && n["observed_role"] == role,
                "node {i}: {n}"
            );
            if i > 0 {
                ensure!(n["streaming"] == true, "node {i} not streaming: {n}");
                ensure!(lag_bytes(n)? < 1024 * 1024, "node {i} lags: {n}");
                let secs = n["lag_seconds"].as_f64().unwrap_or(f64::MAX);
                ensure!(secs < 5.0, "node {i} lags: {n}");
            }
        }
        ensure!(s["nodes"].as_array().map(Vec::len) == Some(3), "{s}");
        Ok(s)
    })
}

#[test]
fn status_and_metrics_show_each_node_with_its_role_and_lag() -> anyhow::Result<()> {
    let Some((pg, router)) = setup()? else {
        return Ok(());
    };
    let s = wait_all_healthy(&router)?;
    let primary = &s["nodes"][0];
    ensure!(primary["lsn"]["current"].is_string(), "{primary}");
    ensure!(primary["lag_bytes"].is_null() && primary["streaming"].is_null());
    ensure!(s["nodes"][1]["lsn"]["replay"].is_string(), "{s}");

    let text = router.sy.metrics()?;
    for i in 0..3 {
        let node = format!("node=\"127.0.0.1:{}\"", pg.node(i).port);
        let role = if i == 0 {
            "role=\"primary\""
        } else {
            "role=\"replica\""
        };
        let labels = ["cluster=\"main\"", &node, role];
        ensure!(
            metric(&text, "switchyard_postgres_node_up", &labels) == Some(1.0),
            "node_up of node {i}:\n{text}"
        );
        let ok = ["cluster=\"main\"", &node, "result=\"ok\""];
        let checks = metric(&text, "switchyard_postgres_monitor_checks_total", &ok);
        ensure!(
            checks.is_some_and(|n| n >= 1.0),
            "checks of node {i}:\n{text}"
        );
        if i > 0 {
            for name in [
                "switchyard_postgres_replica_lag_bytes",
                "switchyard_postgres_replica_lag_seconds",
            ] {
                let v = metric(&text, name, &labels[..2]);
                ensure!(v.is_some_and(|v| v < 1e6), "{name} of node {i}:\n{text}");
            }
        }
    }
    Ok(())
}

#[test]
fn a_stopped_replica_is_marked_down_and_comes_back_when_started() -> anyhow::Result<()> {
    let Some((mut pg, router)) = setup()? else {
        return Ok(());
    };
    wait_all_healthy(&router)?;

    let stopped = Instant::now();
    pg.stop(1);
    let due = INTERVAL * THRESHOLD + MARGIN;
    let down = eventually(due, || {
        let n = node(&router, 1)?;
        ensure!(n["down"] == true, "not down yet: {n}");
        Ok(n)
    })?;
    let took = stopped.elapsed();
    eprintln!("replica marked down {took:?} after the stop: {down}");
    ensure!(down["reachable"] == false, "{down}");
    ensure!(down["consecutive_failures"].as_u64() >= Some(THRESHOLD.into()));
    let kind = down["last_error"]["kind"].as_str().unwrap_or("");
    ensure!(
        ["refused", "admin_shutdown"].contains(&kind),
        "a stopped server is refused (or said it shut down): {down}"
    );
    let other = node(&router, 2)?;
    ensure!(
        other["reachable"] == true && other["down"] == false,
        "{other}"
    );
    let text = router.sy.metrics()?;
    let port = format!("node=\"127.0.0.1:{}\"", pg.node(1).port);
    let up = metric(&text, "switchyard_postgres_node_up", &[&port]);
    ensure!(up == Some(0.0), "node_up of the stopped replica: {up:?}");

    let started = Instant::now();
    pg.restart(1)?;
    let back = eventually(Duration::from_secs(10), || {
        let n = node(&router, 1)?;
        ensure!(
            n["reachable"] == true && n["down"] == false && n["streaming"] == true,
            "not back yet: {n}"
        );
        Ok(n)
    })?;
    eprintln!(
        "replica back {:?} after the restart began: {back}",
        started.elapsed()
    );
    ensure!(
        back["last_error"]["kind"].is_string(),
        "the last error is kept: {back}"
    );
    Ok(())
}

#[test]
fn a_fast_shutdown_is_told_apart_from_a_refused_connection() -> anyhow::Result<()> {
    let Some((mut pg, router)) = setup()? else {
        return Ok(());
    };
    wait_all_healthy(&router)?;
    // SIGINT is PostgreSQL's fast shutdown (`pg_ctl stop -m fast`): sessions get 57P01.
    let pid_file = std::fs::read_to_string(pg.node(1).data_dir.join("postmaster.pid"))?;
    let pid = pid_file.lines().next().unwrap_or("").trim().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()?;
    ensure!(status.success(), "kill -INT {pid}: {status}");
    let label = format!("node=\"127.0.0.1:{}\"", pg.node(1).port);
    let count = |result: &str| -> anyhow::Result<f64> {
        let text = router.sy.metrics()?;
        let result = format!("result=\"{result}\"");
        Ok(metric(
            &text,
            "switchyard_postgres_monitor_checks_total",
            &[&label, &result],
        )
        .unwrap_or(0.0))
    };
    eventually(INTERVAL * THRESHOLD + MARGIN, || {
        let n = node(&router, 1)?;
        ensure!(n["down"] == true, "not down yet: {n}");
        ensure!(
            count("admin_shutdown")? >= 1.0,
            "no admin_shutdown check: {n}"
        );
        ensure!(count("refused")? >= 1.0, "no refused check after it: {n}");
        Ok(())
    })?;
    // Reap the postmaster that exited, and start it again.
    pg.stop(1);
    pg.restart(1)?;
    wait_all_healthy(&router)?;
    Ok(())
}

#[test]
fn a_replica_with_replay_paused_shows_its_lag_growing() -> anyhow::Result<()> {
    let Some((pg, router)) = setup()? else {
        return Ok(());
    };
    wait_all_healthy(&router)?;
    pg.psql(2, "select pg_wal_replay_pause()")?;
    pg.psql(0, "create table filler (x int, pad text)")?;
    let write = || {
        pg.psql(
            0,
            "insert into filler select g, repeat('x', 100) from generate_series(1, 20000) g",
        )
    };

    write()?;
    let first = eventually(Duration::from_secs(10), || {
        let n = node(&router, 2)?;
        ensure!(lag_bytes(&n)? > 1024 * 1024, "lag not over 1 MiB yet: {n}");
        Ok(n)
    })?;
    let (bytes1, secs1) = (lag_bytes(&first)?, first["lag_seconds"].as_f64());
    ensure!(secs1.is_some_and(|s| s > 0.0), "{first}");
    write()?;
    let second = eventually(Duration::from_secs(10), || {
        let n = node(&router, 2)?;
        ensure!(lag_bytes(&n)? > bytes1 + 1024 * 1024, "lag not grown: {n}");
        ensure!(
            n["lag_seconds"].as_f64() > secs1,
            "lag in seconds not grown: {n}"
        );
        Ok(n)
    })?;
    eprintln!("paused replica: {first}\nthen: {second}");
    ensure!(
        second["reachable"] == true && second["down"] == false,
        "{second}"
    );

    // The other replica keeps up.
    eventually(Duration::from_secs(10), || {
        let n = node(&router, 1)?;
        ensure!(lag_bytes(&n)? < 1024 * 1024, "replica 1 lags: {n}");
        Ok(())
    })?;
    let text = router.sy.metrics()?;
    let port = format!("node=\"127.0.0.1:{}\"", pg.node(2).port);
    let gauge = metric(&text, "switchyard_postgres_replica_lag_bytes", &[&port]);
    ensure!(gauge.is_some_and(|b| b > 1e6), "lag gauge: {gauge:?}");

    pg.psql(2, "select pg_wal_replay_resume()")?;
    eventually(Duration::from_secs(10), || {
        let n = node(&router, 2)?;
        ensure!(
            lag_bytes(&n)? == 0 && n["lag_seconds"] == 0.0,
            "not caught up: {n}"
        );
        Ok(())
    })
    .context("after pg_wal_replay_resume()")
}

#[test]
fn nodes_removed_and_added_by_a_reload_stop_and_start_being_checked() -> anyhow::Result<()> {
    let Some((pg, router)) = setup()? else {
        return Ok(());
    };
    wait_all_healthy(&router)?;
    let sy = &router.sy;
    let full = sy.config_text()?;
    let entry = format!(
        ", {{ addr = \"127.0.0.1:{}\", role = \"replica\" }}",
        pg.node(2).port
    );
    ensure!(full.contains(&entry), "{full}");
    let label = format!("node=\"127.0.0.1:{}\"", pg.node(2).port);
    // Every check of replica 2, whatever its result.
    let checks = || -> anyhow::Result<f64> {
        let text = sy.metrics()?;
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("switchyard_postgres_monitor_checks_total{"))
            .filter(|l| l.contains(&label))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum();
        ensure!(total > 0.0, "no checks of replica 2:\n{text}");
        Ok(total)
    };

    replace_config(sy.config_path(), &full.replace(&entry, ""))?;
    eventually(Duration::from_secs(10), || {
        ensure!(sy.version()? == 2, "not reloaded");
        Ok(())
    })?;
    let s = router.cluster_status()?;
    ensure!(s["nodes"].as_array().map(Vec::len) == Some(2), "{s}");
    // The supervisor notices within 250 ms and stops the loop, even mid-check.
    std::thread::sleep(Duration::from_millis(1000));
    let stopped_at = checks()?;
    consistently(Duration::from_millis(800), || {
        ensure!(checks()? == stopped_at, "replica 2 is still checked");
        Ok(())
    })?;

    replace_config(sy.config_path(), &full)?;
    eventually(Duration::from_secs(10), || {
        ensure!(sy.version()? == 3, "not reloaded");
        ensure!(checks()? > stopped_at, "replica 2 is not checked again");
        Ok(())
    })?;
    wait_all_healthy(&router)?;
    Ok(())
}

/// Replace the config file at once (write beside it, rename over it).
fn replace_config(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
