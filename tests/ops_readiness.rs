//! How Switchyard tells a service manager about itself, end to end with the real binary:
//!
//! - systemd's `Type=notify` protocol: with `$NOTIFY_SOCKET` set to a datagram socket the
//!   test binds, `READY=1` arrives once the control API and the HTTP listener both serve (each
//!   answers at the first try right after it arrives), and `STOPPING=1` on SIGTERM; after
//!   `switchyard upgrade` the new process sends `MAINPID=` with its pid and `READY=1`, and
//!   the old one, draining, sends no `STOPPING=1` (the unit is not stopping).
//! - `switchyard --version` names the git commit the binary was built from.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use support::config::control_section;
use support::http::Request;
use support::{free_port, Switchyard};

/// Wait for the next datagram on `socket`, as text.
fn next_message(socket: &UnixDatagram) -> anyhow::Result<String> {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .context("no message from switchyard on NOTIFY_SOCKET")?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Switchyard with an HTTP listener and `$NOTIFY_SOCKET` set to a datagram socket the test
/// reads: the directory holding the socket, the socket, the process, the HTTP port.
fn notified() -> anyhow::Result<(tempfile::TempDir, UnixDatagram, Switchyard, u16)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path)?;
    socket.set_read_timeout(Some(Duration::from_secs(30)))?;
    let http_port = free_port()?;
    let sy = Switchyard::start_with(
        &[("NOTIFY_SOCKET", path.to_str().context("socket path")?)],
        &|conf, port| {
            let file = conf.join("switchyard.toml");
            let text = control_section(port, "10s", "50ms")
                + &support::proxy::listener(http_port)
                + "\n[http.upstreams.api.pools.blue]\nbackends = [\"127.0.0.1:9\"]\n\n\
                   [[http.routes]]\nupstream = \"api\"\n";
            std::fs::write(&file, text)?;
            Ok(file)
        },
    )?;
    Ok((dir, socket, sy, http_port))
}

#[test]
fn ready_is_sent_once_every_listener_serves_and_stopping_on_sigterm() -> anyhow::Result<()> {
    let (_dir, socket, sy, http_port) = notified()?;
    let ready = next_message(&socket)?;
    ensure!(
        ready.lines().any(|l| l == "READY=1"),
        "expected READY=1, got {ready:?}"
    );
    ensure!(
        ready.contains("STATUS=serving config version 1"),
        "{ready:?}"
    );
    // Both answer at once: no retry here.
    let control = sy.send(Request::get("/health"))?;
    ensure!(control.status == 200, "control API: {}", control.describe());
    let http = Request::get("/health").send(([127, 0, 0, 1], http_port).into())?;
    ensure!(http.status == 200, "HTTP listener: {}", http.describe());

    sy.signal("TERM")?;
    let stopping = next_message(&socket)?;
    ensure!(
        stopping.lines().any(|l| l == "STOPPING=1"),
        "expected STOPPING=1, got {stopping:?}"
    );
    Ok(())
}

#[test]
fn an_upgraded_process_takes_over_as_the_main_pid() -> anyhow::Result<()> {
    let (_dir, socket, sy, http_port) = notified()?;
    let old = sy.pid()?;
    let first = next_message(&socket)?;
    ensure!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    let ups = support::upgrade::Upgrades::default();
    let out = ups.run(sy.config_path(), &[])?;
    ensure!(out.ok, "{out:?}");
    let new = out.pid.context("no new pid")?;
    let took_over = next_message(&socket)?;
    ensure!(
        took_over.lines().any(|l| l == format!("MAINPID={new}"))
            && took_over.lines().any(|l| l == "READY=1"),
        "expected MAINPID={new} and READY=1, got {took_over:?}"
    );
    support::upgrade::wait_gone(old, Duration::from_secs(20))?;
    socket.set_read_timeout(Some(Duration::from_millis(300)))?;
    ensure!(
        next_message(&socket).is_err(),
        "the old process told the service manager something while it drained"
    );
    let http = Request::get("/health").send(([127, 0, 0, 1], http_port).into())?;
    ensure!(http.status == 200, "HTTP listener: {}", http.describe());
    Ok(())
}

#[test]
fn version_names_the_git_commit() -> anyhow::Result<()> {
    let out = Command::new(support::BIN).arg("--version").output()?;
    ensure!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = text
        .strip_prefix(concat!(
            "switchyard ",
            env!("CARGO_PKG_VERSION"),
            " (commit "
        ))
        .and_then(|rest| rest.strip_suffix(')'))
        .with_context(|| format!("unexpected --version output {text:?}"))?;
    // The checkout the test was built from, when there is one (and git to ask).
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match (std::env::var("SWITCHYARD_GIT_COMMIT"), head) {
        (Ok(given), _) if !given.trim().is_empty() => ensure!(commit == given.trim(), "{text}"),
        (_, Some(head)) => ensure!(commit == head, "--version says {commit}, HEAD is {head}"),
        _ => ensure!(commit == "unknown", "{text}"),
    }
    Ok(())
}
