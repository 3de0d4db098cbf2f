//! One access log line: the request's [`Entry`] and its two written forms, nginx's
//! `combined` (with Switchyard's fields after it as `key=value`) and JSON.
//!
//! Everything taken from the request is escaped (a client controls its path, `Referer`,
//! `User-Agent` and `X-Request-Id`), so a line is always one line and a JSON line always
//! parses. No credential is written: no header but those three, `-` for nginx's
//! `$remote_user` (it comes from `Authorization`), and the values of query parameters whose
//! names say they hold a secret (`token`, `password`, `signature`, ... see [`secret_param`])
//! are replaced by `REDACTED`, in the path and in the `Referer`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

/// What is logged of one request. Borrowed from the session and the request's state: it
/// lives only while its line is written.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the request finished (nginx's `$time_local`, in UTC).
    pub time: SystemTime,
    pub listener: &'a str,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    /// The path as received, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'a str,
    /// 499 when no response was sent (the client went away first), as nginx logs it.
    pub status: u16,
    /// Response body bytes sent to the client (nginx's `$body_bytes_sent`).
    pub bytes_sent: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// From the parsed request head to the end of the response.
    pub request_time: Duration,
    /// From the first attempt's start to the last byte of the response from upstream (or the
    /// failure); `None` when no backend was tried.
    pub upstream_time: Option<Duration>,
    pub upstream: Option<&'a str>,
    /// Pool and backend of the last attempt.
    pub pool: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub attempts: u32,
    /// Why each retry was made, in order (`connect`, `error`, `status`, `stale_connection`).
    pub retries: &'a [&'static str],
    pub request_id: Option<&'a [u8]>,
}

/// Query parameter values written in place of secrets.
pub const REDACTED: &str = "REDACTED";

/// Whether a query parameter named `name` holds a secret, by its name (case-insensitive):
/// tokens, keys, passwords, signatures, credentials, sessions and OAuth codes.
pub fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: [&str; 5] = ["key", "sig", "code", "pwd", "auth"];
    const PARTS: [&str; 9] = [
        "token",
        "secret",
        "passw",
        "signature",
        "credential",
        "session",
        "apikey",
        "api_key",
        "api-key",
    ];
    EXACT.contains(&n.as_str())
        || PARTS.iter().any(|p| n.contains(p))
        || n.ends_with("_key")
        || n.ends_with("-key")
        || n == "jwt"
        || n == "authorization"
}

