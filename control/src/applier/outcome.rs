//! What the applier is asked to do and what it answers: [`ApplyRequest`], [`ApplyOutcome`],
//! [`ApplyError`], and the errors shown for a failed reload or start-up.

use std::sync::Arc;

use switchyard_config::edit::EditError;
use switchyard_config::{Change, ConfigError, ConfigErrors};
use time::OffsetDateTime;

use crate::history::{Actor, Applied, Origin};

/// A request to apply config text.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub text: Arc<str>,
    pub origin: Origin,
    pub actor: Actor,
    /// Audit action name (`config.put`, `config.reload`, …).
    pub action: &'static str,
    /// Refuse unless the running version is this one (`If-Match`).
    pub expect_version: Option<u64>,
    /// Validate, build and diff, but change nothing.
    pub dry_run: bool,
}

/// What an apply did.
#[derive(Debug)]
pub enum ApplyOutcome {
    Applied {
        before: u64,
        after: Arc<Applied>,
        changes: Vec<Change>,
    },
    /// The config is identical (same content hash) to the running one.
    Unchanged { current: Arc<Applied> },
    /// `dry_run`: what would change.
    DryRun {
        current: u64,
        hash: String,
        changes: Vec<Change>,
    },
}

/// Why an apply changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("config version is {current}, not {expected}")]
    Stale { current: u64, expected: u64 },
    #[error("{0}")]
    Build(ConfigErrors),
    #[error("{0}")]
    Persist(String),
    #[error("version {version} is not in the history (oldest kept: {oldest:?})")]
    UnknownVersion { version: u64, oldest: Option<u64> },
    /// A runtime operation could not edit the running config's text (unknown upstream,
    /// pool or backend, …); [`EditError::kind`] says how to answer.
    #[error("{0}")]
    Edit(EditError),
    /// The config store (etcd) cannot be reached: nothing was changed.
    #[error("config store unreachable: {0}")]
    Unavailable(String),
    /// The shared document changed between read and write (retried, or 412 with If-Match).
    #[error("the shared config document changed concurrently")]
    Conflict,
}

impl ApplyError {
    /// The errors as a list, for API responses and the status page.
    pub fn errors(&self) -> Vec<ConfigError> {
        match self {
            ApplyError::Invalid(e) | ApplyError::Build(e) => e.0.clone(),
            other => vec![ConfigError {
                path: "(apply)".into(),
                line: None,
                message: other.to_string(),
            }],
        }
    }
}

/// The last failed reload from the file, shown in `/v1/status` until a later apply succeeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadError {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source: Origin,
    pub errors: Vec<ConfigError>,
}

/// Why Switchyard could not start with the config file.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path} is not valid:\n{error}")]
    Invalid { path: String, error: ApplyError },
}

/// Who asks for an edit of the running config, and how it is recorded.
#[derive(Debug, Clone)]
pub struct EditRequest {
    /// Audit action name (`upstream.weights`, `upstream.flip`, …).
    pub action: &'static str,
    pub actor: Actor,
    pub origin: Origin,
    /// Refuse unless the running version is this one.
    pub expect_version: Option<u64>,
    /// Written to the audit line's `detail` (what was asked for, and why).
    pub detail: Option<serde_json::Value>,
}
