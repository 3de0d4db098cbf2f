//! Live reload from the config file, end to end: however the file is changed (renamed over,
//! written in place, swapped under a Kubernetes `..data` symlink, or reloaded on SIGHUP), the
//! change is a new version within two seconds; a bad edit keeps the old version running and
//! is reported in `/v1/status` with its key path and line; a comment-only edit is no change.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use support::config::{line_of, Conf};
use support::tls::SelfSigned;
use support::{consistently, eventually, live_backend, metric, Switchyard};

/// How soon a file change must be live.
const RELOAD_WITHIN: Duration = Duration::from_secs(2);

/// Replace `path` the way editors do: write a new file beside it, rename it over.
fn rename_over(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("toml.edit-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Overwrite `path`'s content in place (same inode).
fn write_in_place(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Wait until `version` is running with the given backend port.
fn wait_for(sy: &Switchyard, version: u64, backend: u16) -> anyhow::Result<Value> {
    let want = format!("127.0.0.1:{backend}");
    eventually(RELOAD_WITHIN, || {
        let s = sy.status()?;
        ensure!(
            s["version"] == version && live_backend(&s) == want,
            "want version {version} with backend {want}; status has version {} backend {} error {}",
            s["version"],
            live_backend(&s),
            s["last_reload_error"]
        );
        Ok(s)
    })
}

/// The reload error shown in `/v1/status`, once there is one.
fn wait_for_error(sy: &Switchyard) -> anyhow::Result<Value> {
    eventually(RELOAD_WITHIN, || {
        let s = sy.status()?;
        ensure!(!s["last_reload_error"].is_null(), "no reload error yet");
        Ok(s)
    })
}

#[test]
fn rename_over_is_a_new_version() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let v1 = sy.status()?;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["source"], "startup");

    rename_over(
        sy.config_path(),
        &Conf::new(sy.port()).backend(9002).render(),
    )?;
    let v2 = wait_for(&sy, 2, 9002)?;
    assert_eq!(v2["source"], "file");
    assert_eq!(v2["applied_by"], "file");
    assert_ne!(v2["hash"], v1["hash"]);
    assert!(v2["last_reload_error"].is_null(), "{v2}");

    rename_over(
        sy.config_path(),
        &Conf::new(sy.port()).backend(9003).render(),
    )?;
    wait_for(&sy, 3, 9003)?;
    Ok(())
}

#[test]
fn in_place_write_is_a_new_version() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    write_in_place(
        sy.config_path(),
        &Conf::new(sy.port()).backend(9002).render(),
    )?;
    let v2 = wait_for(&sy, 2, 9002)?;
    assert_eq!(v2["source"], "file");
    write_in_place(
        sy.config_path(),
        &Conf::new(sy.port()).backend(9003).render(),
    )?;
    wait_for(&sy, 3, 9003)?;
    Ok(())
}

/// Lay out `dir` as kubelet mounts a ConfigMap: every key is a symlink through `..data`,
/// which points at a versioned directory. Besides the config there are two more keys,
/// `api.crt` and `api.key`, that the config names by relative path.
fn configmap_layout(dir: &Path, text: &str) -> anyhow::Result<()> {
    write_configmap_version(dir, "..v1", text)?;
    std::os::unix::fs::symlink("..v1", dir.join("..data"))?;
    for key in ["switchyard.toml", "api.crt", "api.key"] {
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key))?;
    }
    Ok(())
}

fn write_configmap_version(dir: &Path, version: &str, text: &str) -> anyhow::Result<()> {
    let v = dir.join(version);
    std::fs::create_dir(&v)?;
    std::fs::write(v.join("switchyard.toml"), text)?;
    // The HTTP plane loads the listener's certificate with every applied config.
    SelfSigned::new(&["api.test"])?.write(&v, "api")?;
    Ok(())
}

/// Swap the ConfigMap to a new version as kubelet does: new directory, `..data_tmp` link to
/// it, rename over `..data`, then delete the old directory.
fn configmap_swap(dir: &Path, old: &str, new: &str, text: &str) -> anyhow::Result<()> {
    write_configmap_version(dir, new, text)?;
    std::os::unix::fs::symlink(new, dir.join("..data_tmp"))?;
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data"))?;
    std::fs::remove_dir_all(dir.join(old))?;
    Ok(())
}

/// A config with an HTTP listener whose TLS files are relative paths, as in a ConfigMap.
fn with_tls_listener(conf: &Conf, listener_port: u16) -> String {
    format!(
        "{}\n[[http.listeners]]\nname = \"public\"\naddr = \"127.0.0.1:{listener_port}\"\ntls = [{{ cert = \"api.crt\", key = \"api.key\" }}]\n",
        conf.render()
    )
}

