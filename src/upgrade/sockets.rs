//! The listening sockets of this process: bound here, or taken from the process it upgrades.
//!
//! Every listener (HTTP, Postgres, control API, the upgrade socket) is bound by the binary,
//! not inside pingora or the router, so that one table holds a copy of each to hand to the
//! next process. A taken socket is matched to the config by what it is bound to
//! (`getsockname`, as HAProxy's `-x` does), or by the address the old config gave when that
//! had port 0; a configured listener with no match is bound fresh, and a taken socket no
//! listener claims is closed.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use super::wire::{Kind, SocketInfo};

/// Backlog of each TCP listener (the kernel caps it at `net.core.somaxconn`): connections
/// queue here while the old and new process hand over.
const BACKLOG: i32 = 4096;

/// One listening socket and what it serves.
pub struct Entry {
    pub info: SocketInfo,
    pub fd: OwnedFd,
}

/// The sockets this process listens on, each a copy kept to hand to the next process.
#[derive(Default)]
pub struct Listening {
    entries: Vec<Entry>,
}

impl Listening {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The sockets the previous process handed over, not yet claimed.
#[derive(Default)]
pub struct Inherited {
    entries: Vec<Entry>,
}

impl Inherited {
    pub fn new(sockets: Vec<SocketInfo>, fds: Vec<OwnedFd>) -> Self {
        Inherited {
            entries: sockets
                .into_iter()
                .zip(fds)
                .map(|(info, fd)| Entry { info, fd })
                .collect(),
        }
    }

    /// How many are left unclaimed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Close the sockets no listener claimed (a listener the new config removed or moved):
    /// kept open, one would queue connections nobody accepts once the old process is gone.
    pub fn close_unclaimed(&mut self) {
        for e in self.entries.drain(..) {
            tracing::info!(kind = ?e.info.kind, name = %e.info.name, configured = %e.info.configured, "upgrade: closing a socket this config does not use");
        }
    }

    /// The TCP socket of `kind` bound to `addr` (or configured as `addr`), if one was handed over.
    fn take_tcp(&mut self, kind: Kind, addr: SocketAddr) -> Option<OwnedFd> {
        let configured = addr.to_string();
        let i = self.entries.iter().position(|e| {
            e.info.kind == kind
                && (e.info.configured == configured
                    || (addr.port() != 0 && local_tcp(&e.fd) == Some(addr)))
        })?;
        Some(self.entries.swap_remove(i).fd)
    }

    /// The upgrade socket at `path`, if it was handed over.
    fn take_unix(&mut self, path: &Path) -> Option<OwnedFd> {
        let i = self
            .entries
            .iter()
            .position(|e| e.info.kind == Kind::Upgrade && Path::new(&e.info.configured) == path)?;
        Some(self.entries.swap_remove(i).fd)
    }
}

/// The address a TCP listening socket is bound to.
fn local_tcp(fd: &OwnedFd) -> Option<SocketAddr> {
    let copy = fd.try_clone().ok()?;
    std::net::TcpListener::from(copy).local_addr().ok()
}

/// The listening TCP socket for a listener of `kind` named `name` on `addr`: the one handed
/// over, or a new one. The socket is non-blocking; `listening` keeps a copy.
pub fn tcp(
    inherited: &mut Inherited,
    listening: &mut Listening,
    kind: Kind,
    name: &str,
    addr: SocketAddr,
) -> std::io::Result<OwnedFd> {
    let fd = match inherited.take_tcp(kind, addr) {
        Some(fd) => fd,
        None => bind_tcp(addr)?,
    };
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    let fd = OwnedFd::from(std);
    listening.entries.push(Entry {
        info: SocketInfo {
            kind,
            name: name.to_string(),
            configured: addr.to_string(),
        },
        fd: fd.try_clone()?,
    });
    Ok(fd)
}

/// A new listening TCP socket on `addr` (`SO_REUSEADDR`, not `SO_REUSEPORT`: two processes
/// share one socket by passing it, never by binding twice).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(OwnedFd::from(s))
}

/// The upgrade socket at `path`: the one handed over, or a new one (mode 0600; a stale file
/// nobody listens on is replaced). Blocking; `listening` keeps a copy.
pub fn upgrade_socket(
    inherited: &mut Inherited,
    listening: &mut Listening,
    path: &Path,
) -> std::io::Result<UnixListener> {
    let fd = match inherited.take_unix(path) {
        Some(fd) => fd,
        None => OwnedFd::from(bind_unix(path)?),
    };
    listening.entries.push(Entry {
        info: SocketInfo {
            kind: Kind::Upgrade,
            name: String::new(),
            configured: path.display().to_string(),
        },
        fd: fd.try_clone()?,
    });
    let l = UnixListener::from(fd);
    l.set_nonblocking(true)?;
    Ok(l)
}

fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Created 0600 (the umask covers the moment between bind and chmod).
    let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let l = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Descriptors of `listening`, in order, to attach to an offer.
pub fn borrowed(listening: &Listening) -> Vec<std::os::fd::BorrowedFd<'_>> {
    listening.entries.iter().map(|e| e.fd.as_fd()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_socket_is_matched_by_address_or_by_its_port_0_config() {
        let mut listening = Listening::default();
        let mut none = Inherited::default();
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = tcp(&mut none, &mut listening, Kind::Postgres, "main", zero).unwrap();
        let port = local_tcp(&a).unwrap().port();
        let fixed: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let infos = listening.entries.iter().map(|e| e.info.clone()).collect();
        let fds = listening
            .entries
            .iter()
            .map(|e| e.fd.try_clone().unwrap())
            .collect();
        // Configured as `:0` before: found by that, and by the port it got.
        let mut inherited = Inherited::new(infos, fds);
        let mut next = Listening::default();
        assert!(inherited.take_tcp(Kind::Http, fixed).is_none());
        let b = tcp(&mut inherited, &mut next, Kind::Postgres, "main", fixed).unwrap();
        assert_eq!(local_tcp(&b), Some(fixed));
        assert_eq!(inherited.len(), 0);
    }
}
