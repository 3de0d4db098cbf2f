//! The config file watcher: reload when the file changes, however it changes.
//!
//! It watches the file's *directory*, not the file: editors save by writing a new file and
//! renaming it over the old one, and Kubernetes ConfigMaps swap a `..data` symlink, and
//! neither is seen by a watch on the old inode. Only events that name the config file itself
//! (or its symlink target, or Kubernetes' `..data` link) count: an access log or an editor's
//! swap file in the same directory is no reason to reload. Events are debounced, with a
//! ceiling ([`DEBOUNCE_CEILING`]) so that a file rewritten without pause is still applied,
//! then the applier re-reads the file and compares content hashes, so spurious events cost
//! one read. A slow periodic re-check covers filesystems that emit no events, and SIGHUP
//! forces a reload.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout_at, Instant};

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
                debounce(&mut rx, quiet).await;
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

/// Wait until the config file has seen no event for `quiet`, but never longer than `quiet`
/// plus [`DEBOUNCE_CEILING`] after the first event: a file that is rewritten without pause
/// (a tool writing it in a loop) is still read, and a half-written read is refused by
/// validation and retried on the next event.
async fn debounce(rx: &mut mpsc::UnboundedReceiver<()>, quiet: Duration) {
    let ceiling = Instant::now() + quiet + DEBOUNCE_CEILING;
    loop {
        let until = (Instant::now() + quiet).min(ceiling);
        match timeout_at(until, rx.recv()).await {
            Ok(Some(())) if Instant::now() < ceiling => continue,
            _ => return,
        }
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
    let names = watched_names(config_path);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // An error from the watcher (a queue overflow) may have hidden an event of ours.
        if res.as_ref().map_or(true, |e| is_config_event(e, &names)) {
            let _ = tx.send(());
        }
    })?;
    for dir in watch_dirs(config_path) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        tracing::debug!(dir = %dir.display(), "watching config directory");
    }
    Ok(watcher)
}

/// The directory entries whose events mean the config may have changed: the file's own
/// name, the name of its symlink target (in the target's directory, also watched), and
/// Kubernetes' `..data` link, which a ConfigMap update renames over.
fn watched_names(config_path: &Path) -> Vec<OsString> {
    let mut names = vec![OsString::from(KUBERNETES_DATA_LINK)];
    names.extend(config_path.file_name().map(OsString::from));
    if let Some(real) = std::fs::canonicalize(config_path)
        .ok()
        .and_then(|r| r.file_name().map(OsString::from))
    {
        names.push(real);
    }
    names.dedup();
    names
}

/// Whether a directory event may have changed the config: it names one of `names` and is
/// not a mere open or read (the applier's own read of the file would otherwise wake the
/// watcher again).
fn is_config_event(event: &notify::Event, names: &[OsString]) -> bool {
    if event.need_rescan() {
        return true;
    }
    if let EventKind::Access(kind) = event.kind {
        if kind != AccessKind::Close(AccessMode::Write) {
            return false;
        }
    }
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| names.iter().any(|w| w.as_os_str() == n))
    })
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

/// How much longer than `reload_debounce` a stream of events on the config file can hold a
/// reload back: a change is read at most `reload_debounce` + this after its first event.
pub const DEBOUNCE_CEILING: Duration = Duration::from_secs(1);

/// The symlink a Kubernetes ConfigMap volume swaps to publish a new version.
const KUBERNETES_DATA_LINK: &str = "..data";

/// The periodic check interval is read from the running config; this is its floor, so a
/// tiny value cannot turn the check into a busy loop.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_events_naming_the_config_count() {
        let names = watched_names(Path::new("/etc/sy/switchyard.toml"));
        let write = EventKind::Modify(ModifyKind::Any);
        assert!(is_config_event(
            &event(write, "/etc/sy/switchyard.toml"),
            &names
        ));
        assert!(!is_config_event(
            &event(write, "/etc/sy/access.log"),
            &names
        ));
        assert!(!is_config_event(
            &event(
                EventKind::Create(CreateKind::File),
                "/etc/sy/.switchyard.toml.swp"
            ),
            &names
        ));
        // Kubernetes publishes a ConfigMap version by renaming `..data_tmp` over `..data`.
        let rename = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(PathBuf::from("/etc/sy/..data_tmp"))
            .add_path(PathBuf::from("/etc/sy/..data"));
        assert!(is_config_event(&rename, &names));
        // Our own read of the file is no change.
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!is_config_event(
            &event(open, "/etc/sy/switchyard.toml"),
            &names
        ));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(is_config_event(
            &event(closed, "/etc/sy/switchyard.toml"),
            &names
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_waits_for_quiet_but_not_forever() {
        let quiet = Duration::from_millis(150);
        // A single event: read once the file has been quiet for `quiet`.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        debounce(&mut rx, quiet).await;
        assert_eq!(start.elapsed(), quiet);
        // Events every 100 ms without end: read at the ceiling all the same.
        let feeder = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        let start = Instant::now();
        debounce(&mut rx, quiet).await;
        let waited = start.elapsed();
        assert!(waited >= quiet + DEBOUNCE_CEILING - Duration::from_millis(100));
        assert!(waited <= quiet + DEBOUNCE_CEILING, "{waited:?}");
        feeder.abort();
    }
}
