//! The control API, end to end: tokens and roles, secret redaction, `If-Match`, dry runs,
//! rollback, the audit log, persistence of API changes across a restart, and metrics.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use support::config::{secrets, Conf, ADMIN, OPERATOR, PG_PASSWORD, VIEWER};
use support::{consistently, live_backend, metric, Request, Response, Switchyard};

fn start() -> anyhow::Result<Switchyard> {
    Switchyard::start(|p| Conf::new(p).render())
}

/// `PUT /v1/config` as admin with `If-Match`.
fn put(sy: &Switchyard, text: &str, if_match: u64) -> anyhow::Result<Response> {
    sy.send(
        Request::put("/v1/config", text)
            .bearer(ADMIN)
            .if_match(if_match),
    )
}

/// A `PUT` that must apply; returns the new version.
fn put_ok(sy: &Switchyard, text: &str, if_match: u64) -> anyhow::Result<u64> {
    let r = put(sy, text, if_match)?;
    ensure!(r.status == 200, "PUT: {}", r.describe());
    let v = r.json()?;
    ensure!(v["result"] == "applied", "PUT: {v}");
    v["version"].as_u64().context("version")
}

fn get(sy: &Switchyard, path: &str, token: &str) -> anyhow::Result<Response> {
    sy.send(Request::get(path).bearer(token))
}

#[test]
fn missing_or_wrong_token_is_401_with_www_authenticate() -> anyhow::Result<()> {
    let sy = start()?;
    assert_eq!(sy.send(Request::get("/health"))?.status, 200);
    for path in ["/v1/status", "/v1/config", "/v1/config/history", "/metrics"] {
        let bad = [
            Request::get(path),
            Request::get(path).bearer("not-a-token"),
            Request::get(path).header("Authorization", format!("Basic {VIEWER}")),
            Request::get(path).header("Authorization", "Bearer"),
        ];
        for req in bad {
            let r = sy.send(req.clone())?;
            assert_eq!(r.status, 401, "{req:?}: {}", r.describe());
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"switchyard\""),
                "{req:?}"
            );
            assert!(r.json()?["error"].is_string());
        }
    }
    let r = sy.send(Request::put(
        "/v1/config",
        Conf::new(sy.port()).backend(9002).render(),
    ))?;
    assert_eq!(r.status, 401);
    assert_eq!(sy.version()?, 1);
    Ok(())
}

#[test]
fn viewer_reads_but_cannot_change() -> anyhow::Result<()> {
    let sy = start()?;
    for path in [
        "/v1/status",
        "/v1/config",
        "/v1/config?format=json",
        "/v1/config/history",
        "/v1/config/history/1",
        "/metrics",
    ] {
        let r = get(&sy, path, VIEWER)?;
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
    }
    let text = Conf::new(sy.port()).backend(9002).render();
    for token in [VIEWER, OPERATOR] {
        let r = sy.send(Request::put("/v1/config", text.as_str()).bearer(token))?;
        assert_eq!(r.status, 403, "{}", r.describe());
        let r = sy.send(Request::post("/v1/config/rollback", r#"{"version":1}"#).bearer(token))?;
        assert_eq!(r.status, 403, "{}", r.describe());
    }
    assert_eq!(sy.version()?, 1);
    assert_eq!(sy.config_text()?, Conf::new(sy.port()).render());
    Ok(())
}

/// Fail if any secret of the test config is in `what`, or nothing is shown redacted.
fn assert_no_secrets(label: &str, what: &str) {
    for secret in secrets() {
        assert!(
            !what.contains(&secret),
            "{label} shows secret {secret}:\n{what}"
        );
    }
}

#[test]
fn secrets_never_leave_the_process() -> anyhow::Result<()> {
    let sy = start()?;
    // A second version with another password, so history and diffs have two to leak.
    let v2_text = Conf::new(sy.port())
        .render()
        .replace(PG_PASSWORD, "second-secret-pw");
    let r = put(&sy, &v2_text, 1)?;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(!r.text().contains("second-secret-pw"), "{}", r.text());
    assert_no_secrets("PUT response", &r.text());
    // The password change is reported, by key only.
    let body = r.json()?;
    let change = body["changes"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["path"] == "postgres.clusters[0].users[0].password")
        })
        .with_context(|| format!("password change not listed: {body}"))?;
    assert_eq!(
        (&change["op"], &change["from"], &change["to"]),
        (
            &"changed".into(),
            &"<redacted>".into(),
            &"<redacted>".into()
        )
    );

    let toml = get(&sy, "/v1/config", VIEWER)?.text();
    assert!(
        toml.contains("<redacted>") && toml.contains("name = \"app\""),
        "{toml}"
    );
    assert!(!toml.contains("second-secret-pw"), "{toml}");
    for path in [
        "/v1/config",
        "/v1/config?format=json",
        "/v1/config/history",
        "/v1/config/history/1",
        "/v1/config/history/2",
        "/v1/status",
    ] {
        let body = get(&sy, path, VIEWER)?.text();
        assert_no_secrets(path, &body);
        assert!(!body.contains("second-secret-pw"), "{path}: {body}");
    }
    let json = get(&sy, "/v1/config?format=json", VIEWER)?.json()?;
    assert_eq!(
        json["postgres"]["clusters"][0]["users"][0]["password"],
        "<redacted>"
    );
    assert_eq!(
        json["control"]["tokens"][0]["credential"]["sha256"],
        "<redacted>"
    );
    assert!(get(&sy, "/v1/config/history/1", VIEWER)?
        .text()
        .contains("<redacted>"));

    let dry = sy.send(
        Request::put("/v1/config?dry_run=true", Conf::new(sy.port()).render()).bearer(ADMIN),
    )?;
    assert_no_secrets("dry run", &dry.text());
    assert!(!dry.text().contains("second-secret-pw"), "{}", dry.text());
    let audit = std::fs::read_to_string(sy.conf_dir().join(support::config::AUDIT_LOG))?;
    assert_no_secrets("audit log", &audit);
    Ok(())
}

