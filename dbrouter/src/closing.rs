//! [`Closing`]: the signal that every client session of the process ends at its next
//! transaction boundary, and the message it ends with.
//!
//! A process that drains (SIGTERM, or the old process of a binary upgrade) stops accepting
//! at once and lets its sessions run on: session-mode and TLS clients stay until they leave
//! or the drain timeout ends. Then the binary calls [`Closing::close_all`], and each session
//! closes at the first moment it is between transactions, never in the middle of one: the
//! server has answered everything the client sent with `ReadyForQuery` idle and nothing is
//! half sent either way. The client is told 57P01 (`admin_shutdown`, FATAL, what
//! PostgreSQL says on a fast shutdown), then the connection closes; a client inside a
//! transaction is told once that transaction ends.

use std::sync::Arc;

use bytes::BytesMut;
use switchyard_pgwire::backend::{self as message, SqlState};
use tokio::sync::watch;

/// SQLSTATE `admin_shutdown`.
const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");

/// Whether sessions are to close at their next transaction boundary; cheap to clone.
#[derive(Debug, Clone)]
pub struct Closing(Arc<watch::Sender<bool>>);

impl Default for Closing {
    fn default() -> Self {
        Closing(Arc::new(watch::channel(false).0))
    }
}

impl Closing {
    /// Every session closes at its next transaction boundary.
    pub fn close_all(&self) {
        self.0.send_replace(true);
    }

    pub fn is_closing(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`Closing::close_all`] was called.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
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
