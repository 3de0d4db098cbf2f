//! `switchyard upgrade` end to end: the real binary, real HTTP backends on 127.0.0.1.
//!
//! - Five upgrades in a row under steady keep-alive load: no failed request, no refused
//!   connection, each old process drained and gone.
//! - A 5-second response that started before an upgrade completes after it (with
//!   `Connection: close`), then the old process exits.
//! - A broken config in the new process: the command fails with the key path; the old one
//!   goes on serving.
//! - A new process SIGKILLed while it holds the handed-over sockets: the command says so;
//!   the old one goes on serving.
//! - With `store.state_file`, the new process resumes the applied version and the history.
//! - A new listener on a port that is taken: the command names the key; the old process
//!   goes on serving.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use support::backend::Backend;
use support::config::{Conf, VIEWER};
use support::conn::Conn;
use support::fleet::put_ok;
use support::proxy::{one_upstream, Proxy};
use support::upgrade::{alive, quantile, wait_gone, KeepAliveLoad, Upgrades};
use support::{eventually, live_backend, Request, Switchyard, BIN};

/// How long an old process may take to drain and exit once the new one serves.
const DRAIN: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(20);

fn proxy_to(backend: &Backend) -> anyhow::Result<Proxy> {
    let addr = backend.addr();
    Proxy::start(move |_, port| Ok(one_upstream(port, addr, "", "")))
}

#[test]
fn five_upgrades_under_keepalive_load_fail_no_request() -> anyhow::Result<()> {
    let backend = Backend::start("b1")?;
    let proxy = proxy_to(&backend)?;
    let ups = Upgrades::default();
    let load = KeepAliveLoad::start(proxy.http_addr(), 4, "/");
    load.wait_for(300, WAIT)?;
    let mut old = proxy.pid()?;
    let mut windows = Vec::new();
    let mut handovers = Vec::new();
    for i in 0..5 {
        let began = Instant::now();
        let out = ups.run(proxy.config_path(), &[])?;
        ensure!(out.ok, "upgrade {i}: {out:?}");
        let new = out.pid.context("the command named no new pid")?;
        ensure!(new != old && alive(new), "upgrade {i}: {out:?}");
        handovers.push(out.took);
        wait_gone(old, DRAIN).with_context(|| format!("upgrade {i}: the old process drains"))?;
        windows.push((began, Instant::now()));
        load.wait_for(300, WAIT)?;
        old = new;
    }
    let tally = load.finish()?;
    tally.ensure_clean()?;
    // Each upgrade closed the kept-alive connections with `Connection: close`.
    ensure!(tally.reopened >= 5, "reopened {}", tally.reopened);
    // The last process is the one that answers, on both listeners.
    ensure!(proxy.get("/")?.status == 200);
    ensure!(proxy.version()? >= 1);
    let during: Vec<Duration> = tally
        .latencies
        .iter()
        .filter(|(t, _)| windows.iter().any(|(a, b)| t >= a && t <= b))
        .map(|(_, l)| *l)
        .collect();
    let outside: Vec<Duration> = tally
        .latencies
        .iter()
        .filter(|(t, _)| !windows.iter().any(|(a, b)| t >= a && t <= b))
        .map(|(_, l)| *l)
        .collect();
    eprintln!(
        "upgrade figures: {} requests, 0 failed, 0 refused, {} reopened; command took {:?}; \
         p99 {:?} during upgrades ({} requests) vs {:?} outside ({} requests); p50 {:?} vs {:?}",
        tally.ok,
        tally.reopened,
        handovers,
        quantile(&during, 0.99),
        during.len(),
        quantile(&outside, 0.99),
        outside.len(),
        quantile(&during, 0.5),
        quantile(&outside, 0.5),
    );
    Ok(())
}

#[test]
fn a_slow_response_started_before_an_upgrade_completes_after_it() -> anyhow::Result<()> {
    let backend = Backend::start("slow")?;
    let proxy = proxy_to(&backend)?;
    let ups = Upgrades::default();
    let old = proxy.pid()?;
    let addr = proxy.http_addr();
    let slow = std::thread::spawn(move || -> anyhow::Result<(u16, Option<String>, Instant)> {
        let mut c = Conn::open(addr)?;
        c.send(b"GET /?delay_ms=5000 HTTP/1.1\r\nHost: upgrade.test\r\n\r\n")?;
        let r = c.response()?;
        Ok((
            r.status,
            r.header("connection").map(str::to_string),
            Instant::now(),
        ))
    });
    eventually(WAIT, || {
        ensure!(
            backend.delayed() == 1,
            "the slow request is not at the backend yet"
        );
        Ok(())
    })?;
    let out = ups.run(proxy.config_path(), &[])?;
    ensure!(out.ok, "{out:?}");
    let upgraded = Instant::now();
    ensure!(
        alive(old),
        "the old process left before its request was answered"
    );
    let (status, connection, answered) = slow
        .join()
        .map_err(|_| anyhow::anyhow!("the slow client panicked"))??;
    ensure!(status == 200, "slow request: {status}");
    ensure!(answered > upgraded, "answered before the upgrade finished");
    ensure!(
        connection.as_deref() == Some("close"),
        "a draining process closes the connection after the response: {connection:?}"
    );
    wait_gone(old, DRAIN)?;
    ensure!(proxy.get("/")?.status == 200);
    Ok(())
}

