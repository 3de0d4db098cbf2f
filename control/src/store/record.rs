//! One version of the config as the store keeps it ([`Record`]: text plus who applied it,
//! when and from where), and file mode's state file (the version counter and the bounded
//! history, written atomically beside the config after every change).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::history::{Applied, Origin};
use crate::persist::write_atomically;

/// A stored version: what `<prefix>/history/<version>` and the state file hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub version: u64,
    /// Unix seconds.
    #[serde(with = "time::serde::timestamp")]
    pub applied_at: OffsetDateTime,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    pub source: Origin,
    pub text: String,
}

impl Record {
    pub fn of(applied: &Applied) -> Record {
        Record {
            version: applied.snapshot.version,
            applied_at: applied.at,
            actor: applied.actor.name.clone(),
            remote: applied.actor.remote,
            source: applied.origin,
            text: applied.snapshot.source.to_string(),
        }
    }
}

/// File mode's state file: the newest version and the history, newest last, and the
/// latest rollout of each upstream (its whole status as JSON, kept at every step so that a
/// restart resumes it: [`crate::ops::rollout`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u64,
    pub history: Vec<Record>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, serde_json::Value>,
}

/// Read the state file; `Ok(None)` when it does not exist yet.
pub fn read_state(path: &Path) -> Result<Option<State>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("state file {} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

/// Replace the state file (atomically). It holds every kept version's text, secrets
/// included, so a new one is readable by its owner only (the rename keeps that mode).
pub fn write_state(path: &Path, state: &State) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string(state).map_err(|e| e.to_string())?;
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot create state file {}: {e}", path.display()))?;
    }
    write_atomically(path, &text)
}