#[test]
fn configmap_symlink_swap_is_a_new_version() -> anyhow::Result<()> {
    let listener = support::free_port()?;
    let sy = Switchyard::start_with(&[], &|dir, port| {
        configmap_layout(dir, &with_tls_listener(&Conf::new(port), listener))?;
        Ok(dir.join("switchyard.toml"))
    })?;
    assert_eq!(sy.version()?, 1);
    let dir = sy.conf_dir();

    let v2 = with_tls_listener(&Conf::new(sy.port()).backend(9002), listener);
    configmap_swap(&dir, "..v1", "..v2", &v2)?;
    wait_for(&sy, 2, 9002)?;

    // Again, now that the directory the config first resolved to is gone.
    let v3 = with_tls_listener(&Conf::new(sy.port()).backend(9003), listener);
    configmap_swap(&dir, "..v2", "..v3", &v3)?;
    let s = wait_for(&sy, 3, 9003)?;
    assert!(s["last_reload_error"].is_null(), "{s}");

    // Relative paths are relative to the directory the config is mounted in, not to the
    // versioned directory behind the symlinks: the audit log is there.
    let reloads = sy
        .audit()?
        .into_iter()
        .filter(|l| l["action"] == "config.reload" && l["result"] == "applied")
        .count();
    assert_eq!(reloads, 2);
    Ok(())
}

/// Write `path` every 100 ms until the returned guard is dropped.
struct Scribbler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scribbler {
    fn start(path: std::path::PathBuf, write: fn(&Path, u64) -> std::io::Result<()>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = write(&path, n);
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Scribbler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Scribbler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Issue 15: an access log, an editor's swap file or anything else written in the config's
/// directory every 100 ms (more often than `reload_debounce`) must not hold a reload back;
/// nor must the config file itself being rewritten without pause.
#[test]
fn busy_config_directory_does_not_starve_reloads() -> anyhow::Result<()> {
    // The default debounce (the tests' 50 ms is shorter than the writers' period).
    let conf = |port: u16, backend: u16| {
        Conf {
            debounce: "150ms",
            ..Conf::new(port)
        }
        .backend(backend)
        .render()
    };
    let sy = Switchyard::start(|p| conf(p, 9001))?;
    let dir = sy.conf_dir();
    let _log = Scribbler::start(dir.join("access.log"), |p, n| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        writeln!(f, "request {n}")
    });
    let _swap = Scribbler::start(dir.join(".switchyard.toml.swp"), |p, n| {
        std::fs::write(p, n.to_string())
    });
    rename_over(sy.config_path(), &conf(sy.port(), 9002))?;
    wait_for(&sy, 2, 9002)?;

    // The config itself replaced (same text each time) every 100 ms: applied within the
    // debounce ceiling all the same.
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = TEXT.set(conf(sy.port(), 9003));
    let _config = Scribbler::start(sy.config_path().to_path_buf(), |p, _| {
        rename_over(p, TEXT.get().map_or("", String::as_str)).map_err(std::io::Error::other)
    });
    wait_for(&sy, 3, 9003)?;
    Ok(())
}

#[test]
fn syntax_error_keeps_the_old_version_and_is_reported() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let v1 = sy.status()?;
    let good = Conf::new(sy.port()).render();
    let broken = good.replace(
        "[http.upstreams.api.pools.blue]",
        "[http.upstreams.api.pools.blue",
    );
    rename_over(sy.config_path(), &broken)?;

    let s = wait_for_error(&sy)?;
    assert_eq!(s["version"], 1);
    assert_eq!(s["hash"], v1["hash"]);
    assert_eq!(live_backend(&s), "127.0.0.1:9001");
    let err = &s["last_reload_error"];
    assert_eq!(err["source"], "file");
    assert!(err["at"].is_string(), "{err}");
    let first = &err["errors"][0];
    assert_eq!(first["path"], "(syntax)", "{err}");
    assert_eq!(
        first["line"].as_u64(),
        line_of(&broken, "[http.upstreams.api.pools.blue").map(|l| l as u64),
        "{err}"
    );
    assert!(
        first["message"]
            .as_str()
            .unwrap_or("")
            .contains("TOML syntax error"),
        "{err}"
    );
    let audit = sy.audit()?;
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "config.reload" && l["result"] == "rejected"),
        "{audit:?}"
    );

    // Fixing the file applies it and clears the error.
    rename_over(
        sy.config_path(),
        &Conf::new(sy.port()).backend(9002).render(),
    )?;
    let s = wait_for(&sy, 2, 9002)?;
    assert!(s["last_reload_error"].is_null(), "{s}");
    Ok(())
}

