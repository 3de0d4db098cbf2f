//! Switchyard's config: TOML text in, a validated [`Config`] out.
//!
//! This crate is pure data: no async runtime, no sockets, no files. [`parse`] reads TOML and
//! validates it into [`Config`], reporting every problem at once with its key path and line
//! ([`ConfigErrors`]). [`Snapshot`] is what the rest of the program sees of an applied config;
//! [`redact`], [`diff`](mod@diff) and [`edit`] serve the control API.

#![forbid(unsafe_code)]

pub mod diff;
pub mod edit;
pub mod error;
pub mod model;
mod paths;
mod raw;
pub mod redact;
mod source;
pub mod store;
mod validate;

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use diff::{diff, Change};
pub use error::{ConfigError, ConfigErrors, KeyPath};
pub use model::*;
pub use source::Source;
pub use validate::{parse, parse_address, MAX_BACKENDS, MAX_CONFIG_BYTES};

/// An applied config: its version, content hash, the validated model and the text it came from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Monotonically increasing; the first applied config is version 1.
    pub version: u64,
    /// [`content_hash`] of `config`.
    pub hash: String,
    pub config: Arc<Config>,
    /// The TOML text, as written to the config file.
    pub source: Arc<str>,
}

/// SHA-256 (hex) of the canonical form of a validated config: two files that differ only in
/// comments, layout, key order or defaults spelled out have the same hash.
pub fn content_hash(config: &Config) -> String {
    // Serializing plain data to JSON cannot fail (no maps with non-string keys, no I/O).
    let canonical = serde_json::to_vec(config).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

impl Config {
    /// A one-line summary, as printed by `switchyard check`.
    pub fn summary(&self) -> String {
        let backends: usize = self
            .http
            .upstreams
            .values()
            .flat_map(|u| u.pools.values())
            .map(|p| p.backends.len())
            .sum();
        let nodes: usize = self.postgres.clusters.iter().map(|c| c.nodes.len()).sum();
        format!(
            "{} listener(s), {} route(s), {} upstream(s) with {} backend(s), {} Postgres cluster(s) with {} node(s), {} control token(s)",
            self.http.listeners.len(),
            self.http.routes.len(),
            self.http.upstreams.len(),
            backends,
            self.postgres.clusters.len(),
            nodes,
            self.control.tokens.len(),
        )
    }
}

#[cfg(test)]
mod tests;
