//! The upgrade channel's messages and their framing: `SYUP`, a version, a length and a JSON
//! body, with file descriptors attached to the frame by `SCM_RIGHTS`.
//!
//! Both channels use it: the `switchyard upgrade` command to the running process (a unix
//! socket on a path, mode 0600), and the running process to the new one (a socketpair that
//! is the new process's standard input). Each side checks that its peer runs as the same
//! user (`SO_PEERCRED`; root may also drive an upgrade). A frame with another magic or
//! version is refused, not guessed at: the new process then fails before it is ready and the
//! old one goes on serving.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"SYUP";
/// The frame format this binary speaks. A process of another version refuses the frame.
pub const VERSION: u16 = 1;
/// Magic, version and body length.
const HEADER: usize = 10;
/// A body longer than this is refused (a few listeners' descriptions fit in a kilobyte).
const MAX_BODY: usize = 1 << 20;
/// The most descriptors one frame carries (Linux allows 253 per message).
pub const MAX_FDS: usize = 64;

/// What kind of listening socket an entry of an [`Message::Offer`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An HTTP listener (`http.listeners[]`).
    Http,
    /// A Postgres cluster's listener (`postgres.clusters[].listen`).
    Postgres,
    /// The control API (`control.listen`).
    Control,
    /// The upgrade socket itself (a unix socket).
    Upgrade,
}

/// One listening socket offered to the new process; its descriptor is at the same index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SocketInfo {
    pub kind: Kind,
    /// The listener's or cluster's name (empty for the control API and the upgrade socket).
    pub name: String,
    /// The address as configured (`127.0.0.1:0` stays `:0`), or the unix socket's path.
    pub configured: String,
}

/// Every message of both channels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Command to running process: start `binary` (the running one's when `None`) on the
    /// running config and hand over to it.
    Upgrade {
        binary: Option<PathBuf>,
        /// How long the old process lets HTTP requests in flight finish.
        grace_ms: u64,
        /// How long the old process keeps Postgres sessions before it closes them between
        /// transactions.
        pg_drain_ms: u64,
        /// How long the new process may take to be ready.
        timeout_ms: u64,
    },
    /// Running process to command: a step done.
    Progress { text: String },
    /// Running process to command: the outcome; `pid` is the process that serves now.
    Done { ok: bool, pid: u32, text: String },
    /// Old to new process, with one descriptor per entry.
    Offer {
        old_pid: u32,
        sockets: Vec<SocketInfo>,
    },
    /// New to old process: it serves on every socket it took.
    Ready { pid: u32 },
    /// New to old process: it cannot serve, and why.
    Failed { error: String },
    /// Old to new process: it stops accepting on every socket now.
    Released,
    /// Old to new process, with the client's socket: a transaction-pooled Postgres session
    /// between transactions (`switchyard_dbrouter::pooling::transaction::handoff`, JSON).
    Client { state: String },
    /// New to old process: a `CancelRequest` its listener got for a session still on the
    /// old process.
    Cancel {
        cluster: String,
        pid: u32,
        secret: u32,
    },
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the channel")]
    Closed,
    #[error("not an upgrade frame (magic {0:02x?})")]
    Magic([u8; 4]),
    #[error("upgrade frame version {0}, this binary speaks {VERSION}")]
    Version(u16),
    #[error("upgrade frame of {0} bytes (at most {MAX_BODY})")]
    TooLong(usize),
    #[error("more descriptors than a frame carries (at most {MAX_FDS})")]
    TooManyFds,
    #[error("bad upgrade message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("peer runs as uid {peer}, this process as uid {own}")]
    Peer { peer: u32, own: u32 },
}

/// Send `msg`, with `fds` attached.
pub fn send(sock: &UnixStream, msg: &Message, fds: &[BorrowedFd<'_>]) -> Result<(), WireError> {
    if fds.len() > MAX_FDS {
        return Err(WireError::TooManyFds);
    }
    let body = serde_json::to_vec(msg)?;
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(WireError::TooManyFds);
    }
    let sent = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(&frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(std::io::Error::from)?;
    // The descriptors went with the first byte; the rest is a plain stream.
    let mut rest = &frame[sent..];
    let mut w = sock;
    while !rest.is_empty() {
        let n = w.write(rest)?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Receive one message and the descriptors attached to it (close-on-exec).
pub fn recv(sock: &UnixStream) -> Result<(Message, Vec<OwnedFd>), WireError> {
    let mut header = [0u8; HEADER];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut header)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(WireError::TooManyFds);
    }
    if got.bytes == 0 {
        return Err(WireError::Closed);
    }
    let mut r = sock;
    read_full(&mut r, &mut header[got.bytes..])?;
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != MAGIC {
        return Err(WireError::Magic(magic));
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
    if len > MAX_BODY {
        return Err(WireError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    read_full(&mut r, &mut body)?;
    Ok((serde_json::from_slice(&body)?, fds))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), WireError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::Closed,
        _ => WireError::Io(e),
    })
}

/// Refuse a peer that runs as another user (root may drive an upgrade too).
pub fn check_peer(sock: &impl AsFd) -> Result<(), WireError> {
    let cred = rustix::net::sockopt::socket_peercred(sock).map_err(std::io::Error::from)?;
    let own = rustix::process::getuid().as_raw();
    let peer = cred.uid.as_raw();
    if peer == own || peer == 0 {
        Ok(())
    } else {
        Err(WireError::Peer { peer, own })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_message_and_its_descriptors_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let msg = Message::Progress {
            text: "x".repeat(5000),
        };
        send(&a, &msg, &[file.as_fd()]).unwrap();
        let (got, fds) = recv(&b).unwrap();
        assert!(matches!(got, Message::Progress { text } if text.len() == 5000));
        assert_eq!(fds.len(), 1);
        check_peer(&b).unwrap();
    }

    #[test]
    fn another_version_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut frame = MAGIC.to_vec();
        frame.extend_from_slice(&2u16.to_be_bytes());
        frame.extend_from_slice(&2u32.to_be_bytes());
        frame.extend_from_slice(b"{}");
        (&a).write_all(&frame).unwrap();
        assert!(matches!(recv(&b), Err(WireError::Version(2))));
        (&a).write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert!(matches!(recv(&b), Err(WireError::Magic(_))));
        drop(a);
        assert!(matches!(recv(&b), Err(WireError::Closed)));
    }
}
