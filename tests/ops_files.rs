//! The observability and deployment files, checked by the tools their users run:
//!
//! - the Prometheus rules pass `promtool check rules` and their unit tests pass
//!   `promtool test rules` (`deploy/prometheus/*.test.yml`); every PromQL expression of the
//!   Grafana dashboard parses (as recording rules, through `promtool check rules`);
//! - the Dockerfile passes `hadolint`;
//! - the Helm chart renders (Helm's library) for the ingress and the Postgres sidecar values,
//!   lints strictly, validates against the Kubernetes schemas, and its config passes
//!   `switchyard check` (`tests/ops/helm_check.py`);
//! - the systemd unit passes `systemd-analyze verify`, keeps its hardening, and scores as
//!   little exposed in `systemd-analyze security --offline`;
//! - a token whose hash comes from the environment (`sha256_env`, as the chart's Secret gives
//!   it) authenticates against the real binary;
//! - `scripts/release.sh --split` makes a stripped binary that runs, with its symbols apart;
//! - the logrotate config rotates a running Switchyard's access log: logrotate renames it, its
//!   `postrotate` SIGUSR1 makes Switchyard write on in a new file.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{ensure, Context};
use support::backend::Backend;
use support::http::Request;
use support::ops::{repo, tool, venv_tool};
use support::proxy::{one_upstream, Proxy};
use support::{eventually, lines_with};

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() -> anyhow::Result<()> {
    let promtool = tool("promtool")?;
    let dir = repo().join("deploy/prometheus");
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.join("switchyard.rules.yml")))?;
    ensure!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(dir.join("switchyard.rules.test.yml"))
        .current_dir(&dir))?;
    Ok(())
}

#[test]
fn every_dashboard_query_parses() -> anyhow::Result<()> {
    let promtool = tool("promtool")?;
    let path = repo().join("deploy/grafana/switchyard-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    ensure!(exprs.len() > 25, "only {} queries found", exprs.len());
    // Grafana's variables, as Grafana would substitute them.
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": e })
        })
        .collect();
    let file = tempfile::Builder::new().suffix(".yml").tempfile()?;
    // JSON is YAML.
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(file.path(), doc.to_string())?;
    run(Command::new(promtool)
        .args(["check", "rules"])
        .arg(file.path()))?;
    Ok(())
}

/// Every `expr` string in the dashboard (panel targets, annotations), and the variable query.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dockerfile_passes_hadolint() -> anyhow::Result<()> {
    run(Command::new(venv_tool("hadolint")?).arg(repo().join("Dockerfile")))?;
    Ok(())
}

#[test]
fn the_helm_chart_renders_validates_and_carries_a_valid_config() -> anyhow::Result<()> {
    let python = venv_tool("python")?;
    let out_dir = tempfile::tempdir()?;
    let out = run(Command::new(python)
        .arg(repo().join("tests/ops/helm_check.py"))
        .arg(repo().join("deploy/helm/switchyard"))
        .arg(out_dir.path()))?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for case in ["ingress", "ingress-monitored", "postgres-sidecar"] {
        ensure!(summary[case].is_array(), "case {case} missing: {summary}");
        let config = out_dir.path().join(format!("{case}.toml"));
        run(Command::new(support::BIN)
            .args(["check", "--config"])
            .arg(&config))
        .with_context(|| format!("the {case} chart's config"))?;
    }
    ensure!(
        summary["ingress-monitored"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "ServiceMonitor")),
        "{summary}"
    );
    Ok(())
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() -> anyhow::Result<()> {
    let analyze = tool("systemd-analyze")?;
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/switchyard.service"))?;
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        ensure!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // `verify` checks that the binary exists: point the unit at the one just built (the
    // only change), in a directory named like the unit.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("switchyard.service");
    std::fs::write(&path, unit.replace("/usr/bin/switchyard", support::BIN))?;
    let out = run(Command::new(&analyze).arg("verify").arg(&path))?;
    let warnings = String::from_utf8_lossy(&out.stderr);
    ensure!(warnings.trim().is_empty(), "verify warned: {warnings}");
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for switchyard.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("no exposure level in:\n{text}"))?;
    eprintln!("systemd-analyze security: exposure {exposure} (0 best, 10 worst)");
    ensure!(exposure <= 2.0, "exposure {exposure}:\n{text}");
    Ok(())
}