/// `query` with the values of secret parameters replaced by [`REDACTED`]; borrowed when it
/// has none.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| pair.split_once('=').is_some_and(|(k, _)| secret_param(k));
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if secret_param(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

/// A URL (a `Referer`) with its query redacted.
fn redact_url(url: &[u8]) -> Cow<'_, [u8]> {
    let Some(q) = url.iter().position(|&b| b == b'?') else {
        return Cow::Borrowed(url);
    };
    let (head, query) = url.split_at(q + 1);
    match std::str::from_utf8(query).map(redact_query) {
        Ok(Cow::Owned(redacted)) => {
            let mut out = head.to_vec();
            out.extend_from_slice(redacted.as_bytes());
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(url),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The two written forms of one second: `04/Dec/2026:18:56:50 +0000` and
/// `2026-12-04T18:56:50`. A worker formats them once per second, not once per line.
struct Stamp {
    unix: u64,
    combined: Vec<u8>,
    iso: Vec<u8>,
}

impl Stamp {
    fn at(unix: u64) -> Stamp {
        let t = i64::try_from(unix)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let month = MONTHS[usize::from(u8::from(t.month())) - 1];
        let (y, d, h, m, s) = (t.year(), t.day(), t.hour(), t.minute(), t.second());
        Stamp {
            unix,
            combined: format!("{d:02}/{month}/{y}:{h:02}:{m:02}:{s:02} +0000").into_bytes(),
            iso: format!(
                "{y:04}-{:02}-{d:02}T{h:02}:{m:02}:{s:02}",
                u8::from(t.month())
            )
            .into_bytes(),
        }
    }
}

thread_local! {
    static STAMP: RefCell<Stamp> = RefCell::new(Stamp::at(0));
}

/// Append the form of `time`'s second that `pick` chooses.
fn stamp(out: &mut Vec<u8>, time: SystemTime, pick: fn(&Stamp) -> &[u8]) {
    let unix = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    STAMP.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.unix != unix {
            *cached = Stamp::at(unix);
        }
        out.extend_from_slice(pick(&cached));
    })
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Seconds with milliseconds, as nginx writes `$request_time`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    int(out, d.as_secs());
    millis(out, d.subsec_millis());
}

/// `.mmm`: milliseconds after the decimal point.
fn millis(out: &mut Vec<u8>, ms: u32) {
    let ms = ms.min(999);
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

fn ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                int(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Bytes as nginx escapes them in a quoted field: `"`, `\`, controls, spaces (`space: true`,
/// for unquoted `key=value` fields) and non-ASCII as `\xHH`. Runs of bytes that need no
/// escape are copied at once.
fn escape_nginx(out: &mut Vec<u8>, bytes: &[u8], space: bool) {
    let plain =
        |b: u8| matches!(b, 0x21..=0x7e if b != b'"' && b != b'\\') || (b == b' ' && !space);
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| !plain(b)) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        out.extend_from_slice(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// A JSON string (quotes included). Bytes that are not UTF-8 are replaced (U+FFFD).
fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut rest = text.as_bytes();
    out.push(b'"');
    // Bytes of multi-byte characters are all >= 0x80: copied as they are.
    while let Some(i) = rest
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
    {
        out.extend_from_slice(&rest[..i]);
        match rest[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)].to_ascii_lowercase(),
                HEX[usize::from(b & 15)].to_ascii_lowercase(),
            ]),
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

impl Entry<'_> {
    /// nginx's `combined` line, then `request_time= upstream_time= upstream= pool= backend=
    /// attempts= retries= request_id=` (`-` for none), and a newline.
    pub fn combined(&self, out: &mut Vec<u8>) {
        match self.client {
            Some(a) => ip(out, a),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - [");
        stamp(out, self.time, |s| &s.combined);
        out.extend_from_slice(b"] \"");
        escape_nginx(out, self.method.as_bytes(), false);
        out.push(b' ');
        escape_nginx(out, self.path.as_bytes(), false);
        if let Some(q) = self.query {
            out.push(b'?');
            escape_nginx(out, redact_query(q).as_bytes(), false);
        }
        out.push(b' ');
        escape_nginx(out, self.protocol.as_bytes(), false);
        out.extend_from_slice(b"\" ");
        int(out, self.status);
        out.push(b' ');
        int(out, self.bytes_sent);
        out.extend_from_slice(b" \"");
        match self.referer {
            Some(r) => escape_nginx(out, &redact_url(r), false),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b"\" \"");
        match self.user_agent {
            Some(ua) => escape_nginx(out, ua, false),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b"\" request_time=");
        seconds(out, self.request_time);
        out.extend_from_slice(b" upstream_time=");
        match self.upstream_time {
            Some(d) => seconds(out, d),
            None => out.push(b'-'),
        }
        for (key, v) in [
            (&b" upstream="[..], self.upstream),
            (b" pool=", self.pool),
            (b" backend=", self.backend),
        ] {
            out.extend_from_slice(key);
            escape_nginx(out, v.unwrap_or("-").as_bytes(), true);
        }
        out.extend_from_slice(b" attempts=");
        int(out, self.attempts);
        out.extend_from_slice(b" retries=");
        if self.retries.is_empty() {
            out.push(b'-');
        }
        for (i, r) in self.retries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r.as_bytes());
        }
        out.extend_from_slice(b" request_id=");
        escape_nginx(out, self.request_id.unwrap_or(b"-"), true);
        out.push(b'\n');
    }

    /// One JSON object and a newline. Times are seconds (numbers); absent values are `null`.
    pub fn json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        stamp(out, self.time, |s| &s.iso);
        let ms = self
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_millis())
            .unwrap_or(0);
        millis(out, ms);
        out.extend_from_slice(b"Z\",\"listener\":");
        json_str(out, self.listener.as_bytes());
        out.extend_from_slice(b",\"client\":");
        match self.client {
            Some(a) => {
                out.push(b'"');
                ip(out, a);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"method\":");
        json_str(out, self.method.as_bytes());
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.path.as_bytes());
        out.extend_from_slice(b",\"query\":");
        json_opt(
            out,
            self.query.map(redact_query).as_deref().map(str::as_bytes),
        );
        out.extend_from_slice(b",\"protocol\":");
        json_str(out, self.protocol.as_bytes());
        out.extend_from_slice(b",\"status\":");
        int(out, self.status);
        out.extend_from_slice(b",\"bytes_sent\":");
        int(out, self.bytes_sent);
        out.extend_from_slice(b",\"referer\":");
        json_opt(out, self.referer.map(redact_url).as_deref());
        out.extend_from_slice(b",\"user_agent\":");
        json_opt(out, self.user_agent);
        out.extend_from_slice(b",\"request_time\":");
        seconds(out, self.request_time);
        out.extend_from_slice(b",\"upstream_time\":");
        match self.upstream_time {
            Some(d) => seconds(out, d),
            None => out.extend_from_slice(b"null"),
        }
        for (key, v) in [
            (&b",\"upstream\":"[..], self.upstream),
            (b",\"pool\":", self.pool),
            (b",\"backend\":", self.backend),
        ] {
            out.extend_from_slice(key);
            json_opt(out, v.map(str::as_bytes));
        }
        out.extend_from_slice(b",\"attempts\":");
        int(out, self.attempts);
        out.extend_from_slice(b",\"retries\":[");
        for (i, r) in self.retries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, r.as_bytes());
        }
        out.extend_from_slice(b"],\"request_id\":");
        json_opt(out, self.request_id);
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests;
