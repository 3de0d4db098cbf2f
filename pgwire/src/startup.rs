//! The untyped packets a client opens a connection with: `SSLRequest`, `GSSENCRequest`,
//! `CancelRequest` and `StartupMessage`, each a big-endian `i32` length (counting itself) and
//! a body that begins with a request code.
//!
//! Parsing is strict and bounded (PostgreSQL's own `MAX_STARTUP_PACKET_LENGTH`, 10,000
//! bytes): whatever is wrong comes back as a [`StartupError`] that knows its SQLSTATE, so the
//! session can answer that client with an `ErrorResponse` and close it alone.

use crate::backend::SqlState;
use crate::error::ClientError;

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Request codes of the packets that are not a `StartupMessage`.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;

/// The protocol major version we speak; minor versions above 0 are negotiated down.
pub const PROTOCOL_MAJOR: u16 = 3;

/// A packet that opens (or, for a cancel, is) a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    SslRequest,
    GssEncRequest,
    Cancel { pid: u32, secret: u32 },
    Startup(StartupParams),
}

/// A `StartupMessage`: the protocol minor version asked for and the parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupParams {
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl StartupParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The user, which PostgreSQL requires.
    pub fn user(&self) -> Result<&str, StartupError> {
        match self.get("user") {
            Some(u) if !u.is_empty() => Ok(u),
            _ => Err(StartupError::NoUser),
        }
    }

    /// The database, which defaults to the user's name.
    pub fn database(&self) -> Option<&str> {
        self.get("database")
            .filter(|d| !d.is_empty())
            .or_else(|| self.get("user"))
    }

    /// Protocol options (`_pq_.*`) the client asked for; we support none of them.
    pub fn protocol_options(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// Whether this is a replication connection (`replication=true|database`).
    pub fn is_replication(&self) -> bool {
        matches!(self.get("replication"), Some(v) if !matches!(v, "false" | "off" | "no" | "0"))
    }
}

/// Why a startup packet was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The client went away before sending a whole packet: nobody to answer.
    #[error("client closed the connection during startup")]
    Closed,
    #[error("reading the startup packet: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid length of startup packet: {0}")]
    BadLength(i64),
    #[error("invalid startup packet layout: {0}")]
    Layout(&'static str),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    Unsupported { major: u16, minor: u16 },
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
}

impl StartupError {
    /// The error to send the client, or `None` when it is gone.
    pub fn to_client(&self) -> Option<ClientError> {
        let code = match self {
            StartupError::Closed | StartupError::Io(_) => return None,
            StartupError::BadLength(_) | StartupError::Layout(_) => SqlState::PROTOCOL_VIOLATION,
            StartupError::Unsupported { .. } => SqlState::FEATURE_NOT_SUPPORTED,
            StartupError::NoUser => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        };
        Some(ClientError::fatal(code, self.to_string()))
    }
}

/// Parse a packet's body (after the length).
pub fn parse(body: &[u8]) -> Result<Packet, StartupError> {
    let (code, rest) = split_u32(body).ok_or(StartupError::BadLength(body.len() as i64 + 4))?;
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if !rest.is_empty() => {
            Err(StartupError::BadLength(body.len() as i64 + 4))
        }
        SSL_REQUEST_CODE => Ok(Packet::SslRequest),
        GSSENC_REQUEST_CODE => Ok(Packet::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            let (pid, rest) =
                split_u32(rest).ok_or(StartupError::Layout("short cancel request"))?;
            let (secret, rest) =
                split_u32(rest).ok_or(StartupError::Layout("short cancel request"))?;
            if !rest.is_empty() {
                return Err(StartupError::Layout("cancel request key is too long"));
            }
            Ok(Packet::Cancel { pid, secret })
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != PROTOCOL_MAJOR {
                return Err(StartupError::Unsupported { major, minor });
            }
            Ok(Packet::Startup(StartupParams {
                minor,
                params: parse_params(rest)?,
            }))
        }
    }
}

/// The `SSLRequest` packet, as a client (the router logging in to a server) sends it.
pub fn ssl_request() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&8u32.to_be_bytes());
    p[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    p
}

