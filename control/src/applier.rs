//! The single writer. Every change to the running config, from the file, the API, a
//! rollback or a failover, goes through [`Applier`] under one mutex:
//! parse → validate → build every plane (and the control plane's own runtime) → persist →
//! swap → record history → audit. A failure at any step leaves the previous config running
//! and tells the caller why.

mod edit;
mod outcome;
#[cfg(test)]
pub(crate) mod testing;

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

pub use edit::EditRequest;
pub use outcome::{ApplyError, ApplyOutcome, ApplyRequest, ReloadError, StartError};

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
}

impl Applier {
    /// Load the config file and bring every plane up with it as version 1.
    pub fn start(
        config_path: &Path,
        planes: Vec<Arc<dyn Plane>>,
    ) -> Result<Arc<Applier>, StartError> {
        let path_str = config_path.display().to_string();
        let text = std::fs::read_to_string(config_path).map_err(|error| StartError::Read {
            path: path_str.clone(),
            error,
        })?;
        // The directory the file is named in, not the one behind its symlinks: a Kubernetes
        // ConfigMap links every key through `..data` into a versioned directory that the next
        // update deletes, so relative paths resolved there break after one update.
        let base_dir = std::path::absolute(config_path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let invalid = |error| StartError::Invalid {
            path: path_str.clone(),
            error,
        };
        let config = parse_in(&text, &base_dir).map_err(|e| invalid(ApplyError::Invalid(e)))?;
        let runtime =
            ControlRuntime::build(&config, None).map_err(|e| invalid(ApplyError::Build(e)))?;
        let prepared = prepare_all(&planes, &config).map_err(|e| invalid(ApplyError::Build(e)))?;
        prepared.into_iter().for_each(|p| p.commit());
        let applied = Arc::new(Applied {
            snapshot: Snapshot {
                version: 1,
                hash: content_hash(&config),
                config,
                source: Arc::from(text.as_str()),
            },
            at: OffsetDateTime::now_utc(),
            actor: Actor::system("startup"),
            origin: Origin::Startup,
        });
        let mut history = History::default();
        history.push(
            (*applied).clone(),
            applied.snapshot.config.control.history_limit,
        );
        let audit = runtime.audit.clone();
        let applier = Arc::new(Applier {
            writer: tokio::sync::Mutex::new(()),
            current: ArcSwap::new(applied.clone()),
            runtime: ArcSwap::from_pointee(runtime),
            history: Mutex::new(history),
            file_hash: Mutex::new(text_hash(&text)),
            last_error: ArcSwapOption::empty(),
            planes,
            config_path: config_path.to_path_buf(),
            base_dir,
        });
        audit.record(&AuditEntry {
            time: applied.at,
            actor: "startup".into(),
            remote: None,
            action: "start".into(),
            version_before: 0,
            version_after: 1,
            result: "applied",
            error: None,
            detail: Some(serde_json::json!({ "hash": applied.snapshot.hash })),
        });
        metrics::gauge!("switchyard_control_config_version").set(1.0);
        Ok(applier)
    }

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
        self.apply_locked(req, None)
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
        let outcome = self.apply_locked(
            ApplyRequest {
                text: Arc::from(text),
                origin: Origin::File,
                actor: Actor::system("file"),
                action: "config.reload",
                expect_version: None,
                dry_run: false,
            },
            None,
        );
        if force && matches!(outcome, Ok(ApplyOutcome::Unchanged { .. })) {
            self.refresh_locked();
        }
        Some(outcome)
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
        let text = {
            let history = lock(&self.history);
            match history.get(version) {
                Some(a) => a.snapshot.source.clone(),
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
        self.apply_locked(
            ApplyRequest {
                text,
                origin: Origin::Rollback,
                actor,
                action: "config.rollback",
                expect_version,
                dry_run: false,
            },
            None,
        )
    }

    /// Apply under the writer lock; `detail` goes into the audit line.
    fn apply_locked(
        &self,
        req: ApplyRequest,
        detail: Option<serde_json::Value>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let started = Instant::now();
        let before = self.current.load_full();
        let result = self.try_apply(&req, &before);
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
        if !(req.origin == Origin::File && label == "unchanged") {
            let res = result.as_ref().map(|_| label);
            let version = before.snapshot.version;
            self.audit_with(&req.actor, req.action, version, after, res, detail);
        }
        result
    }

    fn try_apply(
        &self,
        req: &ApplyRequest,
        before: &Arc<Applied>,
    ) -> Result<ApplyOutcome, ApplyError> {
        if let Some(expected) = req.expect_version {
            if expected != before.snapshot.version {
                return Err(ApplyError::Stale {
                    current: before.snapshot.version,
                    expected,
                });
            }
        }
        let config = parse_in(&req.text, &self.base_dir).map_err(ApplyError::Invalid)?;
        let hash = content_hash(&config);
        if hash == before.snapshot.hash {
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
        if !matches!(req.origin, Origin::File | Origin::Startup) {
            let previous = std::mem::replace(&mut *lock(&self.file_hash), text_hash(&req.text));
            if let Err(e) = write_atomically(&self.config_path, &req.text) {
                *lock(&self.file_hash) = previous;
                return Err(ApplyError::Persist(e));
            }
        }
        // Everything fallible is done: go live.
        prepared.into_iter().for_each(|p| p.commit());
        self.runtime.store(Arc::new(runtime));
        let limit = config.control.history_limit;
        let after = Arc::new(Applied {
            snapshot: Snapshot {
                version: before.snapshot.version + 1,
                hash,
                config,
                source: req.text.clone(),
            },
            at: OffsetDateTime::now_utc(),
            actor: req.actor.clone(),
            origin: req.origin,
        });
        self.current.store(after.clone());
        lock(&self.history).push((*after).clone(), limit);
        self.last_error.store(None);
        Ok(ApplyOutcome::Applied {
            before: before.snapshot.version,
            after,
            changes,
        })
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
fn parse_in(text: &str, base_dir: &Path) -> Result<Arc<Config>, ConfigErrors> {
    let mut config = switchyard_config::parse(text)?;
    config.resolve_paths(base_dir);
    Ok(Arc::new(config))
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
    /// The TOML text of a version still in the history.
    pub fn source_of(&self, version: u64) -> Option<Arc<str>> {
        lock(&self.history)
            .get(version)
            .map(|a| a.snapshot.source.clone())
    }
}