#[test]
fn put_honours_if_match_and_moves_the_etag() -> anyhow::Result<()> {
    let sy = start()?;
    let r = get(&sy, "/v1/config", VIEWER)?;
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("content-type"), Some("application/toml"));
    let v2_text = Conf::new(sy.port()).backend(9002).render();

    let stale = put(&sy, &v2_text, 7)?;
    assert_eq!(stale.status, 412, "{}", stale.describe());
    assert_eq!(stale.header("etag"), Some("\"1\""));
    assert_eq!(sy.version()?, 1);

    let ok = put(&sy, &v2_text, 1)?;
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(ok.header("etag"), Some("\"2\""));
    let body = ok.json()?;
    assert_eq!(
        (body["version_before"].as_u64(), body["version"].as_u64()),
        (Some(1), Some(2))
    );

    let r = get(&sy, "/v1/config", VIEWER)?;
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert!(r.text().contains("127.0.0.1:9002"), "{}", r.text());
    let s = sy.status()?;
    assert_eq!(
        (s["version"].as_u64(), s["source"].as_str()),
        (Some(2), Some("api"))
    );
    assert_eq!(s["applied_by"], "admin");
    assert_eq!(live_backend(&s), "127.0.0.1:9002");
    // The change is written back to the file, byte for byte.
    assert_eq!(sy.config_text()?, v2_text);

    // The old ETag is now stale.
    let again = put(&sy, &Conf::new(sy.port()).backend(9003).render(), 1)?;
    assert_eq!(again.status, 412, "{}", again.describe());
    assert_eq!(again.header("etag"), Some("\"2\""));
    assert_eq!(sy.version()?, 2);
    Ok(())
}

/// Issue 15: RFC 9110 §13.1.1. A tag that is no current version (`"abc"`), or any weak tag
/// (the comparison is strong), fails the precondition: 412 with the current ETag, not 400.
/// `*` matches the running config; a list matches when one of its strong tags does; only
/// text that is not entity-tag syntax is a 400.
#[test]
fn if_match_compares_strongly_and_fails_with_412() -> anyhow::Result<()> {
    let sy = start()?;
    let put_with = |text: &str, if_match: &str| {
        sy.send(
            Request::put("/v1/config", text)
                .bearer(ADMIN)
                .header("If-Match", if_match),
        )
    };
    let v2_text = Conf::new(sy.port()).backend(9002).render();
    for tag in ["\"abc\"", "W/\"1\"", "W/\"2\"", "\"01\"", "W/\"1\", \"zz\""] {
        let r = put_with(&v2_text, tag)?;
        assert_eq!(r.status, 412, "If-Match: {tag}: {}", r.describe());
        assert_eq!(r.header("etag"), Some("\"1\""), "If-Match: {tag}");
        assert!(r.json()?["error"].is_string(), "If-Match: {tag}");
    }
    for bad in ["abc", "\"1", "\"1\" \"2\"", "*, \"1\""] {
        let r = put_with(&v2_text, bad)?;
        assert_eq!(r.status, 400, "If-Match: {bad}: {}", r.describe());
    }
    assert_eq!(sy.version()?, 1);

    let r = put_with(&v2_text, "\"7\", W/\"1\", \"1\"")?;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("etag"), Some("\"2\""));
    let r = put_with(&Conf::new(sy.port()).backend(9003).render(), "*")?;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(sy.version()?, 3);
    let audit = sy.audit()?;
    let refused = audit
        .iter()
        .filter(|l| l["action"] == "config.put" && l["result"] == "rejected")
        .count();
    assert_eq!(refused, 9, "every refused attempt is audited: {audit:?}");
    Ok(())
}

