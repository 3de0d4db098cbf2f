//! Versions that come from the store rather than from a request: the shared document as
//! etcd holds it (read before every change, and pushed by the watch in
//! `store/sync.rs`), and file mode's state file written after every change.

use std::sync::Arc;
use std::time::Instant;

use switchyard_config::{content_hash, ConfigErrors, Snapshot};
use time::OffsetDateTime;

use super::{lock, prepare_all, Applier, ApplyError, ReloadError};
use crate::history::{Actor, Applied, Origin};
use crate::runtime::ControlRuntime;
use crate::store::record::{write_state, State};
use crate::store::{EtcdStore, Head, Record, Store};

impl Applier {
    /// With etcd: read the shared document and apply it here if it is newer than the running
    /// version. Returns it, `None` for the file store; unreachable etcd is
    /// [`ApplyError::Unavailable`]. Call under the writer lock.
    pub(super) async fn sync_locked(&self) -> Result<Option<Head>, ApplyError> {
        let Some(store) = self.store.etcd() else {
            return Ok(None);
        };
        let head = store.head().await.map_err(ApplyError::Unavailable)?;
        self.apply_head_locked(store, &head).await;
        Ok(Some(head))
    }

    /// Apply a version of the shared document seen by the watch (skipped when it is not
    /// newer than the running one). A document that does not build keeps the running
    /// version and is reported in `/v1/status` with its key paths.
    pub async fn apply_from_store(&self, store: &EtcdStore, head: &Head) {
        let _writer = self.writer.lock().await;
        self.apply_head_locked(store, head).await;
    }

    /// Read the shared document again and apply it, also a version refused before (what
    /// made it fail here may have changed: another Switchyard's rejoin lifted a fence). A
    /// no-op without a shared store, or when the store cannot be read (the watch applies the
    /// next version anyway).
    pub async fn resync_store(&self) {
        let Some(store) = self.store().etcd().cloned() else {
            return;
        };
        match store.head().await {
            Ok(head) => {
                let _writer = self.writer.lock().await;
                *lock(&self.failed_version) = None;
                self.apply_head_locked(&store, &head).await;
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the shared config failed"),
        }
    }

    async fn apply_head_locked(&self, store: &EtcdStore, head: &Head) {
        let before = self.current();
        if head.version == 0 || head.version <= before.snapshot.version {
            return;
        }
        if *lock(&self.failed_version) == Some(head.version) {
            return;
        }
        let started = Instant::now();
        let meta: Option<Record> = store
            .record(head.version)
            .await
            .ok()
            .flatten()
            .filter(|r| r.text == head.text);
        let (actor, origin, at) = match &meta {
            Some(r) => (
                Actor {
                    name: r.actor.clone(),
                    remote: r.remote,
                },
                r.source,
                r.applied_at,
            ),
            None => (
                Actor::system("store"),
                Origin::Store,
                OffsetDateTime::now_utc(),
            ),
        };
        let built = self
            .parse(&head.text)
            .map_err(ApplyError::Invalid)
            .and_then(|config| {
                let runtime = ControlRuntime::build(&config, Some(&self.runtime.load()))
                    .map_err(ApplyError::Build)?;
                let prepared = prepare_all(&self.planes, &config).map_err(ApplyError::Build)?;
                Ok((config, runtime, prepared))
            });
        let version_before = before.snapshot.version;
        match built {
            Ok((config, runtime, prepared)) => {
                let after = Arc::new(Applied {
                    snapshot: Snapshot {
                        version: head.version,
                        hash: content_hash(&config),
                        config,
                        source: Arc::from(head.text.as_str()),
                    },
                    at,
                    actor: actor.clone(),
                    origin,
                });
                self.go_live(prepared, runtime, after);
                metrics::counter!("switchyard_control_reloads_total", "source" => "store", "result" => "applied").increment(1);
                metrics::histogram!("switchyard_control_apply_duration_seconds", "source" => "store")
                    .record(started.elapsed().as_secs_f64());
                metrics::gauge!("switchyard_control_config_version").set(head.version as f64);
                tracing::info!(version = head.version, by = %actor.name, "shared config applied");
                let detail = serde_json::json!({ "origin": origin });
                let v = Some(head.version);
                self.audit_with(
                    &actor,
                    "config.sync",
                    version_before,
                    v,
                    Ok("applied"),
                    Some(detail),
                );
            }
            Err(e) => {
                tracing::warn!(
                    version = head.version,
                    "shared config refused, keeping version {version_before}: {e}"
                );
                metrics::counter!("switchyard_control_reloads_total", "source" => "store", "result" => "rejected").increment(1);
                self.last_error.store(Some(Arc::new(ReloadError {
                    at: OffsetDateTime::now_utc(),
                    source: Origin::Store,
                    errors: e.errors(),
                })));
                *lock(&self.failed_version) = Some(head.version);
                let detail = serde_json::json!({ "refused_version": head.version });
                self.audit_with(
                    &actor,
                    "config.sync",
                    version_before,
                    None,
                    Err(&e),
                    Some(detail),
                );
            }
        }
    }

    /// With etcd, why this node cannot base an edit on the running version: the newest
    /// shared version failed to build here. `None` when it runs the newest.
    pub(super) fn behind(&self, head: Option<&Head>) -> Option<ApplyError> {
        let head = head?;
        let running = self.current().snapshot.version;
        if head.version == running {
            return None;
        }
        let mut errors = self
            .last_error()
            .map(|e| e.errors.clone())
            .unwrap_or_default();
        errors.insert(
            0,
            ConfigErrors::single(
                "(store)",
                format!(
                    "this node runs version {running} because the fleet's version {} does not build here; fix the shared document first",
                    head.version
                ),
            )
            .0
            .remove(0),
        );
        Some(ApplyError::Build(ConfigErrors(errors)))
    }

    /// File store with a state file (unless `store.state_file = "off"`): write the version and the history. A failure
    /// (a read-only directory) only costs durability: it is logged, nothing else.
    pub(super) fn save_state(&self) {
        let Store::File {
            state_file: Some(path),
        } = &self.store
        else {
            return;
        };
        let rollouts = lock(&self.rollouts);
        let state = State {
            version: self.current().snapshot.version,
            history: lock(&self.history).iter().map(Record::of).collect(),
            rollouts: rollouts.clone(),
        };
        if let Err(e) = write_state(path, &state) {
            tracing::warn!("cannot keep version and history: {e}");
        }
    }

    /// Whether this applier keeps a state file (file store, `store.state_file` not off):
    /// then a rollout's status is kept there ([`Applier::keep_rollout`]).
    pub fn keeps_state(&self) -> bool {
        matches!(
            self.store,
            Store::File {
                state_file: Some(_)
            }
        )
    }

    /// Keep `status` as the latest rollout of `upstream` in the state file, and write it.
    pub fn keep_rollout(&self, upstream: &str, status: serde_json::Value) {
        lock(&self.rollouts).insert(upstream.to_string(), status);
        self.save_state();
    }

    /// The rollouts the state file kept when this process started (and kept since).
    pub fn kept_rollouts(&self) -> Vec<serde_json::Value> {
        lock(&self.rollouts).values().cloned().collect()
    }
}
