//! The config file watcher: reload when the file changes, however it changes.
//!
//! It watches the file's *directory*, not the file: editors save by writing a new file and
//! renaming it over the old one, and Kubernetes ConfigMaps swap a `..data` symlink, and
//! neither is seen by a watch on the old inode. Events are debounced, then the applier
//! re-reads the file and compares content hashes, so spurious events cost one read. A slow
//! periodic re-check covers filesystems that emit no events, and SIGHUP forces a reload.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use crate::applier::{Applier, ApplyOutcome};

/// Watch the config file until `shutdown` resolves.
///
/// The file watch and the SIGHUP handler are set up by this call, not when the returned
/// future is first polled: the caller spawns it and goes straight on to serve the API, and a
/// change made as soon as the API answers must not be missed, nor a SIGHUP sent then kill the
/// process. Call it inside the Tokio runtime.
pub fn watch(
    applier: Arc<Applier>,
    shutdown: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    // Keep the watcher alive for as long as we watch; without it we still have the periodic
    // check and SIGHUP.
    let watcher = match start_notify(applier.config_path(), tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config directory; relying on the periodic check and SIGHUP");
            None
        }
    };
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install a SIGHUP handler");
            None
        }
    };
    run(applier, shutdown, rx, watcher, hangup)
}

async fn run(
    applier: Arc<Applier>,
    shutdown: impl Future<Output = ()>,
    mut rx: mpsc::UnboundedReceiver<()>,
    _watcher: Option<notify::RecommendedWatcher>,
    mut hangup: Option<tokio::signal::unix::Signal>,
) {
    tokio::pin!(shutdown);
    let interval = |a: &Applier| {
        a.current()
            .snapshot
            .config
            .control
            .reload_check_interval
            .max(MIN_CHECK_INTERVAL)
    };
    let mut next_check = Instant::now() + interval(&applier);
    loop {
        let force = tokio::select! {
            _ = &mut shutdown => return,
            Some(()) = rx.recv() => {
                let quiet = applier.current().snapshot.config.control.reload_debounce;
                // Debounce: wait until the directory has been quiet for `quiet`.
                while let Ok(Some(())) = timeout(quiet, rx.recv()).await {}
                false
            }
            _ = sleep_until(next_check) => false,
            Some(()) = recv_signal(&mut hangup) => {
                tracing::info!("SIGHUP: reloading the config file");
                true
            }
        };
        check(&applier, force).await;
        next_check = Instant::now() + interval(&applier);
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn check(applier: &Applier, force: bool) {
    match applier.reload_from_file(force).await {
        None => {}
        Some(Ok(ApplyOutcome::Unchanged { current })) => {
            tracing::debug!(
                version = current.snapshot.version,
                "config file changed but its content is the same"
            )
        }
        // Applied outcomes and errors are logged by the applier, with every key path.
        Some(Ok(_)) | Some(Err(_)) => {}
    }
}

fn start_notify(
    config_path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })?;
    for dir in watch_dirs(config_path) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        tracing::debug!(dir = %dir.display(), "watching config directory");
    }
    Ok(watcher)
}

/// The file's directory, and the directory of its real target if it is a symlink elsewhere.
fn watch_dirs(config_path: &Path) -> Vec<PathBuf> {
    let dir_of = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![dir_of(config_path)];
    if let Ok(real) = std::fs::canonicalize(config_path) {
        let real_dir = dir_of(&real);
        let same = std::fs::canonicalize(&dirs[0])
            .map(|d| d == real_dir)
            .unwrap_or(false);
        if !same {
            dirs.push(real_dir);
        }
    }
    dirs
}

/// The periodic check interval is read from the running config; this is its floor, so a
/// tiny value cannot turn the check into a busy loop.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
