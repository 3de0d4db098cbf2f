//! Where the config lives, seen from the control plane.
//!
//! - `file` (the default): the config file is the whole config. The version counter and
//!   the bounded history are also kept in a JSON state file (by default
//!   `<config stem>.state.json` beside it; `store.state_file`) ([`record`]), so both
//!   survive a restart.
//! - `etcd`: the shared document lives in etcd ([`etcd`]); every change is a
//!   compare-and-swap on its `mod_revision`, its history is kept as keys beside it, every
//!   node watches it and applies it through the single writer ([`sync`]), and registers
//!   itself with a lease ([`fleet`]), publishing its traffic counters so a flip is
//!   verified on the whole fleet's traffic ([`traffic`]); a job one node does for the fleet
//!   (verifying a flip) is held under a lease ([`hold`]).
//!
//! The data planes never wait on the store: they run the last applied config from memory.

pub mod drain;
pub mod etcd;
pub mod fleet;
pub mod hold;
pub mod record;
pub mod sync;
pub mod traffic;

use std::path::PathBuf;
use std::sync::Arc;

pub use etcd::{EtcdStore, Head};
pub use record::Record;

/// The store an [`crate::Applier`] writes through.
pub enum Store {
    /// The config file, and optionally a state file keeping version and history.
    File { state_file: Option<PathBuf> },
    /// A shared document in etcd; `local` is this node's own file (its node-local keys).
    Etcd {
        client: Arc<EtcdStore>,
        local: Arc<str>,
    },
}

impl Store {
    pub fn etcd(&self) -> Option<&Arc<EtcdStore>> {
        match self {
            Store::Etcd { client, .. } => Some(client),
            Store::File { .. } => None,
        }
    }

    /// What `/v1/status` shows of the store.
    pub fn status(&self) -> serde_json::Value {
        match self {
            Store::File { state_file } => serde_json::json!({
                "kind": "file",
                "state_file": state_file.as_ref().map(|p| p.display().to_string()),
            }),
            Store::Etcd { client, .. } => client.status(),
        }
    }
}
