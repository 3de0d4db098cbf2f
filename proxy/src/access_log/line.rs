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
use std::fmt::Write as _;
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

/// Seconds with milliseconds, as nginx writes `$request_time`.
fn seconds(out: &mut String, d: Duration) {
    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
}

/// Bytes as nginx escapes them in a quoted field: `"`, `\`, controls, spaces (`space: true`,
/// for unquoted `key=value` fields) and non-ASCII as `\xHH`.
fn escape_nginx(out: &mut String, bytes: &[u8], space: bool) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            b' ' if space => out.push_str("\\x20"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// A JSON string (quotes included). Bytes that are not UTF-8 are replaced (U+FFFD).
fn json_str(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, v: Option<&[u8]>) {
    match v {
        Some(v) => json_str(out, v),
        None => out.push_str("null"),
    }
}

impl Entry<'_> {
    /// nginx's `combined` line, then `request_time= upstream_time= upstream= pool= backend=
    /// attempts= retries= request_id=` (`-` for none), and a newline.
    pub fn combined(&self, out: &mut String) {
        let t = OffsetDateTime::from(self.time);
        match self.client {
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.push('-'),
        }
        let _ = write!(
            out,
            " - - [{:02}/{}/{}:{:02}:{:02}:{:02} +0000] \"",
            t.day(),
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        );
        escape_nginx(out, self.method.as_bytes(), false);
        out.push(' ');
        escape_nginx(out, self.path.as_bytes(), false);
        if let Some(q) = self.query {
            out.push('?');
            escape_nginx(out, redact_query(q).as_bytes(), false);
        }
        out.push(' ');
        escape_nginx(out, self.protocol.as_bytes(), false);
        let _ = write!(out, "\" {} {} \"", self.status, self.bytes_sent);
        match self.referer {
            Some(r) => escape_nginx(out, &redact_url(r), false),
            None => out.push('-'),
        }
        out.push_str("\" \"");
        match self.user_agent {
            Some(ua) => escape_nginx(out, ua, false),
            None => out.push('-'),
        }
        out.push_str("\" request_time=");
        seconds(out, self.request_time);
        out.push_str(" upstream_time=");
        match self.upstream_time {
            Some(d) => seconds(out, d),
            None => out.push('-'),
        }
        for (key, v) in [
            ("upstream", self.upstream),
            ("pool", self.pool),
            ("backend", self.backend),
        ] {
            let _ = write!(out, " {key}=");
            escape_nginx(out, v.unwrap_or("-").as_bytes(), true);
        }
        let _ = write!(out, " attempts={} retries=", self.attempts);
        if self.retries.is_empty() {
            out.push('-');
        } else {
            out.push_str(&self.retries.join(","));
        }
        out.push_str(" request_id=");
        escape_nginx(out, self.request_id.unwrap_or(b"-"), true);
        out.push('\n');
    }

    /// One JSON object and a newline. Times are seconds (numbers); absent values are `null`.
    pub fn json(&self, out: &mut String) {
        let t = OffsetDateTime::from(self.time);
        let _ = write!(
            out,
            "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"listener\":",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        );
        json_str(out, self.listener.as_bytes());
        out.push_str(",\"client\":");
        match self.client {
            Some(ip) => {
                let _ = write!(out, "\"{ip}\"");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"method\":");
        json_str(out, self.method.as_bytes());
        out.push_str(",\"path\":");
        json_str(out, self.path.as_bytes());
        out.push_str(",\"query\":");
        json_opt(
            out,
            self.query.map(redact_query).as_deref().map(str::as_bytes),
        );
        out.push_str(",\"protocol\":");
        json_str(out, self.protocol.as_bytes());
        let _ = write!(
            out,
            ",\"status\":{},\"bytes_sent\":{},\"referer\":",
            self.status, self.bytes_sent
        );
        json_opt(out, self.referer.map(redact_url).as_deref());
        out.push_str(",\"user_agent\":");
        json_opt(out, self.user_agent);
        out.push_str(",\"request_time\":");
        seconds(out, self.request_time);
        out.push_str(",\"upstream_time\":");
        match self.upstream_time {
            Some(d) => seconds(out, d),
            None => out.push_str("null"),
        }
        for (key, v) in [
            ("upstream", self.upstream),
            ("pool", self.pool),
            ("backend", self.backend),
        ] {
            let _ = write!(out, ",\"{key}\":");
            json_opt(out, v.map(str::as_bytes));
        }
        let _ = write!(out, ",\"attempts\":{},\"retries\":[", self.attempts);
        for (i, r) in self.retries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, r.as_bytes());
        }
        out.push_str("],\"request_id\":");
        json_opt(out, self.request_id);
        out.push_str("}\n");
    }
}

#[cfg(test)]
mod tests;
