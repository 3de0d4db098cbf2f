//! Listening sockets bound outside pingora, and the moment pingora serves on them.
//!
//! A binary upgrade hands every listening socket from the running process to its successor
//! (the `switchyard upgrade` command, in the binary), so the HTTP listeners cannot be bound
//! inside pingora: the process binds them itself, or takes them from its predecessor, and
//! gives pingora its own copy of each. pingora 0.9 looks up a listener's address in its
//! shared fd table before it binds (`ListenerEndpointBuilder::listen` in
//! `pingora-core/src/listeners/l4.rs`) and uses the fd it finds there, so a
//! [`SocketSeed`] service that every listener service depends on puts the fds in that table
//! first. pingora's own upgrade (`--upgrade`, SIGQUIT, `upgrade_sock`) is not used: it has no
//! readiness answer from the new process and no way back if the new process fails, and the
//! old one sleeps a fixed 5 s and then its whole grace period.
//!
//! [`ServingProbe`] depends on every listener service: pingora starts it once each of them
//! has started (their accept loops follow at once, on sockets that already queue
//! connections), which is when the process may tell its predecessor to stop accepting.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::mpsc;

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

/// Puts already-bound listening sockets into pingora's fd table under their listener's
/// address, before any listener service binds.
pub(crate) struct SocketSeed {
    /// `(address as configured, socket)`: the address string is pingora's table key.
    sockets: Vec<(String, OwnedFd)>,
}

impl SocketSeed {
    pub(crate) fn new(sockets: Vec<(String, OwnedFd)>) -> Self {
        SocketSeed { sockets }
    }
}

#[async_trait]
impl ServiceWithDependents for SocketSeed {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        if let Some(table) = fds {
            let mut table = table.lock();
            for (addr, fd) in self.sockets.drain(..) {
                // pingora's listener owns (and closes) the fd it takes from the table; the
                // process keeps its own copy to hand to its successor.
                table.add(addr, fd.into_raw_fd());
            }
        }
        ready.notify_ready();
        let _ = shutdown.changed().await;
    }

    fn name(&self) -> &str {
        "socket seed"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}

/// Started by pingora once every listener service has started: says so on a channel.
pub(crate) struct ServingProbe {
    tx: Option<mpsc::Sender<()>>,
}

impl ServingProbe {
    pub(crate) fn new() -> (Self, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        (ServingProbe { tx: Some(tx) }, rx)
    }
}

#[async_trait]
impl ServiceWithDependents for ServingProbe {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        // Let the listener services' first poll (their bind from the table, then the accept
        // loops) run before this says they serve.
        tokio::task::yield_now().await;
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(());
        }
        ready.notify_ready();
        let _ = shutdown.changed().await;
    }

    fn name(&self) -> &str {
        "serving probe"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}
