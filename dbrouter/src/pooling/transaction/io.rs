//! The relay's socket work: one readiness wait at a time ([`TxRelay::io`]), non-blocking
//! reads and writes, and the last exchange with a server after its client left
//! ([`TxRelay::settle`]).
//!
//! Every system call here is paid once per message exchange, on a machine whose cores the
//! router shares with its clients and PostgreSQL:
//! - reads leave tokio's readiness as it is (a read that came back short does not clear it:
//!   clearing it by hand stalled large transfers, a 2 MB `Bind` or a 3 MB row, with TLS on
//!   either side); the pool's liveness probe at the next checkout (`pool::idle::alive`)
//!   relies on that too, so that a server that closed or sent a `FATAL` (postmaster death:
//!   57P01) while its connection sat idle is caught before a client's turn goes to it;
//! - writes go out as soon as there is something to write, before any wait
//!   ([`TxRelay::flush_now`]); the wait for writability is only for what a full socket
//!   did not take.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};

use super::relay::{TxEnd, TxRelay, HIGH};
use crate::closing::Mode;
use crate::net::bufpool;
use crate::net::stream::PgStream;

pub(super) enum Event {
    ClientRead,
    ServerRead,
    Wrote,
    /// The process hands over or closes its sessions: the relay ends at its next
    /// transaction boundary.
    Closing(crate::closing::Mode),
}