#[test]
fn a_token_hash_from_the_environment_authenticates() -> anyhow::Result<()> {
    let token = "helm-viewer-token-5e1b";
    let hash = support::config::sha256_hex(token);
    let sy = support::Switchyard::start_with(
        &[("SY_TEST_VIEWER_SHA256", &hash)],
        &|dir: &Path, port| {
            let path = dir.join("switchyard.toml");
            std::fs::write(
                &path,
                format!(
                    "[control]\nlisten = \"127.0.0.1:{port}\"\naudit_log = \"audit.jsonl\"\n\n\
                     [[control.tokens]]\nname = \"prometheus\"\nrole = \"viewer\"\n\
                     sha256_env = \"SY_TEST_VIEWER_SHA256\"\n"
                ),
            )?;
            Ok(path)
        },
    )?;
    let r = sy.send(Request::get("/v1/status").bearer(token))?;
    ensure!(r.status == 200, "{}", r.describe());
    let r = sy.send(Request::get("/v1/status").bearer(&hash))?;
    ensure!(
        r.status == 401,
        "the hash itself is not a token: {}",
        r.describe()
    );
    Ok(())
}

#[test]
fn the_release_split_ships_a_stripped_binary_and_keeps_the_symbols() -> anyhow::Result<()> {
    tool("objcopy")?;
    let out_dir = tempfile::tempdir()?;
    run(Command::new(repo().join("scripts/release.sh"))
        .arg("--split")
        .arg(support::BIN)
        .arg(out_dir.path()))?;
    let stripped = out_dir.path().join("switchyard");
    let symbols = out_dir.path().join("switchyard.debug");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len());
    let (built, shipped, kept) = (
        size(Path::new(support::BIN))?,
        size(&stripped)?,
        size(&symbols)?,
    );
    eprintln!("built {built} bytes, shipped {shipped}, symbols {kept}");
    // How much smaller depends on the profile (the test binary has line tables only): the
    // sections below are the real check.
    ensure!(
        shipped < built && kept > 0,
        "the shipped binary is {shipped} of {built} bytes"
    );
    let sections = run(Command::new("readelf").arg("-S").arg(&stripped))?;
    let sections = String::from_utf8_lossy(&sections.stdout);
    ensure!(
        !sections.contains(".debug_info") && !sections.contains(".symtab"),
        "{sections}"
    );
    ensure!(
        sections.contains(".gnu_debuglink"),
        "no link to the symbols"
    );
    let kept_sections = run(Command::new("readelf").arg("-S").arg(&symbols))?;
    ensure!(String::from_utf8_lossy(&kept_sections.stdout).contains(".debug_info"));
    let version = run(Command::new(&stripped).arg("--version"))?;
    ensure!(String::from_utf8_lossy(&version.stdout).contains("(commit "));
    Ok(())
}

#[test]
fn the_logrotate_config_rotates_a_running_access_log() -> anyhow::Result<()> {
    let logrotate = tool("logrotate")?;
    let backend = Backend::start("b")?;
    let proxy = Proxy::start(|dir, port| {
        let log = dir.parent().unwrap_or(dir).join("access.log");
        let keys = format!("access_log = {{ path = \"{}\" }}", log.display());
        Ok(one_upstream(port, backend.addr(), &keys, ""))
    })?;
    let log = proxy.tmp_dir().join("access.log");
    proxy.get_logged("/before/", 3, &log)?;

    // The shipped file, for this log and this process (the only two changes).
    let shipped = std::fs::read_to_string(repo().join("deploy/logrotate/switchyard"))?;
    let (pattern, signal) = (
        "/var/log/switchyard/access*.log",
        "systemctl kill --signal=USR1 switchyard.service",
    );
    ensure!(shipped.contains(pattern) && shipped.contains(signal));
    let conf = shipped
        .replace(pattern, &log.display().to_string())
        .replace(signal, &format!("kill -USR1 {}", proxy.pid()?));
    let conf_path = proxy.tmp_dir().join("logrotate.conf");
    std::fs::write(&conf_path, conf)?;
    run(Command::new(&logrotate)
        .arg("--force")
        .arg("--state")
        .arg(proxy.tmp_dir().join("logrotate.state"))
        .arg(&conf_path))?;
    let rotated = proxy.tmp_dir().join("access.log.1");
    ensure!(lines_with(&rotated, "/before/") == 3, "not rotated");
    eventually(std::time::Duration::from_secs(10), || {
        ensure!(log.exists(), "{} not reopened", log.display());
        Ok(())
    })?;
    proxy.get_logged("/after/", 3, &log)?;
    ensure!(lines_with(&rotated, "/after/") == 0);
    Ok(())
}
