//! Start-up: read the node's config file, find the version to start from in the store
//! (the file and its state file, or the shared document in etcd), and bring every plane up
//! with it.
//!
//! With etcd, a node whose store holds no document yet seeds it with its own file (minus
//! the node-local keys); a node that cannot reach etcd at start runs its own file as
//! version 0 and catches up when the store answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use switchyard_config::{content_hash, Config, ConfigErrors, Snapshot, StoreKind};
use time::OffsetDateTime;

use super::{parse_in, prepare_all, text_hash, Applier, ApplyError, StartError};
use crate::audit::AuditEntry;
use crate::history::{Actor, Applied, History, Origin};
use crate::plane::Plane;
use crate::runtime::ControlRuntime;
use crate::store::record::read_state;
use crate::store::{EtcdStore, Record, Store};

/// The version a node starts with.
struct Boot {
    text: Arc<str>,
    version: u64,
    at: OffsetDateTime,
    actor: Actor,
    origin: Origin,
    /// Earlier versions, oldest first.
    history: Vec<Record>,
    /// The rollouts the state file kept, by upstream.
    rollouts: BTreeMap<String, serde_json::Value>,
}

impl Boot {
    fn fresh(text: Arc<str>, version: u64, history: Vec<Record>) -> Boot {
        Boot {
            text,
            version,
            at: OffsetDateTime::now_utc(),
            actor: Actor::system("startup"),
            origin: Origin::Startup,
            history,
            rollouts: BTreeMap::new(),
        }
    }

    fn from_record(r: &Record, history: Vec<Record>) -> Boot {
        Boot {
            text: Arc::from(r.text.as_str()),
            version: r.version,
            at: r.applied_at,
            actor: Actor {
                name: r.actor.clone(),
                remote: r.remote,
            },
            origin: r.source,
            history,
            rollouts: BTreeMap::new(),
        }
    }
}

struct Local {
    path: PathBuf,
    text: String,
    base_dir: PathBuf,
    config: Config,
}

fn read_local(config_path: &Path) -> Result<Local, StartError> {
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
    let config = parse_in(&text, &base_dir, None).map_err(|e| StartError::Invalid {
        path: path_str,
        error: ApplyError::Invalid(e),
    })?;
    Ok(Local {
        path: config_path.to_path_buf(),
        text,
        base_dir,
        config: (*config).clone(),
    })
}

impl Applier {
    /// Load the config file and bring every plane up with it: with the version (and
    /// history) its state file kept (`store.state_file`), or version 1. File store only: a
    /// config with `store.kind = "etcd"` starts with [`Applier::open`].
    pub fn start(
        config_path: &Path,
        planes: Vec<Arc<dyn Plane>>,
    ) -> Result<Arc<Applier>, StartError> {
        let local = read_local(config_path)?;
        if local.config.store.kind == StoreKind::Etcd {
            return Err(StartError::Invalid {
                path: config_path.display().to_string(),
                error: ApplyError::Invalid(ConfigErrors::single(
                    "store.kind",
                    "an etcd store is opened with Applier::open, inside the control runtime",
                )),
            });
        }
        start_file(local, planes)
    }

    /// [`Applier::start`] for either store; with etcd, reads (or seeds) the shared document.
    pub async fn open(
        config_path: &Path,
        planes: Vec<Arc<dyn Plane>>,
    ) -> Result<Arc<Applier>, StartError> {
        let local = read_local(config_path)?;
        match local.config.store.kind {
            StoreKind::File => start_file(local, planes),
            StoreKind::Etcd => start_etcd(local, planes).await,
        }
    }
}

fn start_file(local: Local, planes: Vec<Arc<dyn Plane>>) -> Result<Arc<Applier>, StartError> {
    let state_file = local.config.store.state_file.for_config(&local.path);
    let mut state = match state_file.as_deref().map(read_state) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::warn!("{e}; versions start again at 1");
            None
        }
        None => None,
    };
    let text: Arc<str> = Arc::from(local.text.as_str());
    let rollouts = state
        .as_mut()
        .map(|s| std::mem::take(&mut s.rollouts))
        .unwrap_or_default();
    let mut boot = match state {
        Some(mut s) if s.version > 0 => match s.history.last() {
            // The file is what the last run left: carry on where it stopped.
            Some(r) if r.version == s.version && *r.text == *text => {
                let last = s.history.pop();
                match last {
                    Some(r) => Boot::from_record(&r, s.history),
                    None => Boot::fresh(text, 1, Vec::new()),
                }
            }
            // Edited while we were down: a new version.
            _ => Boot::fresh(text, s.version + 1, s.history),
        },
        _ => Boot::fresh(text, 1, Vec::new()),
    };
    boot.rollouts = rollouts;
    boot_with(&local, planes, Store::File { state_file }, boot)
}

