//! The bounded history of applied configs, for `GET /v1/config/history` and rollback.

use std::collections::VecDeque;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use switchyard_config::Snapshot;
use time::OffsetDateTime;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The config file at start-up.
    Startup,
    /// An edit of the config file (watcher, periodic check or SIGHUP).
    File,
    /// `PUT /v1/config` or a runtime operation through the API.
    Api,
    /// `POST /v1/config/rollback`.
    Rollback,
    /// An automatic Postgres failover.
    Failover,
    /// A version of the shared document another node wrote (etcd store).
    Store,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Startup => "startup",
            Origin::File => "file",
            Origin::Api => "api",
            Origin::Rollback => "rollback",
            Origin::Failover => "failover",
            Origin::Store => "store",
        }
    }
}

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// Token name for API calls; `file`, `failover`, … otherwise.
    pub name: String,
    pub remote: Option<SocketAddr>,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            name: name.to_string(),
            remote: None,
        }
    }
}

/// One applied config and how it came to be applied.
#[derive(Debug, Clone)]
pub struct Applied {
    pub snapshot: Snapshot,
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub origin: Origin,
}

/// What the history listing shows of an entry (not the config itself).
#[derive(Debug, Serialize)]
pub struct HistoryLine<'a> {
    pub version: u64,
    pub hash: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub applied_at: OffsetDateTime,
    pub actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    pub source: Origin,
}

impl Applied {
    pub fn line(&self) -> HistoryLine<'_> {
        HistoryLine {
            version: self.snapshot.version,
            hash: &self.snapshot.hash,
            applied_at: self.at,
            actor: &self.actor.name,
            remote: self.actor.remote,
            source: self.origin,
        }
    }
}

/// The most recent applied configs, newest last.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Applied>,
}

impl History {
    pub fn push(&mut self, applied: Applied, limit: usize) {
        self.entries.push_back(applied);
        while self.entries.len() > limit.max(1) {
            self.entries.pop_front();
        }
    }

    pub fn get(&self, version: u64) -> Option<&Applied> {
        self.entries.iter().find(|a| a.snapshot.version == version)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Applied> {
        self.entries.iter()
    }

    pub fn oldest_version(&self) -> Option<u64> {
        self.entries.front().map(|a| a.snapshot.version)
    }
}
