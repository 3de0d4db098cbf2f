//! [`PgStream`]: a client or server connection, in the clear or over TLS, with the one set
//! of operations every part of the router uses.
//!
//! Two styles of IO run on these streams: `AsyncRead`/`AsyncWrite` (startup,
//! authentication, server login, the session-mode relay), and the readiness style of the
//! transaction-pooling relay (`ready`, then a non-blocking `try_read_buf`/`try_write`), which
//! needs that nothing be half done when it decides. A TLS stream keeps rustls' state behind a
//! mutex (never held across an `.await`) so that every operation takes `&self`, as on a
//! `TcpStream`.
//!
//! Why not `tokio-rustls`: its stream only offers the poll style. Here, TLS plaintext that
//! rustls already decrypted counts as readable ([`PgStream::readable`]), and ciphertext that
//! the socket did not take yet is visible ([`PgStream::wants_write`]) and flushed by
//! [`PgStream::try_flush`]. The poll-style writes may leave ciphertext queued when the
//! socket is full; every read flushes it first (and waits for the socket to take it), so a
//! request written with `write_all` and then waited for is never stuck in our buffer.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Plaintext read at most per `try_read_buf` of a TLS stream.
const TLS_CHUNK: usize = 16 * 1024;

/// A connection in the clear or over TLS (either side of the handshake).
#[derive(Debug)]
pub struct PgStream {
    tcp: TcpStream,
    tls: Option<Box<Mutex<rustls::Connection>>>,
}

