//! The message bodies transaction pooling reads and rewrites: the client's `Parse`, `Bind`,
//! `Describe`, `Close` and `Query`, the server's `DataRow`, `ParameterStatus` and
//! `CommandComplete`, and writers for the messages the router sends on a client's behalf.
//!
//! Bodies come from the network: every read is checked and a short or unterminated body is a
//! [`Malformed`] error for that client (SQLSTATE 08P01), never a panic.

use bytes::{BufMut, BytesMut};

use crate::frame::{FrameError, HEADER_LEN};

/// A client message whose body does not have the layout its type requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {} message", *.0 as char)]
pub struct Malformed(pub u8);

/// Reads one message body front to back.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    tag: u8,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(tag: u8, buf: &'a [u8]) -> Self {
        Reader { tag, buf }
    }

    /// A NUL-terminated string, without its NUL.
    pub fn cstr(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(Malformed(self.tag))?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..).unwrap_or_default();
        Ok(s)
    }

    pub fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.buf.split_first().ok_or(Malformed(self.tag))?;
        self.buf = rest;
        Ok(b)
    }

    pub fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(self.tag));
        }
        let (s, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(s)
    }

    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// Three parts of a message body.
pub type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// `Parse`: statement name, query text, and the parameter type section as it came (count
/// and OIDs), checked for length.
pub fn parse(body: &[u8]) -> Result<Parts<'_>, Malformed> {
    let mut r = Reader::new(b'P', body);
    let name = r.cstr()?;
    let query = r.cstr()?;
    let types = r.rest();
    let mut t = r;
    let n = t.i16()?;
    if n < 0 {
        return Err(Malformed(b'P'));
    }
    t.take(4 * n as usize)?;
    if !t.rest().is_empty() {
        return Err(Malformed(b'P'));
    }
    Ok((name, query, types))
}

/// `Bind`: portal, statement, and the rest of the body (formats and values) as it came.
pub fn bind(body: &[u8]) -> Result<Parts<'_>, Malformed> {
    let mut r = Reader::new(b'B', body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Ok((portal, statement, r.rest()))
}

/// `Describe` and `Close`: `S` (statement) or `P` (portal), and the name.
pub fn target(tag: u8, body: &[u8]) -> Result<(u8, &[u8]), Malformed> {
    let mut r = Reader::new(tag, body);
    let kind = r.byte()?;
    let name = r.cstr()?;
    if !matches!(kind, b'S' | b'P') || !r.rest().is_empty() {
        return Err(Malformed(tag));
    }
    Ok((kind, name))
}

/// `Query`: the text.
pub fn query(body: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Reader::new(b'Q', body);
    r.cstr()
}

/// `ParameterStatus`: name and value.
pub fn parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
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

/// Append one message: `tag`, length, then `parts` one after the other.
pub fn put(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    out.reserve(HEADER_LEN + len);
    out.put_u8(tag);
    out.put_i32(len as i32);
    for p in parts {
        out.put_slice(p);
    }
}

/// `Parse` of `name` with `query` and the raw parameter type section.
pub fn put_parse(out: &mut BytesMut, name: &[u8], query: &[u8], types: &[u8]) {
    put(out, b'P', &[name, b"\0", query, b"\0", types]);
}

/// `Bind` of `portal` to `statement`, with the rest of the client's body.
pub fn put_bind(out: &mut BytesMut, portal: &[u8], statement: &[u8], rest: &[u8]) {
    put(out, b'B', &[portal, b"\0", statement, b"\0", rest]);
}

/// `Describe` or `Close` (`tag`) of `kind` `name`.
pub fn put_target(out: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
    put(out, tag, &[&[kind], name, b"\0"]);
}

/// A simple `Query`.
pub fn put_query(out: &mut BytesMut, sql: &str) {
    put(out, b'Q', &[sql.as_bytes(), b"\0"]);
}

/// Check a message header at the front of `buf`: `Some((tag, body length))` once all of the
/// message is there, `None` while more bytes are needed.
pub fn peek(
    buf: &mut BytesMut,
    limit: impl Fn(u8) -> Option<usize>,
) -> Result<Option<(u8, usize)>, FrameError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(h);
    let len = crate::frame::check_header(&header, limit)?;
    if buf.len() < HEADER_LEN + len {
        // Room for the rest, in steps: a declared length is no promise.
        buf.reserve((HEADER_LEN + len - buf.len()).min(64 * 1024));
        return Ok(None);
    }
    Ok(Some((header[0], len)))
}

/// The first column of a `DataRow` body, `None` when it is NULL or the row is malformed.
pub fn first_column(body: &[u8]) -> Option<&[u8]> {
    let count = i16::from_be_bytes(body.get(0..2)?.try_into().ok()?);
    if count < 1 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    body.get(6..6 + len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes() {
        let mut out = BytesMut::new();
        put_parse(&mut out, b"s1", b"select $1", &[0, 1, 0, 0, 0, 23]);
        let (tag, len) = peek(&mut out, crate::frame::frontend_limit)
            .unwrap()
            .unwrap();
        assert_eq!((tag, len), (b'P', out.len() - HEADER_LEN));
        let (name, q, types) = parse(&out[HEADER_LEN..]).unwrap();
        assert_eq!(
            (name, q, types),
            (&b"s1"[..], &b"select $1"[..], &[0, 1, 0, 0, 0, 23][..])
        );

        let mut out = BytesMut::new();
        put_bind(&mut out, b"", b"sy_1", &[0, 0, 0, 0, 0, 0]);
        let (portal, stmt, rest) = bind(&out[HEADER_LEN..]).unwrap();
        assert_eq!((portal, stmt, rest.len()), (&b""[..], &b"sy_1"[..], 6));

        let mut out = BytesMut::new();
        put_target(&mut out, b'C', b'S', b"sy_2");
        assert_eq!(
            target(b'C', &out[HEADER_LEN..]).unwrap(),
            (b'S', &b"sy_2"[..])
        );
    }

    #[test]
    fn random_bodies_never_panic() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let len = rng.random_range(0..16);
            let body: Vec<u8> = (0..len)
                .map(|_| [0, 1, 0xff, b'S', b'M'][rng.random_range(0..5)])
                .collect();
            let _ = (parse(&body), bind(&body), target(b'D', &body), query(&body));
            let _ = (
                parameter_status(&body),
                data_row(&body),
                error_message(&body),
            );
        }
    }

    #[test]
    fn short_or_unterminated_bodies_are_malformed() {
        assert!(parse(b"s1\0select 1").is_err());
        assert!(parse(b"s1\0select 1\0\0\x02\0\0\0\x17").is_err());
        assert!(parse(b"s1\0select 1\0\xff\xff").is_err());
        assert!(parse(b"s1\0select 1\0\0\0junk").is_err());
        assert!(bind(b"portal").is_err());
        assert!(target(b'D', b"X\0").is_err());
        assert!(target(b'D', b"S").is_err());
        assert!(query(b"select 1").is_err());
        assert_eq!(data_row(b"\0\x01\0\0\0\x09ab"), None);
        assert_eq!(
            data_row(b"\0\x02\xff\xff\xff\xff\0\0\0\x02ab"),
            Some(vec![None, Some(&b"ab"[..])])
        );
    }
}
