//! Readiness for a service manager: systemd's `Type=notify` protocol (`READY=1` sent as a
//! datagram to `$NOTIFY_SOCKET`, through the `sd-notify` crate) once Switchyard serves, and
//! `STOPPING=1` when it begins to stop.
//!
//! "Serves" means every listener is bound and its accept loop started: the control API and
//! the Postgres listeners before pingora runs, the HTTP listeners when pingora has started
//! each listener service on the socket the process bound for it (or took over:
//! `switchyard_proxy::takeover`). The new process of an upgrade also sends `MAINPID=` with
//! its own pid, so systemd follows it (the unit needs `NotifyAccess=all`). Without
//! `$NOTIFY_SOCKET` nothing is sent.

use sd_notify::NotifyState;

/// Whether a service manager asked to be told (`$NOTIFY_SOCKET` is set).
pub fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Send `READY=1` with a status line naming `version`; `MAINPID=` too after an upgrade.
pub fn notify_ready(version: u64, upgraded: bool) {
    if !wanted() {
        return;
    }
    let status = format!("serving config version {version}");
    let pid = std::process::id();
    let mut states = vec![NotifyState::Ready, NotifyState::Status(&status)];
    if upgraded {
        states.insert(0, NotifyState::MainPid(pid));
    }
    send(&states);
    tracing::info!("told the service manager that switchyard is ready");
}

/// Send `STOPPING=1`.
pub fn notify_stopping() {
    if wanted() {
        send(&[NotifyState::Stopping]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
