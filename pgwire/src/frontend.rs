//! Messages of the frontend (client) side, both ways through the router:
//!
//! - **Readers** of the client messages the router looks into before it trusts them:
//!   [`Parse`], [`Bind`], `Describe` and `Close` ([`Subject`]), `Query` ([`query`]), and the
//!   authentication messages ([`SaslInitialResponse`], [`password`]). Bodies come from the
//!   network: every read is checked and a short or unterminated body is a [`Malformed`]
//!   error for that client (SQLSTATE 08P01), never a panic.
//! - **Writers** of the client messages the router sends on a client's behalf (a renamed
//!   `Parse`, `Bind`, `Describe` or `Close`; its own `Query`). The router's logins to servers
//!   use `postgres-protocol`'s writers ([`crate::login`]).

use bytes::BytesMut;

pub use crate::body::Malformed;
use crate::body::Reader;
use crate::frame::put;

// === readers ===

/// `Parse`: statement name, query text, and the parameter type section as it came (count
/// and OIDs), checked for length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    pub types: &'a [u8],
}

/// Read a `Parse` body.
#[inline]
pub fn parse(body: &[u8]) -> Result<Parse<'_>, Malformed> {
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
    Ok(Parse { name, query, types })
}

/// `Bind`: portal, statement, and the rest of the body (formats and values) as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

/// Read a `Bind` body.
#[inline]
pub fn bind(body: &[u8]) -> Result<Bind<'_>, Malformed> {
    let mut r = Reader::new(b'B', body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Ok(Bind {
        portal,
        statement,
        rest: r.rest(),
    })
}

/// What a `Describe` or `Close` is about: `kind` `S` (a statement) or `P` (a portal), and
/// its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

/// Read a `Describe` (`tag` `D`) or `Close` (`C`) body.
#[inline]
pub fn target(tag: u8, body: &[u8]) -> Result<Subject<'_>, Malformed> {
    let mut r = Reader::new(tag, body);
    let kind = r.byte()?;
    let name = r.cstr()?;
    if !matches!(kind, b'S' | b'P') || !r.rest().is_empty() {
        return Err(Malformed(tag));
    }
    Ok(Subject { kind, name })
}

/// `Query`: the text.
#[inline]
pub fn query(body: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Reader::new(b'Q', body);
    r.cstr()
}

/// `SASLInitialResponse` (a `p` message while SASL starts): the mechanism the client chose
/// and its first message. PostgreSQL judges the mechanism before it reads the rest, so the
/// rest is read apart: `data` is `Err` when the `i32` length and the bytes that follow it
/// disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a [u8],
    pub data: Result<&'a [u8], Malformed>,
}

/// Read a `SASLInitialResponse` body: the mechanism (`Err` without its NUL), then an `i32`
/// length and exactly that many bytes of data.
pub fn sasl_initial_response(body: &[u8]) -> Result<SaslInitialResponse<'_>, Malformed> {
    let mut r = Reader::new(b'p', body);
    let mechanism = r.cstr()?;
    let data = r.i32().and_then(|len| {
        let data = r.rest();
        if i64::from(len) == data.len() as i64 {
            Ok(data)
        } else {
            Err(Malformed(b'p'))
        }
    });
    Ok(SaslInitialResponse { mechanism, data })
}

/// `PasswordMessage`: the password (or md5 hash) as sent, without its terminating NUL.
pub fn password(body: &[u8]) -> &[u8] {
    body.strip_suffix(&[0]).unwrap_or(body)
}

// === writers ===

/// `Parse` of `name` with `query` and the raw parameter type section.
#[inline]
pub fn put_parse(out: &mut BytesMut, name: &[u8], query: &[u8], types: &[u8]) {
    put(out, b'P', &[name, b"\0", query, b"\0", types]);
}

/// `Bind` of `portal` to `statement`, with the rest of the client's body.
#[inline]
pub fn put_bind(out: &mut BytesMut, portal: &[u8], statement: &[u8], rest: &[u8]) {
    put(out, b'B', &[portal, b"\0", statement, b"\0", rest]);
}

/// `Describe` or `Close` (`tag`) of `kind` `name`.
#[inline]
pub fn put_target(out: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
    put(out, tag, &[&[kind], name, b"\0"]);
}

/// A simple `Query`.
#[inline]
pub fn put_query(out: &mut BytesMut, sql: &str) {
    put(out, b'Q', &[sql.as_bytes(), b"\0"]);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::{data_row, error_message, parameter_status_fields};
    use crate::frame::{peek, HEADER_LEN};

    #[test]
    fn reads_what_it_writes() {
        let mut out = BytesMut::new();
        put_parse(&mut out, b"s1", b"select $1", &[0, 1, 0, 0, 0, 23]);
        let (tag, len) = peek(&mut out, crate::frame::frontend_limit)
            .unwrap()
            .unwrap();
        assert_eq!((tag, len), (b'P', out.len() - HEADER_LEN));
        let Parse {
            name,
            query: q,
            types,
        } = parse(&out[HEADER_LEN..]).unwrap();
        assert_eq!(
            (name, q, types),
            (&b"s1"[..], &b"select $1"[..], &[0, 1, 0, 0, 0, 23][..])
        );

        let mut out = BytesMut::new();
        put_bind(&mut out, b"", b"sy_1", &[0, 0, 0, 0, 0, 0]);
        let Bind {
            portal,
            statement: stmt,
            rest,
        } = bind(&out[HEADER_LEN..]).unwrap();
        assert_eq!((portal, stmt, rest.len()), (&b""[..], &b"sy_1"[..], 6));

        let mut out = BytesMut::new();
        put_target(&mut out, b'C', b'S', b"sy_2");
        let t = target(b'C', &out[HEADER_LEN..]).unwrap();
        assert_eq!((t.kind, t.name), (b'S', &b"sy_2"[..]));
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
                parameter_status_fields(&body),
                data_row(&body),
                error_message(&body),
            );
            let _ = (sasl_initial_response(&body), password(&body));
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

    #[test]
    fn sasl_initial_response_lengths_must_match() {
        let r = sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x03abc").unwrap();
        assert_eq!(
            (r.mechanism, r.data),
            (&b"SCRAM-SHA-256"[..], Ok(&b"abc"[..]))
        );
        let r = sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x04abc").unwrap();
        assert!(r.data.is_err());
        let r = sasl_initial_response(b"other\0\0\0").unwrap();
        assert_eq!((r.mechanism, r.data.is_err()), (&b"other"[..], true));
        assert!(sasl_initial_response(b"SCRAM-SHA-256").is_err());
        assert_eq!(password(b"secret\0"), b"secret");
    }
}