impl TxRelay<'_> {
    /// The client is gone: let what it left in flight finish, its answers going nowhere,
    /// and read back the parameters its last turn changed, so that the connection can be
    /// judged for reuse. Nothing is sent on its behalf: a batch it left without its `Sync`
    /// (which would commit) or a `COPY` it left half sent stays as it is, and the connection
    /// is closed. Whatever is still in flight when `within` runs out is too.
    pub async fn settle(&mut self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            loop {
                let pinned = self.pinned.is_some();
                let Some(h) = self.held.as_mut() else { return };
                if h.quiet() {
                    if h.conn.conn.status != b'I' || h.ops.is_empty() || pinned {
                        return;
                    }
                    self.end_turn();
                    continue;
                }
                if h.mid_batch || h.expect.copy_in() {
                    return;
                }
                let stream = &mut h.conn.conn.stream;
                if !h.to_server.is_empty() {
                    if stream.write_all(&h.to_server).await.is_err() {
                        return;
                    }
                    h.to_server.clear();
                }
                bufpool::lend_for_read(&mut h.sbuf);
                match stream.read_buf(&mut h.sbuf).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
                if self.server_messages().is_err() {
                    return;
                }
                self.to_client.clear();
            }
        })
        .await;
    }

    /// Give back the memory of the client's buffers that are empty; the next bytes in or
    /// out borrow again.
    fn give_back_buffers(&mut self) {
        bufpool::give_back(&mut self.cbuf);
        bufpool::give_back(&mut self.to_client);
    }

    /// Write what the sockets take now, without waiting.
    pub(super) fn flush_now(&mut self) -> Result<(), TxEnd> {
        if let Some(h) = self.held.as_mut() {
            write_some(&h.conn.conn.stream, &mut h.to_server).map_err(TxEnd::ServerIo)?;
        }
        write_some(self.client, &mut self.to_client).map_err(TxEnd::ClientIo)
    }

    /// Wait for one socket to be ready and do what it is ready for. Between turns (no
    /// server connection held, nothing due to the client) the wait is [`TxRelay::idle`]'s,
    /// small, for the client's next bytes; otherwise it is [`TxRelay::busy`]'s, boxed (one
    /// allocation per wait while a turn runs): an idle client's task holds only the idle
    /// wait, not the room of five readiness futures.
    pub(super) async fn io(&mut self) -> Result<(), TxEnd> {
        self.flush_now()?;
        let event =
            if self.held.is_none() && self.to_client.is_empty() && !self.client.wants_write() {
                // Between turns: an idle client holds no buffer memory.
                self.give_back_buffers();
                self.idle().await
            } else {
                Box::pin(self.busy()).await
            }?;
        self.on_event(event)
    }

    /// Wait for the client's next bytes, or for the process to close its sessions.
    pub(super) async fn idle(&mut self) -> Result<Event, TxEnd> {
        let (closing, client) = (self.closing, &*self.client);
        tokio::select! {
            biased;
            m = closing.past(self.close_seen), if self.close_seen != Mode::Close => Ok(Event::Closing(m)),
            r = std::future::poll_fn(|cx| client.poll_readable(cx)) => r.map(|_| Event::ClientRead).map_err(TxEnd::ClientIo),
        }
    }

    /// Wait for whichever socket the turn needs first.
    async fn busy(&mut self) -> Result<Event, TxEnd> {
        if self.held.is_none() {
            self.give_back_buffers();
        }
        let server = self.held.as_ref().map(|h| &h.conn.conn.stream);
        let (server_read, server_write, read_client) = match &self.held {
            Some(h) => (
                self.to_client.len() < HIGH,
                !h.to_server.is_empty() || h.conn.conn.stream.wants_write(),
                h.to_server.len() < HIGH,
            ),
            None => (false, false, true),
        };
        let client_write = !self.to_client.is_empty() || self.client.wants_write();
        let closing = self.closing;
        tokio::select! {
            biased;
            m = closing.past(self.close_seen), if self.close_seen != Mode::Close => Ok(Event::Closing(m)),
            r = ready(server, Interest::READABLE), if server_read => r.map(|_| Event::ServerRead).map_err(TxEnd::ServerIo),
            r = ready(server, Interest::WRITABLE), if server_write => r.map(|_| Event::Wrote).map_err(TxEnd::ServerIo),
            r = self.client.writable(), if client_write => r.map(|_| Event::Wrote).map_err(TxEnd::ClientIo),
            r = self.client.readable(), if read_client => r.map(|_| Event::ClientRead).map_err(TxEnd::ClientIo),
            else => Err(TxEnd::ServerViolation("the relay has nothing to wait for".into())),
        }
    }

    /// Do what a socket is ready for.
    fn on_event(&mut self, event: Event) -> Result<(), TxEnd> {
        match event {
            Event::Closing(m) => {
                self.close_seen = m;
                Ok(())
            }
            Event::Wrote => self.flush_now(),
            Event::ClientRead => match read_from_client(self.client, &mut self.cbuf) {
                Ok(0) => Err(TxEnd::ClientClosed {
                    between_messages: self.cbuf.is_empty(),
                }),
                Ok(_) => {
                    // Its answers will need room too.
                    bufpool::lend(&mut self.to_client);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(TxEnd::ClientIo(e)),
            },
            Event::ServerRead => {
                let Some(h) = self.held.as_mut() else {
                    return Ok(());
                };
                bufpool::lend_for_read(&mut h.sbuf);
                match h.conn.conn.stream.try_read_buf(&mut h.sbuf) {
                    Ok(0) => Err(TxEnd::ServerClosed),
                    Ok(_) => self.server_messages(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(TxEnd::ServerIo(e)),
                }
            }
        }
    }
}

/// Wait until `stream` is ready for `interest` (forever when there is none).
async fn ready(stream: Option<&PgStream>, interest: Interest) -> io::Result<()> {
    match stream {
        Some(s) => s.ready(interest).await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// Read what the client `stream` has now into `buf`, without blocking; `Ok(0)` at the end.
fn read_from_client(stream: &PgStream, buf: &mut BytesMut) -> io::Result<usize> {
    bufpool::lend_for_read(buf);
    stream.try_read_buf(buf)
}

/// Write as much of `buf` (and of TLS ciphertext queued before) as `stream` takes without
/// blocking.
fn write_some(stream: &PgStream, buf: &mut BytesMut) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match stream.try_flush() {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(()),
    }
}
