//! Messages of the backend (server) side, both ways through the router:
//!
//! - **Writers** of what Switchyard says to clients itself, as a server would (authentication
//!   requests, `ErrorResponse`, `BackendKeyData`, `ParameterStatus`, `ReadyForQuery`,
//!   `NegotiateProtocolVersion`). `postgres-protocol` serializes only what clients send, so
//!   these are ours. Each appends one whole message to a buffer; the caller writes the buffer
//!   once.
//! - **Readers** of the server messages the router looks into (`ParameterStatus`, `DataRow`,
//!   the fields of an `ErrorResponse`). Bodies come from the network: a short or unterminated
//!   one reads as `None` (or "no message"), never a panic.

use bytes::{BufMut, BytesMut};

use crate::body::Reader;

/// SQLSTATE codes the router sends (PostgreSQL's `errcodes.txt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub &'static str);

impl SqlState {
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    pub const CONNECTION_FAILURE: SqlState = SqlState("08006");
    pub const CONNECTION_REJECTED: SqlState = SqlState("08004");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    pub const INVALID_AUTHORIZATION_SPECIFICATION: SqlState = SqlState("28000");
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState("57P03");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
}

/// Append a message: tag, length, then whatever `body` writes.
#[inline]
fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[inline]
fn cstr(buf: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early and shift every later field: drop it.
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// `ErrorResponse` with severity (localized and not), SQLSTATE and message.
#[inline]
pub fn error_response(buf: &mut BytesMut, severity: &str, code: SqlState, text: &str) {
    message(buf, b'E', |b| {
        b.put_u8(b'S');
        cstr(b, severity);
        b.put_u8(b'V');
        cstr(b, severity);
        b.put_u8(b'C');
        cstr(b, code.0);
        b.put_u8(b'M');
        cstr(b, text);
        b.put_u8(0);
    });
}

/// `AuthenticationOk`.
pub fn auth_ok(buf: &mut BytesMut) {
    message(buf, b'R', |b| b.put_i32(0));
}

/// `AuthenticationMD5Password` with its salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    message(buf, b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

/// `AuthenticationSASL` offering `mechanisms`.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    message(buf, b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            cstr(b, m);
        }
        b.put_u8(0);
    });
}

/// `AuthenticationSASLContinue` with the server-first message.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    message(buf, b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

/// `AuthenticationSASLFinal` with the server-final message.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    message(buf, b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

/// `BackendKeyData`: the key a client cancels its queries with.
pub fn backend_key_data(buf: &mut BytesMut, pid: u32, secret: u32) {
    message(buf, b'K', |b| {
        b.put_u32(pid);
        b.put_u32(secret);
    });
}

/// `ParameterStatus`.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

/// `ReadyForQuery` with a transaction status (`I`, `T` or `E`).
#[inline]
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    message(buf, b'Z', |b| b.put_u8(status));
}

/// `NegotiateProtocolVersion`: the newest minor version we speak and the protocol options we
/// did not recognize.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: u16, unrecognized: &[&str]) {
    message(buf, b'v', |b| {
        b.put_i32(i32::from(minor));
        b.put_i32(unrecognized.len() as i32);
        for o in unrecognized {
            cstr(b, o);
        }
    });
}

// === readers ===

/// `ParameterStatus`: name and value.
#[inline]
pub fn parameter_status_fields(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(b'S', body);
    Some((r.cstr().ok()?, r.cstr().ok()?))
}

/// `DataRow`: each column's value (`None` for NULL).
pub fn data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut r = Reader::new(b'D', body);
    let n = r.i16().ok()?;
    (0..n)
        .map(|_| {
            let len = r.i32().ok()?;
            if len < 0 {
                Some(None)
            } else {
                r.take(len as usize).ok().map(Some)
            }
        })
        .collect()
}

/// The first column of a `DataRow` body, `None` when it is NULL or the row is malformed.
#[inline]
pub fn first_column(body: &[u8]) -> Option<&[u8]> {
    let count = i16::from_be_bytes(body.get(0..2)?.try_into().ok()?);
    if count < 1 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    body.get(6..6 + len)
}

/// The message (`M`) field of an `ErrorResponse` or `NoticeResponse`.
pub fn error_message(body: &[u8]) -> String {
    let mut r = Reader::new(b'E', body);
    while let Ok(field) = r.byte() {
        let Ok(value) = r.cstr() else { break };
        if field == b'M' {
            return String::from_utf8_lossy(value).into_owned();
        }
    }
    "(no message)".into()
}

/// The SQLSTATE of an `ErrorResponse` body (empty if it has none).
pub fn error_code(body: &[u8]) -> String {
    let mut r = Reader::new(b'E', body);
    while let Ok(field) = r.byte() {
        let Ok(value) = r.cstr() else { break };
        if field == b'C' {
            return String::from_utf8_lossy(value).into_owned();
        }
    }
    String::new()
}

/// Whether an `ErrorResponse` body ends the session (severity `FATAL` or `PANIC`).
#[inline]
pub fn error_is_fatal(body: &[u8]) -> bool {
    let mut r = Reader::new(b'E', body);
    while let Ok(field) = r.byte() {
        let Ok(value) = r.cstr() else { break };
        if field == b'V' || field == b'S' {
            return matches!(value, b"FATAL" | b"PANIC");
        }
    }
    false
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
