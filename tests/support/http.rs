//! A small blocking HTTP/1.1 client on `std::net::TcpStream`.
//!
//! One request per connection (`Connection: close`), the response read to the end. The
//! request is written from a second thread while the response is read, so a server that
//! answers before reading the whole body (a 413 for a 10 MB upload) is seen answering rather
//! than deadlocking the client. [`send_raw`] sends bytes as given, for headers no ordinary
//! client would send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// Longest wait for a connect, a read or a write.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to build and send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// `Host` header value; the address sent to when `None`.
    host: Option<String>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            host: None,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn put(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("PUT", path).body(body)
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", path).body(body)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Add a header; the value may be any bytes.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Send `Host: <host>` instead of the address.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// `If-Match: "<version>"`.
    pub fn if_match(self, version: u64) -> Self {
        self.header("If-Match", format!("\"{version}\""))
    }

    /// The request as it goes on the wire.
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let host = self.host.clone().unwrap_or_else(|| addr.to_string());
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
            self.method, self.path
        )
        .into_bytes();
        if !self.body.is_empty() || matches!(self.method.as_str(), "PUT" | "POST") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    pub fn send(&self, addr: SocketAddr) -> anyhow::Result<Response> {
        send_raw(addr, &self.to_bytes(addr))
            .with_context(|| format!("{} {}", self.method, self.path))
    }
}

/// A response, read to the end of the connection.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, values as text (lossy).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response is not JSON: {}", self.describe()))
    }

    /// Status and body, for assertion messages.
    pub fn describe(&self) -> String {
        let text = self.text();
        let shown: String = text.chars().take(2000).collect();
        format!("{} {shown}", self.status)
    }
}

/// Send `bytes` as they are and read the response.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let request = bytes.to_vec();
    // The server may answer and close before reading everything; the writer's error is then
    // expected and ignored, and the answer is what counts.
    let write = std::thread::spawn(move || writer.write_all(&request));
    let mut raw = Vec::new();
    let read = (&stream).read_to_end(&mut raw);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = write.join();
    if let Err(e) = read {
        // A reset after the answer arrived still leaves the answer.
        if raw.is_empty() {
            return Err(e).context("reading the response");
        }
    }
    parse(&raw)
}

/// Parse a whole HTTP/1.1 response (head and body, read to the end of the connection).
pub fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            anyhow!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if find("transfer-encoding").is_some() {
        bail!("chunked responses are not supported by this test client");
    }
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        anyhow::ensure!(
            body.len() >= len,
            "response body cut short: {} of {len} bytes",
            body.len()
        );
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