#[test]
fn dry_run_lists_changes_and_changes_nothing() -> anyhow::Result<()> {
    let sy = start()?;
    let before = sy.status()?;
    let file_before = sy.config_text()?;
    let r = sy.send(
        Request::put(
            "/v1/config?dry_run=true",
            Conf::new(sy.port()).backend(9002).render(),
        )
        .bearer(ADMIN)
        .if_match(1),
    )?;
    assert_eq!(r.status, 200, "{}", r.describe());
    let body = r.json()?;
    assert_eq!(body["result"], "dry_run");
    let changes = body["changes"].as_array().context("changes")?;
    let change = changes
        .iter()
        .find(|c| c["path"] == "http.upstreams.api.pools.blue.backends[0].addr")
        .with_context(|| format!("backend change missing from {changes:?}"))?;
    assert_eq!(change["op"], "changed");
    assert_eq!(change["from"], "127.0.0.1:9001");
    assert_eq!(change["to"], "127.0.0.1:9002");
    assert_eq!(changes.len(), 1, "{changes:?}");

    let after = sy.status()?;
    assert_eq!(after["version"], 1);
    assert_eq!(after["hash"], before["hash"]);
    assert_eq!(live_backend(&after), "127.0.0.1:9001");
    assert_eq!(sy.config_text()?, file_before);
    assert_eq!(
        get(&sy, "/v1/config", VIEWER)?.header("etag"),
        Some("\"1\"")
    );
    Ok(())
}