/// Check a packet's declared length (the `i32` that starts it, counting itself): the body
/// length to read next.
pub fn body_len(header: [u8; 4]) -> Result<usize, StartupError> {
    let len = i32::from_be_bytes(header) as i64;
    if !(8..=MAX_STARTUP_LEN as i64).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    Ok(len as usize - 4)
}

fn split_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// Name/value pairs of NUL-terminated strings, ended by an empty name.
fn parse_params(mut b: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        let name = cstr(&mut b)?;
        if name.is_empty() {
            break;
        }
        let value = cstr(&mut b)?;
        params.push((name, value));
    }
    if !b.is_empty() {
        return Err(StartupError::Layout("expected terminator as last byte"));
    }
    Ok(params)
}

fn cstr(b: &mut &[u8]) -> Result<String, StartupError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(StartupError::Layout("expected terminator as last byte"))?;
    let s = std::str::from_utf8(&b[..end])
        .map_err(|_| StartupError::Layout("a parameter is not valid UTF-8"))?
        .to_string();
    *b = &b[end + 1..];
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_the_request_codes() {
        assert_eq!(
            parse(&SSL_REQUEST_CODE.to_be_bytes()).unwrap(),
            Packet::SslRequest
        );
        assert_eq!(
            parse(&GSSENC_REQUEST_CODE.to_be_bytes()).unwrap(),
            Packet::GssEncRequest
        );
        let mut cancel = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        cancel.extend_from_slice(&7u32.to_be_bytes());
        cancel.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(
            parse(&cancel).unwrap(),
            Packet::Cancel {
                pid: 7,
                secret: 0xdead_beef
            }
        );
        cancel.push(1);
        assert!(matches!(parse(&cancel), Err(StartupError::Layout(_))));
    }

    #[test]
    fn parses_a_startup_message() {
        let body = startup(
            0x0003_0000,
            &[("user", "app"), ("database", "jobs"), ("options", "-c x=1")],
        );
        let Packet::Startup(p) = parse(&body).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!((p.minor, p.user().unwrap()), (0, "app"));
        assert_eq!(p.database(), Some("jobs"));
        assert_eq!(p.get("options"), Some("-c x=1"));
        assert!(!p.is_replication());
    }

    #[test]
    fn refuses_what_postgres_refuses() {
        let no_user = startup(0x0003_0000, &[("database", "jobs")]);
        let Packet::Startup(p) = parse(&no_user).unwrap() else {
            panic!("not a startup message")
        };
        assert!(matches!(p.user(), Err(StartupError::NoUser)));
        let v2 = startup(0x0002_0000, &[("user", "app")]);
        assert!(matches!(
            parse(&v2),
            Err(StartupError::Unsupported { major: 2, .. })
        ));
        let mut unterminated = startup(0x0003_0000, &[("user", "app")]);
        unterminated.pop();
        assert!(matches!(parse(&unterminated), Err(StartupError::Layout(_))));
        let e = StartupError::Unsupported { major: 2, minor: 0 };
        assert_eq!(e.to_client().unwrap().code, SqlState::FEATURE_NOT_SUPPORTED);
    }

    #[test]
    fn lengths_are_bounded_before_the_body_is_read() {
        assert!(matches!(
            body_len(*b"GET "),
            Err(StartupError::BadLength(_))
        ));
        assert!(matches!(
            body_len([0, 0, 0, 4]),
            Err(StartupError::BadLength(4))
        ));
        assert_eq!(body_len([0, 0, 0, 8]).unwrap(), 4);
        assert_eq!(ssl_request()[4..], SSL_REQUEST_CODE.to_be_bytes());
    }

    #[test]
    fn minor_versions_and_protocol_options_are_visible_for_negotiation() {
        let body = startup(0x0003_0002, &[("user", "app"), ("_pq_.x", "1")]);
        let Packet::Startup(p) = parse(&body).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(p.minor, 2);
        assert_eq!(p.protocol_options(), vec!["_pq_.x"]);
        assert_eq!(p.database(), Some("app"));
    }
}