/// `std::io::Read`/`Write` on a non-blocking `TcpStream`, for rustls.
struct Sock<'a>(&'a TcpStream);

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl PgStream {
    /// A connection in the clear.
    pub fn plain(tcp: TcpStream) -> Self {
        PgStream { tcp, tls: None }
    }

    /// A copy of the socket's descriptor, to hand the connection to another process (it
    /// must be in the clear: TLS state lives in this process).
    pub fn tcp_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        if self.is_tls() {
            return Err(std::io::Error::other(
                "a TLS connection cannot be handed over",
            ));
        }
        std::os::fd::AsFd::as_fd(&self.tcp).try_clone_to_owned()
    }

    /// The socket underneath (addresses, `TCP_NODELAY`).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS protocol version in use, if any.
    pub fn tls_version(&self) -> Option<&'static str> {
        let tls = self.tls.as_ref()?;
        let v = lock(tls).protocol_version()?;
        Some(match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// Start TLS on this (clear) connection with `conn` and complete the handshake.
    pub(crate) async fn start_tls(&mut self, conn: rustls::Connection) -> io::Result<()> {
        if self.tls.is_some() {
            return Err(io::Error::other("TLS is already on"));
        }
        self.tls = Some(Box::new(Mutex::new(conn)));
        self.handshake().await
    }

    async fn handshake(&self) -> io::Result<()> {
        let Some(tls) = self.tls.as_ref() else {
            return Ok(());
        };
        loop {
            self.flush_all().await?;
            let (handshaking, wants_read) = {
                let c = lock(tls);
                (c.is_handshaking(), c.wants_read())
            };
            if !handshaking {
                return Ok(());
            }
            if !wants_read {
                return Err(io::Error::other("TLS handshake stalled"));
            }
            self.tcp.readable().await?;
            let mut c = lock(tls);
            match c.read_tls(&mut Sock(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    if let Err(e) = c.process_new_packets() {
                        // Tell the peer why (the alert rustls queued), then give up.
                        let _ = c.write_tls(&mut Sock(&self.tcp));
                        return Err(invalid(e));
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Write queued ciphertext, waiting for the socket as needed.
    async fn flush_all(&self) -> io::Result<()> {
        loop {
            match self.try_flush() {
                Ok(()) => return Ok(()),
                Err(e) if would_block(&e) => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    // === readiness style (the transaction-pooling relay) ===

    /// Wait until a read may make progress: plaintext already decrypted, or bytes (or the
    /// end) on the socket.
    pub async fn readable(&self) -> io::Result<()> {
        if self.tls_buffered() {
            return Ok(());
        }
        self.tcp.readable().await
    }

    /// [`PgStream::readable`] as a poll, which needs no future of its own: what an idle
    /// client of the relay waits on. Only the latest task to poll it is woken (tokio's
    /// `poll_read_ready`): the task that owns the stream.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.tls_buffered() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Decrypted bytes (or the peer's close) wait to be read.
    fn tls_buffered(&self) -> bool {
        let Some(tls) = &self.tls else { return false };
        match lock(tls).process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }

    /// Wait until the socket takes bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// [`PgStream::readable`] or [`PgStream::writable`].
    pub async fn ready(&self, interest: Interest) -> io::Result<()> {
        if interest.is_readable() {
            self.readable().await
        } else {
            self.writable().await
        }
    }

    /// Whether ciphertext waits for the socket ([`PgStream::try_flush`] sends it).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| lock(t).wants_write())
    }

    /// Send queued ciphertext without blocking: `WouldBlock` when some is left.
    pub fn try_flush(&self) -> io::Result<()> {
        match &self.tls {
            None => Ok(()),
            Some(tls) => flush_locked(&mut lock(tls), &self.tcp),
        }
    }

    /// Read what is there without blocking; `Ok(0)` at the end.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_read(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let mut c = lock(tls);
        // Reading implies flushing: a request may be waiting in our buffer.
        match flush_locked(&mut c, &self.tcp) {
            Err(e) if !would_block(&e) => return Err(e),
            _ => {}
        }
        let mut eof = false;
        loop {
            match c.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer closed without close_notify: the Postgres protocol has its own
                // framing, so the relay tells a clean end from a torn message itself.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if would_block(&e) && eof => return Ok(0),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
            match c.read_tls(&mut Sock(&self.tcp)) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = c.process_new_packets() {
                let _ = c.write_tls(&mut Sock(&self.tcp));
                return Err(invalid(e));
            }
            // Whatever the peer's messages made rustls answer (a key update).
            match flush_locked(&mut c, &self.tcp) {
                Err(e) if !would_block(&e) => return Err(e),
                _ => {}
            }
        }
    }

    /// [`PgStream::try_read`] appending to `buf`.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.tcp.try_read_buf(buf);
        }
        let mut chunk = [0u8; TLS_CHUNK];
        let n = self.try_read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Write without blocking. Over TLS, bytes are taken only once earlier ciphertext has
    /// gone out (`WouldBlock` until then), so what waits in our buffer stays bounded;
    /// ciphertext the socket did not take is left for [`PgStream::try_flush`].
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_write(buf);
        };
        let mut c = lock(tls);
        flush_locked(&mut c, &self.tcp)?;
        let n = c.writer().write(buf)?;
        match flush_locked(&mut c, &self.tcp) {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(n),
        }
    }

    /// Whether the peer has neither closed nor sent anything (an idle server sends
    /// nothing). A byte that did arrive is consumed: the connection is not used again.
    pub fn is_quiet(&self) -> bool {
        if let Some(tls) = &self.tls {
            match lock(tls).process_new_packets() {
                Ok(s) if s.plaintext_bytes_to_read() == 0 && !s.peer_has_closed() => {}
                _ => return false,
            }
        }
        let mut probe = [0u8; 1];
        matches!(self.tcp.try_read(&mut probe), Err(e) if would_block(&e))
    }

    // === poll style ===

    fn poll_read_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.wants_write() {
                // Our own request still waits for the socket: wake when it can go.
                if let Poll::Ready(r) = self.tcp.poll_write_ready(cx) {
                    r?;
                    continue;
                }
            }
            ready!(self.tcp.poll_read_ready(cx))?;
        }
    }

    fn poll_write_shared(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if would_block(&e) => ready!(self.tcp.poll_write_ready(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush_shared(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.try_flush() {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if would_block(&e) => ready!(self.tcp.poll_write_ready(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Queue TLS's `close_notify` and send it (the socket is left open).
    fn poll_close_notify(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(tls) = &self.tls {
            let mut c = lock(tls);
            if !c.is_handshaking() {
                c.send_close_notify();
            }
        }
        self.poll_flush_shared(cx)
    }

    /// Read and write halves, usable at the same time (the session-mode relay).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        if self.tls.is_none() {
            let (r, w) = self.tcp.split();
            return (ReadHalf::Plain(r), WriteHalf::Plain(w));
        }
        let this: &PgStream = self;
        (ReadHalf::Tls(this), WriteHalf::Tls(this))
    }
}

fn lock(m: &Mutex<rustls::Connection>) -> MutexGuard<'_, rustls::Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn flush_locked(c: &mut rustls::Connection, tcp: &TcpStream) -> io::Result<()> {
    while c.wants_write() {
        if c.write_tls(&mut Sock(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tls.is_none() {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        this.poll_read_shared(cx, buf)
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tls.is_none() {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        }
        this.poll_write_shared(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_shared(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_close_notify(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// The reading half of a [`PgStream`].
#[derive(Debug)]
pub enum ReadHalf<'a> {
    Plain(tokio::net::tcp::ReadHalf<'a>),
    Tls(&'a PgStream),
}

/// The writing half of a [`PgStream`].
#[derive(Debug)]
pub enum WriteHalf<'a> {
    Plain(tokio::net::tcp::WriteHalf<'a>),
    Tls(&'a PgStream),
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(s) => s.poll_read_shared(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(s) => s.poll_write_shared(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(s) => s.poll_flush_shared(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(s) => s.poll_close_notify(cx),
        }
    }
}
