//! [`Closing`]: how the client sessions of a draining process end, and the message a closed
//! one ends with.
//!
//! A process that drains (SIGTERM, or the old process of a binary upgrade) stops accepting
//! at once and lets its sessions run on. Two signals then move them, each taking effect at a
//! session's next transaction boundary, never in the middle of a transaction (the server has
//! answered everything the client sent with `ReadyForQuery` idle and nothing is half sent
//! either way):
//! - [`Closing::hand_over`] (an upgrade whose new process serves): a transaction-pooled
//!   client over plain TCP that holds no pinned connection is handed to the new process, its
//!   socket and its session state, through the [`HandoffSink`] the binary gives; the client
//!   notices nothing. TLS and session-mode clients stay.
//! - [`Closing::close_all`] (the drain timeout): every session left is told 57P01
//!   (`admin_shutdown`, FATAL, what PostgreSQL says on a fast shutdown) and closed; one
//!   inside a transaction is told once that transaction ends.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use switchyard_pgwire::backend::{self as message, SqlState};
use tokio::sync::{watch, Notify};

/// SQLSTATE `admin_shutdown`.
const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");

/// How far the sessions are being moved out, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Open,
    /// Hand eligible sessions to the new process at their next boundary.
    HandOver,
    /// Close every session at its next boundary.
    Close,
}

/// Where a handed-over session goes: its state (JSON, `pooling::transaction::handoff`) and
/// its client socket. `false`: it could not be taken, and the session is closed instead.
pub type HandoffSink = Arc<dyn Fn(Vec<u8>, OwnedFd) -> bool + Send + Sync>;

/// The sessions' way out; cheap to clone.
#[derive(Clone)]
pub struct Closing {
    mode: Arc<watch::Sender<Mode>>,
    /// Woken at each change of `mode`: what [`Closing::past`] waits on (a `Notified` is a
    /// third of the size of a `watch` wait, and every idle client waits on one).
    changed: Arc<Notify>,
    sink: Arc<Mutex<Option<HandoffSink>>>,
}

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closing")
            .field("mode", &self.mode())
            .finish()
    }
}

impl Default for Closing {
    fn default() -> Self {
        Closing {
            mode: Arc::new(watch::channel(Mode::Open).0),
            changed: Arc::default(),
            sink: Arc::default(),
        }
    }
}

impl Closing {
    /// Hand eligible sessions to `sink` at their next transaction boundary.
    pub fn hand_over(&self, sink: HandoffSink) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
        self.advance(Mode::HandOver);
    }

    /// Every session closes at its next transaction boundary.
    pub fn close_all(&self) {
        self.advance(Mode::Close);
    }

    fn advance(&self, to: Mode) {
        let moved = self.mode.send_if_modified(|m| {
            let later = *m < to;
            if later {
                *m = to;
            }
            later
        });
        if moved {
            self.changed.notify_waiters();
        }
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    pub fn is_closing(&self) -> bool {
        self.mode() == Mode::Close
    }

    /// Resolves once the mode is past `seen`; the mode then.
    pub async fn past(&self, seen: Mode) -> Mode {
        loop {
            // Made before the mode is read: a change after the read still wakes it.
            let changed = self.changed.notified();
            let now = self.mode();
            if now > seen {
                return now;
            }
            changed.await;
        }
    }

    /// Resolves once [`Closing::close_all`] was called.
    pub async fn wait(&self) {
        self.past(Mode::HandOver).await;
    }

    /// Hand a session over; `false` when there is no sink or it refused.
    pub fn hand(&self, state: Vec<u8>, socket: OwnedFd) -> bool {
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sink.is_some_and(|s| s(state, socket))
    }
}

/// The goodbye of a closed session, appended to `out`.
pub fn goodbye(out: &mut BytesMut) {
    message::error_response(
        out,
        "FATAL",
        ADMIN_SHUTDOWN,
        "terminating connection due to administrator command: switchyard is shutting down or upgrading (drain timeout); reconnect",
    );
}
