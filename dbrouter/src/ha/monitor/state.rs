//! The monitor's verdicts: [`NodeMonitor`], what is known about each node by address (the
//! latest check, failures in a row, `down`), written by the check loops ([`super::run`]) and
//! read by everyone who routes or fails over.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::Serialize;

use super::lsn::Lsn;

/// Primary WAL positions remembered per node to date replica lag (one per check that saw the
/// position move: at the default 300 ms, about five minutes of writing).
const HISTORY_LEN: usize = 1024;

/// Monitor state of every node, by address (`host:port`). Lives in the plane.
#[derive(Debug, Default)]
pub struct NodeMonitor {
    pub(super) nodes: DashMap<String, Arc<NodeEntry>>,
}

#[derive(Debug, Default)]
pub(super) struct NodeEntry {
    /// Replaced whole after each check: readers load it without locking.
    pub(super) view: ArcSwap<NodeView>,
    /// `(first seen, position)` of each primary WAL position observed, oldest first.
    pub(super) wal_history: Mutex<VecDeque<(Instant, Lsn)>>,
}

/// What the monitor knows about one node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// When the latest completed check started; `None` before the first one.
    pub checked_at: Option<Instant>,
    /// Whether the latest check succeeded.
    pub reachable: bool,
    /// Why the latest failed check failed (kept after recovery, for status).
    pub last_error: Option<CheckError>,
    pub consecutive_failures: u32,
    /// When the first check of the current streak of failures started.
    pub failing_since: Option<Instant>,
    /// `failure_threshold` checks in a row failed; cleared by one success.
    pub down: bool,
    /// What the latest successful check saw.
    pub observed: Option<Observed>,
    pub checks_ok: u64,
    pub checks_failed: u64,
}

/// One successful check's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// `pg_is_in_recovery()`: the node is a standby.
    pub in_recovery: bool,
    /// `pg_current_wal_lsn()`, on a primary.
    pub current_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()`, on a replica.
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()`, on a replica.
    pub replay_lsn: Option<Lsn>,
    /// `now() - pg_last_xact_replay_timestamp()` on the replica at the check (misleading when
    /// the primary is idle: used only when WAL positions cannot date the lag).
    pub replay_age: Option<Duration>,
    /// `pg_stat_wal_receiver.status` (`streaming`, `waiting`, …), `unknown` when the monitor's
    /// user may not see it (grant it `pg_monitor`), `None` when there is no WAL receiver.
    pub wal_receiver: Option<String>,
}

impl Observed {
    /// The WAL receiver is streaming (or runs, with a status our user may not read).
    pub fn streaming(&self) -> bool {
        matches!(self.wal_receiver.as_deref(), Some("streaming" | "unknown"))
    }
}

/// Why a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection was refused: nothing listens on the port.
    Refused,
    /// No answer within `check_timeout` (host down, network cut, or server stuck).
    TimedOut,
    /// The server is shutting down or starting up (SQLSTATE 57P01, 57P02 or 57P03).
    AdminShutdown,
    /// The server refused the monitor's login (SQLSTATE class 28).
    Auth,
    /// Another error from the server.
    Server,
    /// The connection broke without the server saying why.
    ConnectionLost,
    /// Any other network error (name resolution, unreachable host, reset).
    Io,
    /// The answer did not make sense (an LSN that does not parse, a missing row).
    BadAnswer,
}

impl ErrorKind {
    /// The label in metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::AdminShutdown => "admin_shutdown",
            ErrorKind::Auth => "auth",
            ErrorKind::Server => "server_error",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Io => "io",
            ErrorKind::BadAnswer => "bad_answer",
        }
    }
}

/// A failed check: its kind and what was said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CheckError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CheckError {
            kind,
            message: message.into(),
        }
    }
}

/// A change of a node's `down` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up,
}

// === impl NodeMonitor ===

impl NodeMonitor {
    /// What is known about the node at `addr`, if it has been checked.
    pub fn view(&self, addr: &str) -> Option<Arc<NodeView>> {
        let entry = self.nodes.get(addr)?;
        let view = entry.view.load_full();
        view.checked_at.is_some().then_some(view)
    }

    /// Record a check of `addr` that started at `started`. The monitor's own tasks call
    /// this; tests call it to set up states. Returns the change of the `down` flag, if any.
    pub fn record(
        &self,
        addr: &str,
        started: Instant,
        outcome: Result<Observed, CheckError>,
        failure_threshold: u32,
    ) -> Option<Transition> {
        let entry = self.entry(addr);
        let old = entry.view.load_full();
        let mut view = (*old).clone();
        view.checked_at = Some(started);
        match outcome {
            Ok(observed) => {
                if let (false, Some(lsn)) = (observed.in_recovery, observed.current_lsn) {
                    let mut history = lock(&entry.wal_history);
                    if history.back().is_none_or(|&(_, last)| lsn > last) {
                        history.push_back((started, lsn));
                        if history.len() > HISTORY_LEN {
                            history.pop_front();
                        }
                    }
                }
                view.reachable = true;
                view.consecutive_failures = 0;
                view.failing_since = None;
                view.down = false;
                view.observed = Some(observed);
                view.checks_ok += 1;
            }
            Err(e) => {
                view.reachable = false;
                view.failing_since = view.failing_since.or(Some(started));
                view.consecutive_failures = view.consecutive_failures.saturating_add(1);
                view.down = view.down || view.consecutive_failures >= failure_threshold.max(1);
                view.last_error = Some(e);
                view.checks_failed += 1;
            }
        }
        let transition = match (old.down, view.down) {
            (false, true) => Some(Transition::Down),
            (true, false) => Some(Transition::Up),
            _ => None,
        };
        entry.view.store(Arc::new(view));
        transition
    }

    /// Drop what is known about `addr` (it left the config).
    pub fn forget(&self, addr: &str) {
        self.nodes.remove(addr);
    }

    fn entry(&self, addr: &str) -> Arc<NodeEntry> {
        crate::registry::shared(&self.nodes, addr)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