/// History lines, newest first, as `(version, source)`.
fn history(sy: &Switchyard) -> anyhow::Result<Vec<(u64, String)>> {
    let h = get(sy, "/v1/config/history", VIEWER)?.json()?;
    h["history"]
        .as_array()
        .context("history is a list")?
        .iter()
        .map(|l| {
            Ok((
                l["version"].as_u64().context("version")?,
                l["source"].as_str().context("source")?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn rollback_restores_an_earlier_version() -> anyhow::Result<()> {
    let sy = start()?;
    let v1 = sy.status()?;
    let v1_text = sy.config_text()?;
    assert_eq!(
        put_ok(&sy, &Conf::new(sy.port()).backend(9002).render(), 1)?,
        2
    );
    assert_eq!(
        put_ok(&sy, &Conf::new(sy.port()).backend(9003).render(), 2)?,
        3
    );

    let r = sy.send(Request::post("/v1/config/rollback", r#"{"version": 1}"#).bearer(ADMIN))?;
    assert_eq!(r.status, 200, "{}", r.describe());
    let body = r.json()?;
    assert_eq!(body["result"], "applied");
    assert_eq!(body["version"], 4);
    assert_eq!(body["hash"], v1["hash"]);

    let s = sy.status()?;
    assert_eq!(s["version"], 4);
    assert_eq!(s["hash"], v1["hash"]);
    assert_eq!(s["source"], "rollback");
    assert_eq!(live_backend(&s), "127.0.0.1:9001");
    assert_eq!(
        history(&sy)?,
        vec![
            (4, "rollback".to_string()),
            (3, "api".to_string()),
            (2, "api".to_string()),
            (1, "startup".to_string()),
        ]
    );
    let h = get(&sy, "/v1/config/history", VIEWER)?.json()?;
    assert_eq!(h["history"][0]["hash"], v1["hash"]);
    assert_eq!(h["history"][0]["actor"], "admin");
    assert_eq!(
        get(&sy, "/v1/config/history/4", VIEWER)?.text(),
        get(&sy, "/v1/config/history/1", VIEWER)?.text()
    );
    assert_eq!(sy.config_text()?, v1_text);
    Ok(())
}

/// `(actor, action, result)` of every audit line after the start line.
fn audit_summary(sy: &Switchyard) -> anyhow::Result<Vec<(String, String, String)>> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    Ok(sy
        .audit()?
        .iter()
        .skip(1)
        .map(|l| (s(&l["actor"]), s(&l["action"]), s(&l["result"])))
        .collect())
}

#[test]
fn every_change_attempt_is_audited() -> anyhow::Result<()> {
    let sy = start()?;
    let v2 = Conf::new(sy.port()).backend(9002).render();
    let statuses: Vec<u16> = [
        Request::put("/v1/config", v2.as_str()),
        Request::put("/v1/config", v2.as_str()).bearer("wrong"),
        Request::put("/v1/config", v2.as_str()).bearer(VIEWER),
        Request::post("/v1/config/rollback", r#"{"version":1}"#).bearer(OPERATOR),
        Request::put("/v1/config", v2.as_str())
            .bearer(ADMIN)
            .if_match(9),
        Request::put("/v1/config", "[http\n").bearer(ADMIN),
        Request::put("/v1/config?dry_run=true", v2.as_str()).bearer(ADMIN),
        Request::put("/v1/config", v2.as_str())
            .bearer(ADMIN)
            .if_match(1),
        Request::post("/v1/config/rollback", r#"{"version":99}"#).bearer(ADMIN),
        Request::post("/v1/config/rollback", r#"{"version":1}"#).bearer(ADMIN),
    ]
    .into_iter()
    .map(|req| sy.send(req).map(|r| r.status))
    .collect::<anyhow::Result<_>>()?;
    assert_eq!(statuses, [401, 401, 403, 403, 412, 400, 200, 200, 404, 200]);

    let owned = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        audit_summary(&sy)?,
        vec![
            owned("(unauthenticated)", "config.put", "denied"),
            owned("(unauthenticated)", "config.put", "denied"),
            owned("viewer", "config.put", "denied"),
            owned("operator", "config.rollback", "denied"),
            owned("admin", "config.put", "rejected"),
            owned("admin", "config.put", "rejected"),
            owned("admin", "config.put.dry_run", "dry_run"),
            owned("admin", "config.put", "applied"),
            owned("admin", "config.rollback", "rejected"),
            owned("admin", "config.rollback", "applied"),
        ]
    );
    let lines = sy.audit()?;
    assert_eq!(lines[0]["action"], "start");
    for l in &lines[1..] {
        assert!(
            l["remote"]
                .as_str()
                .is_some_and(|r| r.starts_with("127.0.0.1:")),
            "{l}"
        );
        assert!(l["time"].is_string(), "{l}");
    }
    let applied = &lines[8];
    assert_eq!(
        (
            applied["version_before"].as_u64(),
            applied["version_after"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert!(
        lines[5]["error"]
            .as_str()
            .is_some_and(|e| e.contains("version is 1, not 9")),
        "{}",
        lines[5]
    );
    assert!(
        lines[6]["error"]
            .as_str()
            .is_some_and(|e| e.contains("syntax")),
        "{}",
        lines[6]
    );
    Ok(())
}

#[test]
fn api_change_survives_restart_and_the_watcher_keeps_it() -> anyhow::Result<()> {
    // Re-check the file often, so the watcher has every chance to undo the change.
    let mut sy = Switchyard::start(|p| Conf::new(p).check_interval("100ms").render())?;
    let v2_text = Conf::new(sy.port())
        .backend(9002)
        .check_interval("100ms")
        .render();
    assert_eq!(put_ok(&sy, &v2_text, 1)?, 2);
    let hash = sy.status()?["hash"].clone();
    consistently(Duration::from_secs(1), || {
        let s = sy.status()?;
        ensure!(
            s["version"] == 2 && s["hash"] == hash,
            "the watcher changed the config: {s}"
        );
        Ok(())
    })?;
    assert!(
        sy.audit()?.iter().all(|l| l["action"] != "config.reload"),
        "the watcher re-applied the API's own write"
    );

    // The state file beside the config (the default) keeps the version and the history.
    assert!(sy.config_path().with_extension("state.json").exists());
    sy.restart()?;
    let s = sy.status()?;
    assert_eq!(s["version"], 2, "{s}");
    assert_eq!(s["hash"], hash);
    assert_eq!(live_backend(&s), "127.0.0.1:9002");
    assert_eq!(sy.config_text()?, v2_text);
    let versions: Vec<u64> = history(&sy)?.into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, [2, 1]);
    Ok(())
}

#[test]
fn with_the_state_file_off_a_restart_starts_again_at_version_1() -> anyhow::Result<()> {
    let conf = |p: u16, backend: u16| {
        format!(
            "{}\n[store]\nstate_file = \"off\"\n",
            Conf::new(p).backend(backend).render()
        )
    };
    let mut sy = Switchyard::start(|p| conf(p, 9001))?;
    let v2_text = conf(sy.port(), 9002);
    assert_eq!(put_ok(&sy, &v2_text, 1)?, 2);
    sy.restart()?;
    let s = sy.status()?;
    assert_eq!(s["version"], 1, "{s}");
    assert_eq!(s["source"], "startup");
    assert_eq!(live_backend(&s), "127.0.0.1:9002");
    assert!(
        !sy.config_path().with_extension("state.json").exists(),
        "a state file was written"
    );
    Ok(())
}

#[test]
fn metrics_count_reloads_and_show_the_version() -> anyhow::Result<()> {
    let sy = start()?;
    put_ok(&sy, &Conf::new(sy.port()).backend(9002).render(), 1)?;
    assert_eq!(put(&sy, "[http\n", 2)?.status, 400);
    let r = get(&sy, "/metrics", VIEWER)?;
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let m = r.text();
    let reloads = |result: &str| {
        metric(
            &m,
            "switchyard_control_reloads_total",
            &["source=\"api\"", &format!("result=\"{result}\"")],
        )
    };
    assert_eq!(reloads("applied"), Some(1.0), "{m}");
    assert_eq!(reloads("rejected"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "switchyard_control_config_version", &[]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "switchyard_control_apply_duration_seconds_count",
            &["source=\"api\""]
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        m.contains("switchyard_control_apply_duration_seconds_bucket"),
        "{m}"
    );
    Ok(())
}

#[test]
fn token_from_the_environment() -> anyhow::Result<()> {
    let token = "e2e-env-admin-token";
    let sy = Switchyard::start_with(&[("SWITCHYARD_E2E_TOKEN", token)], &|dir, port| {
        let text = format!(
            "{}\n[[control.tokens]]\nname = \"from-env\"\nrole = \"admin\"\nenv = \"SWITCHYARD_E2E_TOKEN\"\n",
            Conf::new(port).render()
        );
        let path = dir.join("switchyard.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    })?;
    let r = get(&sy, "/v1/status", token)?;
    assert_eq!(r.status, 200, "{}", r.describe());
    let env_name = get(&sy, "/v1/config?format=json", token)?.json()?;
    assert_eq!(
        env_name["control"]["tokens"][3]["credential"]["env"],
        "SWITCHYARD_E2E_TOKEN"
    );
    Ok(())
}

#[test]
fn a_redacted_config_put_back_keeps_its_secrets() -> anyhow::Result<()> {
    let sy = start()?;
    let got = get(&sy, "/v1/config", VIEWER)?;
    ensure!(got.status == 200, "GET: {}", got.describe());
    let redacted = String::from_utf8(got.body.clone())?;
    ensure!(
        redacted.contains("<redacted>"),
        "nothing redacted: {redacted}"
    );
    // Put the fetched text back unchanged: the secrets come from the running config.
    let r = put(&sy, &redacted, 1)?;
    ensure!(r.status == 200, "PUT: {}", r.describe());
    ensure!(r.json()?["result"] == "unchanged", "PUT: {}", r.describe());
    // And with an edit: the change applies, the admin token still works.
    let edited = redacted.replace("history_limit = 50", "history_limit = 40");
    let edited = if edited == redacted {
        format!("{redacted}\n")
    } else {
        edited
    };
    let r = put(&sy, &edited, 1)?;
    ensure!(r.status == 200, "PUT edited: {}", r.describe());
    let status = get(&sy, "/v1/status", ADMIN)?;
    ensure!(
        status.status == 200,
        "admin token lost: {}",
        status.describe()
    );
    Ok(())
}
