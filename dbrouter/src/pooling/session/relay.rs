//! Session-mode relay: once a client is logged in and has its server connection, bytes flow
//! both ways as they arrive, each direction on its own so that neither can block the other
//! (a pipelining client may be sending while the server is still answering).
//!
//! Bytes are not parsed into messages, only followed: a [`Scanner`] per direction checks every
//! client message header against PostgreSQL's own limits (garbage mid-session ends that
//! session with a protocol error), stops at the client's `Terminate` (so the router decides
//! what becomes of the server connection), and remembers the server's transaction status
//! from `ReadyForQuery`, which transaction pooling will need.
//!
//! When the process drains and its sessions are to close ([`Closing`]), the relay ends at
//! the first moment the session is between transactions: every request the client sent
//! (`Query`, `Sync`, `FunctionCall`, with nothing after it) answered by a `ReadyForQuery`
//! idle that reached the client whole, and nothing half read from the client.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::closing::Closing;
use crate::net::stream::PgStream;
use crate::server::conn::ServerConn;
use switchyard_pgwire::frame::{self, FrameError, Scanner};

/// Read buffer size per direction.
const CHUNK: usize = 16 * 1024;

/// How often a closing session looks for its transaction boundary.
const BOUNDARY_POLL: Duration = Duration::from_millis(5);

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client sent `Terminate`.
    ClientTerminated,
    /// The client closed its connection (cleanly between messages or not).
    ClientClosed {
        between_messages: bool,
    },
    /// The server closed its connection (it said why in an `ErrorResponse` already relayed,
    /// if it could).
    ServerClosed,
    /// The client broke the protocol. `can_reply` says whether the client's side is between
    /// messages, so an `ErrorResponse` can still be written to it.
    ClientViolation {
        error: FrameError,
        can_reply: bool,
    },
    /// The server broke the protocol.
    ServerViolation(FrameError),
    /// The process closes its sessions ([`Closing`]) and this one is between transactions.
    Closed,
    /// A read or write failed.
    ClientIo(std::io::Error),
    ServerIo(std::io::Error),
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < CHUNK / 4 {
        buf.reserve(CHUNK);
    }
}

/// Relay between `client` and `server` until either side ends. `pending` holds bytes the
/// client sent that were already read (past its login). Returns how it ended and whether the
/// stream from the server stopped between messages (nothing of a message half read or half
/// passed on); `server.status` is then the server's last transaction status.
pub async fn relay(
    client: &mut PgStream,
    pending: BytesMut,
    server: &mut ServerConn,
    closing: &Closing,
) -> (RelayEnd, bool) {
    let (mut client_rx, mut client_tx) = client.split();
    let (mut server_rx, mut server_tx) = server.stream.split();
    // Whether the stream to the client is between messages (nothing half written).
    let to_client_clean = AtomicBool::new(true);
    let status = AtomicU8::new(server.status);
    // For the transaction boundary: client messages and requests passed on, the message
    // count at the latest request, `ReadyForQuery`s passed back, whether the client's side
    // holds part of a message.
    let messages = AtomicU64::new(0);
    let requests = AtomicU64::new(0);
    let at_request = AtomicU64::new(0);
    let answers = AtomicU64::new(0);
    let client_partial = AtomicBool::new(!pending.is_empty());

    // Between transactions: everything the client asked answered, nothing half sent.
    let between = || {
        status.load(Relaxed) == b'I'
            && to_client_clean.load(Relaxed)
            && !client_partial.load(Relaxed)
            && requests.load(Relaxed) == answers.load(Relaxed)
            && messages.load(Relaxed) == at_request.load(Relaxed)
    };

    let up = async {
        let mut scanner = Scanner::new(frame::frontend_limit);
        let mut buf = pending;
        loop {
            if !buf.is_empty() {
                let scan = match scanner.feed(&buf, |tag| {
                    if tag == b'X' {
                        return true;
                    }
                    let n = messages.fetch_add(1, Relaxed) + 1;
                    match tag {
                        b'Q' | b'S' | b'F' => {
                            requests.fetch_add(1, Relaxed);
                            at_request.store(n, Relaxed);
                        }
                        // The end of a COPY's data: its `Query` is still to be answered.
                        b'c' | b'f' => at_request.store(n, Relaxed),
                        _ => {}
                    }
                    false
                }) {
                    Ok(scan) => scan,
                    Err(error) => {
                        return RelayEnd::ClientViolation {
                            error,
                            can_reply: to_client_clean.load(Relaxed),
                        }
                    }
                };
                if scan.forward > 0 {
                    if let Err(e) = server_tx.write_all(&buf[..scan.forward]).await {
                        return RelayEnd::ServerIo(e);
                    }
                    buf.advance(scan.forward);
                }
                if scan.stopped {
                    return RelayEnd::ClientTerminated;
                }
            }
            client_partial.store(!(buf.is_empty() && scanner.at_boundary()), Relaxed);
            reserve(&mut buf);
            match client_rx.read_buf(&mut buf).await {
                Ok(0) => {
                    return RelayEnd::ClientClosed {
                        between_messages: scanner.at_boundary() && buf.is_empty(),
                    }
                }
                Ok(_) => client_partial.store(true, Relaxed),
                Err(e) => return RelayEnd::ClientIo(e),
            }
        }
    };

    let down = async {
        let mut scanner = Scanner::new(frame::backend_limit);
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            reserve(&mut buf);
            match server_rx.read_buf(&mut buf).await {
                Ok(0) => return RelayEnd::ServerClosed,
                Ok(_) => {}
                Err(e) => return RelayEnd::ServerIo(e),
            }
            let mut ready = 0;
            let scan = match scanner.feed(&buf, |tag| {
                ready += u64::from(tag == b'Z');
                false
            }) {
                Ok(scan) => scan,
                Err(e) => return RelayEnd::ServerViolation(e),
            };
            if scan.forward > 0 {
                to_client_clean.store(false, Relaxed);
                if let Err(e) = client_tx.write_all(&buf[..scan.forward]).await {
                    return RelayEnd::ClientIo(e);
                }
                buf.advance(scan.forward);
                if let Some(s) = scanner.ready_status() {
                    status.store(s, Relaxed);
                }
                answers.fetch_add(ready, Relaxed);
                to_client_clean.store(scanner.at_boundary() && buf.is_empty(), Relaxed);
                // Closing: end right after the `ReadyForQuery` that makes the boundary,
                // before the client can start another transaction.
                if ready > 0 && closing.is_closing() && between() {
                    return RelayEnd::Closed;
                }
            }
        }
    };

    // All three run on this task: each sees the others' counters as of their last await.
    let boundary = async {
        closing.wait().await;
        loop {
            if between() {
                return RelayEnd::Closed;
            }
            tokio::time::sleep(BOUNDARY_POLL).await;
        }
    };

    let end = tokio::select! {
        end = up => end,
        end = down => end,
        end = boundary => end,
    };
    server.status = status.load(Relaxed);
    (end, to_client_clean.load(Relaxed))
}
