//! The single writer. Every change to the running config, from the file, the API, a
//! rollback or a failover, goes through [`Applier`] under one mutex:
//! parse → validate → build every plane (and the control plane's own runtime) → persist →
//! swap → record history → audit. A failure at any step leaves the previous config running
//! and tells the caller why.
//!
//! "Persist" is the [`Store`]'s: the config file (plus the optional state file), or a
//! compare-and-swap of the shared document in etcd, whose newer versions (written by other
//! nodes) come back in through [`Applier::apply_from_store`] (see `follow.rs`).

mod boot;
mod edit;
mod follow;
mod outcome;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use sha2::{Digest, Sha256};
use switchyard_config::{content_hash, diff, Config, ConfigError, ConfigErrors, Snapshot};
use time::OffsetDateTime;

use crate::audit::AuditEntry;
use crate::history::{Actor, Applied, History, HistoryLine, Origin};
use crate::persist::write_atomically;
use crate::plane::{Plane, Prepared};
use crate::runtime::ControlRuntime;
use crate::store::etcd::{CasError, MAX_DOC_BYTES};
use crate::store::{Head, Record, Store};

pub use outcome::{ApplyError, ApplyOutcome, ApplyRequest, EditRequest, ReloadError, StartError};

/// The single writer of Switchyard's config.
pub struct Applier {
    writer: tokio::sync::Mutex<()>,
    current: ArcSwap<Applied>,
    runtime: ArcSwap<ControlRuntime>,
    history: Mutex<History>,
    /// SHA-256 of the config file text as last read or written by us.
    file_hash: Mutex<String>,
    last_error: ArcSwapOption<ReloadError>,
    planes: Vec<Arc<dyn Plane>>,
    config_path: PathBuf,
    base_dir: PathBuf,
    store: Store,
    /// A store version that failed to build here, so it is reported once, not on every event.
    failed_version: Mutex<Option<u64>>,
    /// File store: the latest rollout of each upstream as the state file keeps it. Its lock
    /// is held while the state file is written, so writes never interleave.
    rollouts: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl Applier {
    /// The running config.
    pub fn current(&self) -> Arc<Applied> {
        self.current.load_full()
    }

    /// The control plane's own runtime (tokens, audit log, TLS).
    pub fn runtime(&self) -> Arc<ControlRuntime> {
        self.runtime.load_full()
    }

    pub fn planes(&self) -> &[Arc<dyn Plane>] {
        &self.planes
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Where the config lives (file or etcd).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn last_error(&self) -> Option<Arc<ReloadError>> {
        self.last_error.load_full()
    }

    /// History lines, newest first.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let history = lock(&self.history);
        history
            .iter()
            .rev()
            .map(|a| serde_json::to_value::<HistoryLine<'_>>(a.line()).unwrap_or_default())
            .collect()
    }

    /// Apply config text.
    pub async fn apply(&self, req: ApplyRequest) -> Result<ApplyOutcome, ApplyError> {
        let _writer = self.writer.lock().await;
        retry_conflicts(|| self.apply_locked(req.clone(), None)).await
    }

    /// Re-read the config file and apply it if its text changed since we last read or wrote
    /// it (or always, with `force`). Returns `None` when there was nothing to do.
    pub async fn reload_from_file(&self, force: bool) -> Option<Result<ApplyOutcome, ApplyError>> {
        let _writer = self.writer.lock().await;
        // Read under the lock: an API write cannot slip between this read and the apply.
        let text = match std::fs::read_to_string(&self.config_path) {
            Ok(t) => t,
            Err(e) => {
                // Mid-rename or briefly missing: the next event or periodic check retries.
                tracing::debug!(error = %e, path = %self.config_path.display(), "config file not readable yet");
                return None;
            }
        };
        let hash = text_hash(&text);
        if !force && *lock(&self.file_hash) == hash {
            return None;
        }
        *lock(&self.file_hash) = hash;
        if text.trim().is_empty() {
            // An empty file is a valid config (all defaults, no tokens), but far more often it
            // is a truncate-then-write caught halfway or a slip of `>`: applying it would drop
            // every listener and lock everyone out of the API. Keep the running config.
            let err = ApplyError::Invalid(ConfigErrors::single(
                "(file)",
                "the config file is empty; keeping the running config",
            ));
            self.last_error.store(Some(Arc::new(ReloadError {
                at: OffsetDateTime::now_utc(),
                source: Origin::File,
                errors: err.errors(),
            })));
            tracing::warn!(path = %self.config_path.display(), "config file is empty; keeping the running config");
            return Some(Err(err));
        }
        let outcome = self
            .apply_locked(
                ApplyRequest {
                    text: Arc::from(text),
                    origin: Origin::File,
                    actor: Actor::system("file"),
                    action: "config.reload",
                    expect_version: None,
                    dry_run: false,
                },
                None,
            )
            .await;
        if force && matches!(outcome, Ok(ApplyOutcome::Unchanged { .. })) {
            self.refresh_locked();
        }
        Some(outcome)
    }

    /// [`Applier::refresh_locked`] under the writer lock: SIGHUP with a shared store, whose
    /// node re-reads certificates and other referenced files but has no file to reload.
    pub async fn refresh(&self) {
        let _writer = self.writer.lock().await;
        self.refresh_locked();
    }

    /// Rebuild every plane and the control runtime from the running config and swap them
    /// in, without a new version: what the config refers to but does not contain
    /// (certificate files) is read afresh. A forced reload (SIGHUP) of an unchanged config
    /// does this, so a certificate renewed in place is served from the next handshake. On
    /// failure everything keeps running as it was and the error is reported like a
    /// rejected reload.
    fn refresh_locked(&self) {
        let current = self.current();
        let config = &current.snapshot.config;
        let built = ControlRuntime::build(config, Some(&self.runtime.load()))
            .and_then(|rt| Ok((rt, prepare_all(&self.planes, config)?)));
        match built {
            Ok((runtime, prepared)) => {
                prepared.into_iter().for_each(|p| p.commit());
                self.runtime.store(Arc::new(runtime));
                tracing::info!(
                    version = current.snapshot.version,
                    "config unchanged; certificates and other referenced files re-read"
                );
            }
            Err(errors) => {
                tracing::warn!(
                    "re-reading referenced files failed, keeping the running state: {errors}"
                );
                self.last_error.store(Some(Arc::new(ReloadError {
                    at: OffsetDateTime::now_utc(),
                    source: Origin::File,
                    errors: ApplyError::Build(errors).errors(),
                })));
            }
        }
    }

    /// Re-apply the text of an earlier version as a new version.
    pub async fn rollback(
        &self,
        version: u64,
        actor: Actor,
        expect_version: Option<u64>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let _writer = self.writer.lock().await;
        let stored = match (self.source_of(version), self.store.etcd()) {
            (None, Some(store)) => match store.record(version).await {
                Ok(r) => r.map(|r| Arc::<str>::from(r.text)),
                Err(e) => return Err(ApplyError::Unavailable(e)),
            },
            _ => None,
        };
        let text = {
            let history = lock(&self.history);
            match history
                .get(version)
                .map(|a| a.snapshot.source.clone())
                .or(stored)
            {
                Some(text) => text,
                None => {
                    let err = ApplyError::UnknownVersion {
                        version,
                        oldest: history.oldest_version(),
                    };
                    drop(history);
                    self.audit(
                        &actor,
                        "config.rollback",
                        self.current().snapshot.version,
                        None,
                        Err(&err),
                    );
                    return Err(err);
                }
            }
        };
        let req = ApplyRequest {
            text,
            origin: Origin::Rollback,
            actor,
            action: "config.rollback",
            expect_version,
            dry_run: false,
        };
        retry_conflicts(|| self.apply_locked(req.clone(), None)).await
    }

    /// Apply under the writer lock; `detail` goes into the audit line. With etcd, the
    /// shared document is read first (and applied here if it is newer).
    async fn apply_locked(
        &self,
        req: ApplyRequest,
        detail: Option<serde_json::Value>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let head = if req.dry_run {
            Ok(None)
        } else {
            self.sync_locked().await
        };
        match head {
            Ok(head) => self.apply_synced(req, detail, head.as_ref()).await,
            Err(e) => {
                let version = self.current().snapshot.version;
                self.audit_with(&req.actor, req.action, version, None, Err(&e), detail);
                Err(e)
            }
        }
    }

    /// [`Applier::apply_locked`] after the store was read: `head` is the shared document
    /// (etcd), `None` for the file.
    async fn apply_synced(
        &self,
        req: ApplyRequest,
        detail: Option<serde_json::Value>,
        head: Option<&Head>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let started = Instant::now();
        let before = self.current.load_full();
        let result = self.try_apply(&req, &before, head).await;
        let source = req.origin.as_str();
        let (label, after) = match &result {
            Ok(ApplyOutcome::Applied { after, .. }) => ("applied", Some(after.snapshot.version)),
            Ok(ApplyOutcome::Unchanged { .. }) => ("unchanged", None),
            Ok(ApplyOutcome::DryRun { .. }) => ("dry_run", None),
            Err(_) => ("rejected", None),
        };
        metrics::counter!("switchyard_control_reloads_total", "source" => source, "result" => label).increment(1);
        metrics::histogram!("switchyard_control_apply_duration_seconds", "source" => source)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(ApplyOutcome::Applied { after, .. }) => {
                metrics::gauge!("switchyard_control_config_version")
                    .set(after.snapshot.version as f64);
                tracing::info!(version = after.snapshot.version, hash = %after.snapshot.hash, source, actor = %req.actor.name, "config applied");
            }
            Err(e) => {
                tracing::warn!(source, actor = %req.actor.name, "config rejected: {e}");
                if req.origin == Origin::File {
                    self.last_error.store(Some(Arc::new(ReloadError {
                        at: OffsetDateTime::now_utc(),
                        source: req.origin,
                        errors: e.errors(),
                    })));
                }
            }
            Ok(_) => {}
        }
        // A lost compare-and-swap is retried; only the final attempt is audited.
        let conflict = matches!(result, Err(ApplyError::Conflict));
        let quiet_reload = req.origin == Origin::File && label == "unchanged";
        if !(conflict || quiet_reload) {
            let res = result.as_ref().map(|_| label);
            let version = before.snapshot.version;
            self.audit_with(&req.actor, req.action, version, after, res, detail);
        }
        result
    }

    async fn try_apply(
        &self,
        req: &ApplyRequest,
        before: &Arc<Applied>,
        head: Option<&Head>,
    ) -> Result<ApplyOutcome, ApplyError> {
        // The version a change is based on: the shared document's with etcd (this node may
        // run an older one if the newest failed to build here), the running one otherwise.
        let base = head.map_or(before.snapshot.version, |h| h.version);
        if let Some(expected) = req.expect_version {
            if expected != base {
                return Err(ApplyError::Stale {
                    current: base,
                    expected,
                });
            }
        }
        let text: Arc<str> = match &self.store {
            Store::Etcd { .. } => switchyard_config::store::strip_local(&req.text)
                .map(Arc::from)
                .unwrap_or_else(|_| req.text.clone()),
            Store::File { .. } => req.text.clone(),
        };
        let config = self.parse(&text).map_err(ApplyError::Invalid)?;
        let hash = content_hash(&config);
        if hash == before.snapshot.hash && base == before.snapshot.version {
            if req.origin == Origin::File {
                self.last_error.store(None);
            }
            return Ok(ApplyOutcome::Unchanged {
                current: before.clone(),
            });
        }
        let runtime = ControlRuntime::build(&config, Some(&self.runtime.load()))
            .map_err(ApplyError::Build)?;
        let prepared = prepare_all(&self.planes, &config).map_err(ApplyError::Build)?;
        let changes = diff(&before.snapshot.config, &config);
        if req.dry_run {
            return Ok(ApplyOutcome::DryRun {
                current: before.snapshot.version,
                hash,
                changes,
            });
        }
        let at = OffsetDateTime::now_utc();
        let version = base + 1;
        match (&self.store, head) {
            (Store::Etcd { client, .. }, Some(head)) => {
                if text.len() > MAX_DOC_BYTES {
                    return Err(ApplyError::Invalid(ConfigErrors::single(
                        "(store)",
                        format!(
                            "the shared document is {} bytes; etcd mode takes at most {MAX_DOC_BYTES}",
                            text.len()
                        ),
                    )));
                }
                let record = Record {
                    version,
                    applied_at: at,
                    actor: req.actor.name.clone(),
                    remote: req.actor.remote,
                    source: req.origin,
                    text: text.to_string(),
                };
                let limit = config.control.history_limit;
                match client.cas(head, &text, &record, limit).await {
                    Ok(_) => {}
                    Err(CasError::Conflict) => return Err(ApplyError::Conflict),
                    Err(CasError::Unavailable(e)) => return Err(ApplyError::Unavailable(e)),
                }
            }
            (Store::Etcd { .. }, None) => {
                return Err(ApplyError::Unavailable(
                    "the shared document was not read".into(),
                ))
            }
            (Store::File { .. }, _) => {
                if !matches!(req.origin, Origin::File | Origin::Startup) {
                    let previous = std::mem::replace(&mut *lock(&self.file_hash), text_hash(&text));
                    if let Err(e) = write_atomically(&self.config_path, &text) {
                        *lock(&self.file_hash) = previous;
                        return Err(ApplyError::Persist(e));
                    }
                }
            }
        }
        // Everything fallible is done: go live.
        let after = Arc::new(Applied {
            snapshot: Snapshot {
                version,
                hash,
                config,
                source: text,
            },
            at,
            actor: req.actor.clone(),
            origin: req.origin,
        });
        self.go_live(prepared, runtime, after.clone());
        Ok(ApplyOutcome::Applied {
            before: before.snapshot.version,
            after,
            changes,
        })
    }

    /// Commit prepared planes and runtime, make `after` current and record it.
    fn go_live(
        &self,
        prepared: Vec<Box<dyn Prepared>>,
        runtime: ControlRuntime,
        after: Arc<Applied>,
    ) {
        prepared.into_iter().for_each(|p| p.commit());
        self.runtime.store(Arc::new(runtime));
        let limit = after.snapshot.config.control.history_limit;
        self.current.store(after.clone());
        lock(&self.history).push((*after).clone(), limit);
        self.last_error.store(None);
        *lock(&self.failed_version) = None;
        self.save_state();
    }

    /// Write one audit line for an attempt.
    pub fn audit(
        &self,
        actor: &Actor,
        action: &str,
        version_before: u64,
        version_after: Option<u64>,
        result: Result<&'static str, &ApplyError>,
    ) {
        self.audit_with(actor, action, version_before, version_after, result, None);
    }

    /// [`Applier::audit`] with a `detail` object.
    pub fn audit_with(
        &self,
        actor: &Actor,
        action: &str,
        version_before: u64,
        version_after: Option<u64>,
        result: Result<&'static str, &ApplyError>,
        detail: Option<serde_json::Value>,
    ) {
        let (result, error) = match result {
            Ok(r) => (r, None),
            Err(e) => ("rejected", Some(e.to_string())),
        };
        self.runtime.load().audit.record(&AuditEntry {
            time: OffsetDateTime::now_utc(),
            actor: actor.name.clone(),
            remote: actor.remote,
            action: action.to_string(),
            version_before,
            version_after: version_after.unwrap_or(version_before),
            result,
            error,
            detail,
        });
    }
}

/// Parse and validate, then make relative paths relative to the config file's directory.
/// With etcd, `text` is the shared document and the node-local keys come from `local`.
fn parse_in(text: &str, base_dir: &Path, local: Option<&str>) -> Result<Arc<Config>, ConfigErrors> {
    let effective = match local.map(|l| switchyard_config::store::overlay(text, l)) {
        Some(Ok(t)) => std::borrow::Cow::Owned(t),
        // Not valid TOML: parsing the text itself reports where.
        Some(Err(_)) | None => std::borrow::Cow::Borrowed(text),
    };
    let mut config = switchyard_config::parse(&effective)?;
    config.resolve_paths(base_dir);
    Ok(Arc::new(config))
}

/// Run an apply again when the shared document changed under it (a lost compare-and-swap):
/// the next attempt reads the newer document first, so nothing is lost, and a caller's
/// `If-Match` then fails as stale.
async fn retry_conflicts<F, Fut>(mut attempt: F) -> Result<ApplyOutcome, ApplyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ApplyOutcome, ApplyError>>,
{
    let mut result = attempt().await;
    for _ in 0..8 {
        if !matches!(result, Err(ApplyError::Conflict)) {
            break;
        }
        result = attempt().await;
    }
    result
}

/// Prepare every plane; the first failure stops and drops what was prepared.
fn prepare_all(
    planes: &[Arc<dyn Plane>],
    config: &Arc<Config>,
) -> Result<Vec<Box<dyn Prepared>>, ConfigErrors> {
    let mut out = Vec::with_capacity(planes.len());
    let mut errors = Vec::new();
    for plane in planes {
        match plane.prepare(config) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(ConfigError {
                path: plane.name().to_string(),
                line: None,
                message: e,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn text_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Lock a std mutex, recovering from poisoning: the data is plain state that a panic
/// elsewhere cannot have left half-written in a way that matters more than staying up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Applier {
    /// Parse `text` as this node runs it (with etcd: overlaid with the node-local keys).
    fn parse(&self, text: &str) -> Result<Arc<Config>, ConfigErrors> {
        let local = match &self.store {
            Store::Etcd { local, .. } => Some(&**local),
            Store::File { .. } => None,
        };
        parse_in(text, &self.base_dir, local)
    }

    /// The TOML text of a version still in the history.
    pub fn source_of(&self, version: u64) -> Option<Arc<str>> {
        lock(&self.history)
            .get(version)
            .map(|a| a.snapshot.source.clone())
    }
}