#[test]
fn a_broken_config_leaves_the_old_process_serving() -> anyhow::Result<()> {
    let backend = Backend::start("b1")?;
    let proxy = proxy_to(&backend)?;
    let ups = Upgrades::default();
    let old = proxy.pid()?;
    let load = KeepAliveLoad::start(proxy.http_addr(), 2, "/");
    load.wait_for(100, WAIT)?;
    let good = proxy.config_text()?;
    let broken = good.replace(&backend.addr().to_string(), "not-an-address");
    ensure!(broken != good);
    let socket =
        support::upgrade::socket_in_log(&proxy.stderr()).context("no upgrade_socket logged")?;
    std::fs::write(proxy.config_path(), broken)?;
    let out = ups.run(proxy.config_path(), &["--socket", &socket])?;
    ensure!(!out.ok, "{out:?}");
    ensure!(
        out.stderr
            .contains("http.upstreams.api.pools.blue.backends[0]")
            && out.stderr.contains("goes on serving"),
        "the error names the key path: {out:?}"
    );
    for pid in out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("started pid "))
    {
        let pid: u32 = pid.split_whitespace().next().unwrap_or("").parse()?;
        wait_gone(pid, WAIT)?;
    }
    load.wait_for(100, WAIT)?;
    ensure!(alive(old));
    load.finish()?.ensure_clean()?;
    // Fixed, the same command goes through.
    std::fs::write(proxy.config_path(), good)?;
    let out = ups.run(proxy.config_path(), &[])?;
    ensure!(out.ok, "{out:?}");
    wait_gone(old, DRAIN)?;
    Ok(())
}

#[test]
fn a_new_process_killed_during_the_handover_leaves_the_old_one_serving() -> anyhow::Result<()> {
    let backend = Backend::start("b1")?;
    let proxy = proxy_to(&backend)?;
    let ups = Upgrades::default();
    let old = proxy.pid()?;
    let dir = proxy.tmp_dir().to_path_buf();
    let pid_file = dir.join("new.pid");
    // The new binary: the real one, holding the sockets it was given for a minute.
    let wrapper = dir.join("hold.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nSWITCHYARD_UPGRADE_PAUSE_MS=60000 exec '{BIN}' \"$@\"\n",
            pid_file.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let load = KeepAliveLoad::start(proxy.http_addr(), 2, "/");
    load.wait_for(100, WAIT)?;
    let binary = wrapper.display().to_string();
    let out = std::thread::scope(|s| -> anyhow::Result<_> {
        let cmd = s.spawn(|| ups.run(proxy.config_path(), &["--binary", &binary]));
        let pid: u32 = eventually(WAIT, || {
            ensure!(
                proxy.stderr().contains("pausing with the taken sockets"),
                "the new process has not taken the sockets yet"
            );
            Ok(std::fs::read_to_string(&pid_file)?.trim().parse()?)
        })?;
        ups.track(pid);
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        ensure!(killed.success());
        cmd.join()
            .map_err(|_| anyhow::anyhow!("the command thread panicked"))?
    })?;
    ensure!(!out.ok, "{out:?}");
    ensure!(out.stderr.contains("killed by signal 9"), "{out:?}");
    load.wait_for(100, WAIT)?;
    ensure!(alive(old));
    load.finish()?.ensure_clean()?;
    Ok(())
}

#[test]
fn the_applied_version_and_history_carry_over_with_a_state_file() -> anyhow::Result<()> {
    let conf = |port: u16, backend: u16| {
        format!(
            "{}\n[store]\nstate_file = \"state.json\"\n",
            Conf::new(port).backend(backend).render()
        )
    };
    let sy = Switchyard::start(|p| conf(p, 9001))?;
    let ups = Upgrades::default();
    let old = sy.pid()?;
    ensure!(put_ok(&sy, &conf(sy.port(), 9002), Some(1))? == 2);
    ensure!(put_ok(&sy, &conf(sy.port(), 9003), Some(2))? == 3);
    let out = ups.run(sy.config_path(), &[])?;
    ensure!(out.ok, "{out:?}");
    wait_gone(old, DRAIN)?;
    // The control API is the new process's now.
    let s = sy.status()?;
    ensure!(
        s["version"] == 3 && live_backend(&s) == "127.0.0.1:9003",
        "{s}"
    );
    let h = sy
        .send(Request::get("/v1/config/history").bearer(VIEWER))?
        .json()?;
    let versions: Vec<u64> = h["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    ensure!(versions == [3, 2, 1], "{h}");
    // And it goes on from there, audited.
    ensure!(put_ok(&sy, &conf(sy.port(), 9004), Some(3))? == 4);
    let audit = sy.audit()?;
    ensure!(
        audit.iter().any(|a| a["version_after"] == 4),
        "no audit line for version 4: {audit:?}"
    );
    Ok(())
}

#[test]
fn a_port_the_new_process_cannot_bind_leaves_the_old_one_serving() -> anyhow::Result<()> {
    let backend = Backend::start("b1")?;
    let proxy = proxy_to(&backend)?;
    let ups = Upgrades::default();
    let old = proxy.pid()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let good = proxy.config_text()?;
    let more =
        format!("{good}\n[[http.listeners]]\nname = \"second\"\naddr = \"127.0.0.1:{port}\"\n");
    let socket =
        support::upgrade::socket_in_log(&proxy.stderr()).context("no upgrade_socket logged")?;
    std::fs::write(proxy.config_path(), more)?;
    let out = ups.run(proxy.config_path(), &["--socket", &socket])?;
    ensure!(!out.ok, "{out:?}");
    ensure!(
        out.stderr.contains("http.listeners[1].addr") && out.stderr.contains("is in use"),
        "{out:?}"
    );
    ensure!(alive(old) && proxy.get("/")?.status == 200);
    drop(taken);
    Ok(())
}