async fn start_etcd(local: Local, planes: Vec<Arc<dyn Plane>>) -> Result<Arc<Applier>, StartError> {
    let invalid = |key: &str, msg: String| StartError::Invalid {
        path: local.path.display().to_string(),
        error: ApplyError::Invalid(ConfigErrors::single(key, msg)),
    };
    let Some(settings) = local.config.store.etcd.clone() else {
        return Err(invalid(
            "store",
            "kind = \"etcd\" without etcd settings".into(),
        ));
    };
    let node = settings
        .node
        .clone()
        .unwrap_or_else(|| default_node(local.config.control.listen.port()));
    let client = Arc::new(EtcdStore::new(settings, node));
    let shared = switchyard_config::store::strip_local(&local.text)
        .map_err(|e| invalid("(file)", e.to_string()))?;
    let limit = local.config.control.history_limit;
    let mut head = client.head().await;
    if let Ok(h) = &head {
        if h.version == 0 {
            let record = Record {
                version: 1,
                applied_at: OffsetDateTime::now_utc(),
                actor: "startup".into(),
                remote: None,
                source: Origin::Startup,
                text: shared.clone(),
            };
            tracing::info!(key = %client.doc_key(), "no shared config document yet: seeding it with this node's file");
            head = match client.seed(&shared, &record, limit).await {
                Ok(()) => client.head().await,
                Err(e) => Err(e),
            };
        }
    }
    let boot = match head {
        Ok(h) if h.version > 0 => {
            client.booted_from(h.read_revision);
            let mut history = client.history().await.unwrap_or_default();
            let own = history.iter().position(|r| r.version == h.version);
            let meta = own.map(|i| history.remove(i));
            history.retain(|r| r.version < h.version);
            match meta {
                Some(r) if r.text == h.text => Boot::from_record(&r, history),
                _ => Boot::fresh(Arc::from(h.text.as_str()), h.version, history),
            }
        }
        Ok(_) | Err(_) => {
            tracing::warn!(
                "the config store is unreachable at start: running this node's own file as version 0 until it answers"
            );
            Boot::fresh(Arc::from(shared.as_str()), 0, Vec::new())
        }
    };
    let store = Store::Etcd {
        client,
        local: Arc::from(local.text.as_str()),
    };
    boot_with(&local, planes, store, boot)
}

/// `<hostname>-<control port>`: unique per process on a host, stable across restarts.
fn default_node(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchyard".into());
    format!("{host}-{port}")
}

fn boot_with(
    local: &Local,
    planes: Vec<Arc<dyn Plane>>,
    store: Store,
    boot: Boot,
) -> Result<Arc<Applier>, StartError> {
    let invalid = |error| StartError::Invalid {
        path: local.path.display().to_string(),
        error,
    };
    let overlay = match &store {
        Store::Etcd { local, .. } => Some(local.clone()),
        Store::File { .. } => None,
    };
    let parse = |text: &str| parse_in(text, &local.base_dir, overlay.as_deref());
    let config = parse(&boot.text).map_err(|e| invalid(ApplyError::Invalid(e)))?;
    let runtime =
        ControlRuntime::build(&config, None).map_err(|e| invalid(ApplyError::Build(e)))?;
    let prepared = prepare_all(&planes, &config).map_err(|e| invalid(ApplyError::Build(e)))?;
    prepared.into_iter().for_each(|p| p.commit());
    let limit = config.control.history_limit;
    let mut history = History::default();
    for r in boot.history.iter().filter(|r| r.version < boot.version) {
        // An old version that no longer parses (a variable gone, …) is left out.
        if let Ok(c) = parse(&r.text) {
            let snapshot = Snapshot {
                version: r.version,
                hash: content_hash(&c),
                config: c,
                source: Arc::from(r.text.as_str()),
            };
            let mut old = Boot::from_record(r, Vec::new());
            old.text = snapshot.source.clone();
            history.push(
                Applied {
                    snapshot,
                    at: old.at,
                    actor: old.actor,
                    origin: old.origin,
                },
                limit,
            );
        }
    }
    let applied = Arc::new(Applied {
        snapshot: Snapshot {
            version: boot.version,
            hash: content_hash(&config),
            config,
            source: boot.text.clone(),
        },
        at: boot.at,
        actor: boot.actor,
        origin: boot.origin,
    });
    history.push((*applied).clone(), limit);
    let audit = runtime.audit.clone();
    let applier = Arc::new(Applier {
        writer: tokio::sync::Mutex::new(()),
        current: ArcSwap::new(applied.clone()),
        runtime: ArcSwap::from_pointee(runtime),
        history: Mutex::new(history),
        file_hash: Mutex::new(text_hash(&local.text)),
        last_error: ArcSwapOption::empty(),
        planes,
        config_path: local.path.clone(),
        base_dir: local.base_dir.clone(),
        store,
        failed_version: Mutex::new(None),
        rollouts: Mutex::new(boot.rollouts),
    });
    let version = applied.snapshot.version;
    audit.record(&AuditEntry {
        time: OffsetDateTime::now_utc(),
        actor: "startup".into(),
        remote: None,
        action: "start".into(),
        version_before: version.saturating_sub(1),
        version_after: version,
        result: "applied",
        error: None,
        detail: Some(serde_json::json!({ "hash": applied.snapshot.hash })),
    });
    metrics::gauge!("switchyard_control_config_version").set(version as f64);
    applier.save_state();
    Ok(applier)
}
