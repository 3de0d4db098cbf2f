//! Raw HTTP/1.1 on one kept-alive connection, for the client-side edge tests: [`Conn`] writes
//! bytes as given (one byte at a time if need be), reads responses one by one (by
//! `Content-Length` or chunked), and tells when the server has closed the connection.
//! [`RawBackend`] is a backend on a plain `TcpListener` that records every request head as
//! received and answers with canned bytes, for what a hyper backend would tidy up (hop-by-hop
//! response headers, exact body sizes).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::http::Response;

/// Longest wait for one read when a response is expected.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet returned as a response.
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Write `bytes` (a write error is returned: the server may have closed).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Read one response: head, then the body by `Content-Length` or chunked (or to the end
    /// of the connection when it has neither).
    pub fn response(&mut self) -> anyhow::Result<Response> {
        self.stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if self.fill()? == 0 {
                bail!(
                    "connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head: Vec<u8> = self.buf.drain(..end).collect();
        let mut resp = parse_head(&head)?;
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().context("Content-Length")?;
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    bail!("body cut short");
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp.header("transfer-encoding") == Some("chunked") {
            resp.body = self.chunked()?;
        } else if resp.status != 204 && resp.status != 304 {
            while self.fill()? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    fn chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("chunk size {line:?}"))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    bail!("chunk cut short");
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    fn line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..p + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..p]).into_owned());
            }
            if self.fill()? == 0 {
                bail!("connection closed in a chunked body");
            }
        }
    }

    fn fill(&mut self) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(0),
            Err(e) => Err(e).context("reading a response"),
        }
    }

    /// Whether the server closes the connection within `within` (reading, and discarding,
    /// whatever it sends first). Returns how long it took.
    pub fn closed_within(&mut self, within: Duration) -> anyhow::Result<Option<Duration>> {
        let start = Instant::now();
        let deadline = start + within;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Some(start.elapsed())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Ok(Some(start.elapsed()))
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) => return Err(e).context("waiting for the close"),
            }
        }
    }

    /// Bytes received and not part of a response read so far.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }
}

/// A response head (status line and fields), without its body.
fn parse_head(head: &[u8]) -> anyhow::Result<Response> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

/// What a [`RawBackend`] answers to a request head (the request line and headers as text).
pub type Answer = dyn Fn(&str) -> Vec<u8> + Send + Sync;

/// A backend that records request heads as received and answers with raw bytes.
pub struct RawBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl RawBackend {
    /// Serve on a free port; `answer` makes each response from the request head.
    pub fn start(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let (h, s) = (heads.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, a, s) = (h.clone(), answer.clone(), s.clone());
                        std::thread::spawn(move || serve(stream, &h, &*a, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(RawBackend { addr, heads, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request head received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One backend connection: read heads (and `Content-Length` bodies), answer each.
fn serve(mut stream: TcpStream, heads: &Mutex<Vec<String>>, answer: &Answer, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let body_len = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + body_len {
                buf.drain(..end + 4 + body_len);
                heads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(head.clone());
                if stream.write_all(&answer(&head)).is_err() {
                    return;
                }
                continue;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// A 200 answer with `body` and the extra header lines `headers` (each ending in CRLF).
pub fn ok(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