#[test]
fn semantic_error_names_the_key_path_and_line() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let v1 = sy.status()?;
    let good = sy.config_text()?;
    let broken = good.replace("upstream = \"api\"", "upstream = \"missing\"");
    write_in_place(sy.config_path(), &broken)?;

    let s = wait_for_error(&sy)?;
    assert_eq!(s["version"], 1);
    assert_eq!(s["hash"], v1["hash"]);
    let errors = s["last_reload_error"]["errors"]
        .as_array()
        .context("errors is a list")?;
    let e = errors
        .iter()
        .find(|e| e["path"] == "http.routes[0].upstream")
        .with_context(|| format!("no error at http.routes[0].upstream in {errors:?}"))?;
    assert_eq!(
        e["line"].as_u64(),
        line_of(&broken, "upstream = \"missing\"").map(|l| l as u64),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap_or("").contains("missing"),
        "{e}"
    );

    // Restoring the running text clears the error without a new version.
    write_in_place(sy.config_path(), &good)?;
    eventually(RELOAD_WITHIN, || {
        let s = sy.status()?;
        ensure!(s["last_reload_error"].is_null(), "error still shown: {s}");
        ensure!(s["version"] == 1, "version moved: {s}");
        Ok(())
    })
}

#[test]
fn comment_only_edit_is_not_a_new_version() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let text = sy.config_text()?;
    let hash = sy.status()?["hash"].clone();
    let edited = format!(
        "# A comment at the top.\n\n{}\n# And one at the end.\n",
        text.replace(
            "balance = \"least_conn\"",
            "balance   =   \"least_conn\"   # the default"
        )
    );
    rename_over(sy.config_path(), &edited)?;

    // The watcher read the file and found the same config.
    eventually(RELOAD_WITHIN, || {
        let m = sy.metrics()?;
        let unchanged = metric(
            &m,
            "switchyard_control_reloads_total",
            &["source=\"file\"", "result=\"unchanged\""],
        );
        ensure!(unchanged == Some(1.0), "unchanged reloads: {unchanged:?}");
        Ok(())
    })?;
    let s = sy.status()?;
    assert_eq!(s["version"], 1);
    assert_eq!(s["hash"], hash);
    let history = sy
        .send(support::Request::get("/v1/config/history").bearer(support::config::VIEWER))?
        .json()?;
    assert_eq!(
        history["history"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    assert!(
        sy.audit()?.iter().all(|l| l["action"] != "config.reload"),
        "a comment edit is not a change attempt worth an audit line"
    );
    Ok(())
}

#[test]
fn sighup_forces_a_reload() -> anyhow::Result<()> {
    // No periodic re-check: only the watcher or SIGHUP can notice a change.
    let sy = Switchyard::start(|p| Conf::new(p).check_interval("1h").render())?;
    // Edit the file through a hard link in a directory nobody watches: the config's
    // directory sees no event, so the watcher cannot notice.
    let other = sy.tmp_dir().join("elsewhere");
    std::fs::create_dir(&other)?;
    let alias = other.join("alias.toml");
    std::fs::hard_link(sy.config_path(), &alias)?;
    write_in_place(
        &alias,
        &Conf::new(sy.port())
            .backend(9002)
            .check_interval("1h")
            .render(),
    )?;
    consistently(Duration::from_millis(300), || {
        ensure!(sy.version()? == 1, "reloaded without SIGHUP");
        Ok(())
    })?;

    sy.signal("HUP")?;
    let s = wait_for(&sy, 2, 9002)?;
    assert_eq!(s["source"], "file");
    assert!(sy.stderr().contains("SIGHUP"), "{}", sy.stderr());

    // A SIGHUP with nothing changed re-reads and finds the same config.
    sy.signal("HUP")?;
    eventually(RELOAD_WITHIN, || {
        let m = sy.metrics()?;
        let unchanged = metric(
            &m,
            "switchyard_control_reloads_total",
            &["source=\"file\"", "result=\"unchanged\""],
        );
        ensure!(unchanged == Some(1.0), "unchanged reloads: {unchanged:?}");
        Ok(())
    })?;
    assert_eq!(sy.version()?, 2);
    Ok(())
}

#[test]
fn sighup_right_after_start_reloads_rather_than_kills() -> anyhow::Result<()> {
    // The SIGHUP handler must be in place before the API answers: a SIGHUP that arrived
    // first would get the default action and end the process.
    for _ in 0..3 {
        let mut sy = Switchyard::start(|p| Conf::new(p).render())?;
        sy.signal("HUP")?;
        eventually(RELOAD_WITHIN, || {
            ensure!(sy.stderr().contains("SIGHUP"), "SIGHUP not logged yet");
            Ok(())
        })?;
        assert!(
            sy.is_running(),
            "SIGHUP ended the process:\n{}",
            sy.stderr()
        );
        assert_eq!(sy.version()?, 1);
    }
    Ok(())
}
