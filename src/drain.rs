//! How the process stops: one [`Stopping`] state that every accept loop watches, set by
//! SIGTERM, SIGINT or a finished upgrade, and the drain that ends the process.
//!
//! A drain (SIGTERM, or the new process of an upgrade serving) stops every accept loop at
//! once: pingora's listeners (through [`PingoraStop`], our `ShutdownSignalWatch`), the
//! Postgres listeners, the control API, the upgrade socket. Requests in flight run on;
//! pingora answers the next request on a kept-alive connection with `Connection: close`
//! (HTTP/2: GOAWAY), and idle ones close soon after (`switchyard_proxy::edge::DRAIN_IDLE`).
//! The process exits as soon as no client connection is left on any plane, or when the
//! grace timeout ends, whichever comes first: pingora's own graceful stop sleeps its whole
//! grace period even when nothing is left, so it is only the ceiling here.
//!
//! SIGINT stops at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::watch;

/// How long a SIGTERM lets requests and sessions finish.
pub const TERM_GRACE: Duration = Duration::from_secs(10);

/// How often a drain checks for connections left.
const POLL: Duration = Duration::from_millis(20);

/// Where the process is in stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// Accept nothing new; let HTTP requests finish for `grace` and Postgres sessions run for
    /// `pg_drain`, then exit. `handed_over`: a new process serves (an upgrade), so this one
    /// does not tell the service manager it stops.
    Drain {
        grace: Duration,
        pg_drain: Duration,
        handed_over: bool,
    },
    /// Exit now.
    Fast,
}

/// The process's stop state; cheap to clone.
#[derive(Clone)]
pub struct Stopping(Arc<watch::Sender<Stop>>);

impl Default for Stopping {
    fn default() -> Self {
        Stopping(Arc::new(watch::channel(Stop::Running).0))
    }
}

impl Stopping {
    /// Start a drain (no effect once stopping).
    pub fn drain(&self, grace: Duration, pg_drain: Duration, handed_over: bool) {
        self.0.send_if_modified(|s| {
            let start = *s == Stop::Running;
            if start {
                *s = Stop::Drain {
                    grace,
                    pg_drain,
                    handed_over,
                };
            }
            start
        });
    }

    /// Stop now.
    pub fn fast(&self) {
        self.0.send_replace(Stop::Fast);
    }

    /// Resolves once the process stops accepting; the stop it is.
    pub async fn stopped(&self) -> Stop {
        let mut rx = self.0.subscribe();
        let stop = match rx.wait_for(|s| *s != Stop::Running).await {
            Ok(s) => *s,
            Err(_) => Stop::Fast,
        };
        stop
    }
}

/// pingora's shutdown signal, from [`Stopping`]: a drain is its graceful terminate.
pub struct PingoraStop(pub Stopping);

#[async_trait]
impl ShutdownSignalWatch for PingoraStop {
    async fn recv(&self) -> ShutdownSignal {
        match self.0.stopped().await {
            Stop::Fast => ShutdownSignal::FastShutdown,
            _ => ShutdownSignal::GracefulTerminate,
        }
    }
}

/// SIGTERM drains, SIGINT stops at once.
pub async fn signals(stopping: Stopping) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install the SIGTERM and SIGINT handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining");
                stopping.drain(TERM_GRACE, TERM_GRACE, false);
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                stopping.fast();
            }
        }
    }
}

/// The client connections still open, on every plane.
pub trait Open: Send + Sync {
    fn http(&self) -> usize;
    fn postgres(&self) -> u64;
    /// Close every Postgres session at its next transaction boundary.
    fn close_postgres(&self);
    /// Write out what is still buffered (the access logs) before the process exits.
    fn finish(&self);
}

/// Wait for the stop, then for the connections to close (bounded), then end the process.
pub async fn exit_when_drained(stopping: Stopping, open: Arc<dyn Open>) {
    let stop = stopping.stopped().await;
    let Stop::Drain {
        grace,
        pg_drain,
        handed_over,
    } = stop
    else {
        crate::readiness::notify_stopping();
        open.finish();
        tracing::info!("switchyard stopped");
        std::process::exit(0);
    };
    if !handed_over {
        crate::readiness::notify_stopping();
    }
    let started = tokio::time::Instant::now();
    // A Postgres session still inside a transaction this long after it was asked to close
    // is cut (the server rolls the transaction back).
    let pg_cap = pg_drain + grace;
    let cap = grace.max(pg_cap);
    let mut closing = false;
    loop {
        let (http, pg) = (open.http(), open.postgres());
        let waited = started.elapsed();
        if pg > 0 && waited >= pg_drain && !closing {
            tracing::info!(
                postgres_sessions = pg,
                "drain timeout: closing Postgres sessions between transactions"
            );
            open.close_postgres();
            closing = true;
        }
        let http_done = http == 0 || waited >= grace;
        let pg_done = pg == 0 || waited >= pg_cap;
        if http_done && pg_done {
            tracing::info!(
                http_connections = http,
                postgres_sessions = pg,
                drained_ms = waited.as_millis() as u64,
                "drained; switchyard stopped"
            );
            open.finish();
            std::process::exit(0);
        }
        if waited >= cap {
            tracing::warn!(
                http_connections = http,
                postgres_sessions = pg,
                "grace over: stopping with connections open"
            );
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    open.finish();
    std::process::exit(0);
}
