//! Readiness for a service manager: systemd's `Type=notify` protocol (`READY=1` sent as a
//! datagram to `$NOTIFY_SOCKET`, through the `sd-notify` crate) once Switchyard serves, and
//! `STOPPING=1` when it begins to stop.
//!
//! "Serves" means every listener accepts connections. The control API and the Postgres
//! listeners are bound before the control runtime runs this; pingora binds the HTTP listeners
//! inside `Server::run`, which offers no hook after its bind, so readiness waits until each
//! HTTP listener accepts a TCP connection (a connect to its own address, loopback for a
//! wildcard one). Without `$NOTIFY_SOCKET` nothing is probed or sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sd_notify::NotifyState;

/// How often a listener that does not accept yet is tried again.
const RETRY: Duration = Duration::from_millis(20);

/// Whether a service manager asked to be told (`$NOTIFY_SOCKET` is set).
pub fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Wait until every address in `http` accepts a connection, then send `READY=1` with a
/// status line naming `version`.
pub async fn notify_when_serving(http: Vec<SocketAddr>, version: u64) {
    if !wanted() {
        return;
    }
    for addr in http {
        let target = probe_address(addr);
        while tokio::net::TcpStream::connect(target).await.is_err() {
            tokio::time::sleep(RETRY).await;
        }
    }
    let status = format!("serving config version {version}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
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

/// Where to connect to reach a listener bound to `addr`: loopback for a wildcard address.
fn probe_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        let probe = |s: &str| probe_address(s.parse().unwrap());
        assert_eq!(probe("0.0.0.0:80"), "127.0.0.1:80".parse().unwrap());
        assert_eq!(probe("[::]:443"), "[::1]:443".parse().unwrap());
        assert_eq!(probe("10.1.2.3:8080"), "10.1.2.3:8080".parse().unwrap());
    }
}
