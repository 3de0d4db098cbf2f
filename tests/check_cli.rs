//! `switchyard check`, end to end: every mistake in a config is listed with its key path and
//! line and the exit status is 1; a good config gets a one-line summary and 0; an unreadable
//! file is a clear message and a non-zero status.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::config::{line_of, Conf};

fn check(path: &Path) -> anyhow::Result<Output> {
    Ok(Command::new(support::BIN)
        .arg("check")
        .arg("--config")
        .arg(path)
        .env_remove("SWITCHYARD_CONFIG")
        .output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config with one mistake of each kind, and where each should be reported:
/// `(text the line contains, key path the error must name, words the message must contain)`.
const MISTAKES: &[(&str, &str, &str)] = &[
    (
        "listen = \"not-an-address\"",
        "control.listen",
        "invalid listen address",
    ),
    (
        "reload_debounce = \"soon\"",
        "control.reload_debounce",
        "invalid duration",
    ),
    ("role = \"root\"", "control.tokens[0].role", "unknown value"),
    (
        "sha256 = \"abc\"",
        "control.tokens[0].sha256",
        "64 hex digits",
    ),
    (
        "backends = [\"127.0.0.1:99999\"]",
        "http.upstreams.api.pools.blue.backends[0]",
        "port",
    ),
    (
        "upstream = \"missing\"",
        "http.routes[0].upstream",
        "no upstream named \"missing\"",
    ),
    ("retires = 2", "http.routes[0].retires", "unknown key"),
];

const BAD: &str = r#"[control]
listen = "not-an-address"
reload_debounce = "soon"

[[control.tokens]]
name = "ops"
role = "root"
sha256 = "abc"

[http.upstreams.api.pools.blue]
backends = ["127.0.0.1:99999"]

[[http.routes]]
host = "*"
path_prefix = "/"
upstream = "missing"
retires = 2
"#;

#[test]
fn every_mistake_is_listed_with_key_path_and_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, BAD)?;
    let out = check(&path)?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{} config errors", MISTAKES.len())),
        "{stderr}"
    );
    for (needle, key_path, message) in MISTAKES {
        let line = line_of(BAD, needle).unwrap_or(0);
        let reported = stderr
            .lines()
            .find(|l| l.contains(&format!("line {line}: {key_path}")) && l.contains(message));
        assert!(
            reported.is_some(),
            "no `line {line}: {key_path} … {message}` in:\n{stderr}"
        );
    }
    assert!(text(&out.stdout).is_empty(), "{out:?}");
    Ok(())
}

#[test]
fn a_syntax_error_is_reported_with_its_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("broken.toml");
    let broken = Conf::new(9901)
        .render()
        .replace("[[http.routes]]", "[[http.routes]");
    std::fs::write(&path, &broken)?;
    let out = check(&path)?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = line_of(&broken, "[[http.routes]").unwrap_or(0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("line {line}: (syntax): TOML syntax error")),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn the_example_config_passes_with_a_one_line_summary() -> anyhow::Result<()> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/switchyard.toml");
    let out = check(&example)?;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(": ok: "), "{stdout}");
    for part in [
        "1 listener(s)",
        "1 route(s)",
        "3 backend(s)",
        "1 Postgres cluster(s)",
    ] {
        assert!(stdout.contains(part), "{part} missing from {stdout}");
    }
    Ok(())
}

#[test]
fn a_test_config_passes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, Conf::new(9901).render())?;
    let out = check(&path)?;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("3 control token(s)"), "{out:?}");
    Ok(())
}

#[test]
fn a_missing_file_fails_with_a_clear_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nope.toml");
    let out = check(&path)?;
    assert!(!out.status.success(), "{out:?}");
    assert_ne!(
        out.status.code(),
        Some(1),
        "1 means an invalid config: {out:?}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
    Ok(())
}
