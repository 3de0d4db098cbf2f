//! The request-smuggling checks on an HTTP/1 request's framing headers: whether
//! `Content-Length` and `Transfer-Encoding` leave exactly one reading of where the body ends.
//!
//! Pure functions over a header map and the raw header block, with no pingora type, so the
//! fuzz crate (`fuzz/`, target `http_framing`) compiles this file on its own (by path) and
//! checks it against an independent reading of the raw header block.

use http::{header, HeaderMap};

/// Framing problems that make a request unsafe to forward (request smuggling): both
/// `Content-Length` and `Transfer-Encoding`, conflicting `Content-Length`s, or a
/// `Transfer-Encoding` other than plain `chunked`. `cl_received`: the request as received
/// had a `Content-Length` (see [`received_content_length`]).
pub fn smuggling(headers: &HeaderMap, cl_received: bool) -> Option<&'static str> {
    let cls: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let tes: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if (!cls.is_empty() || cl_received) && !tes.is_empty() {
        return Some("both Content-Length and Transfer-Encoding\n");
    }
    if cls.windows(2).any(|w| w[0] != w[1]) {
        return Some("conflicting Content-Length headers\n");
    }
    // Two equal ones are ambiguous too (RFC 9112 §6.3 lets a recipient merge them, but what
    // the backend does with the pair is its own choice): refuse rather than rewrite.
    if cls.len() > 1 {
        return Some("more than one Content-Length header\n");
    }
    if cls.iter().any(|v| !is_length(v.as_bytes())) {
        return Some("invalid Content-Length\n");
    }
    if tes.len() > 1
        || tes
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        return Some("unsupported Transfer-Encoding\n");
    }
    None
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), around optional whitespace, within `u64`.
/// Not `str::parse`, which also takes a sign: `+5` is no length, and an upstream that
/// refuses it (or reads it otherwise) would frame the body differently from us.
fn is_length(v: &[u8]) -> bool {
    let digits = v.trim_ascii();
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(digits).is_ok_and(|d| d.parse::<u64>().is_ok())
}

/// Whether a raw HTTP/1 request head (request line, then header lines) has a
/// `Content-Length` header. When `Transfer-Encoding` is present too, pingora removes
/// `Content-Length` from the parsed header (RFC 9112 lets an intermediary do so) and would
/// forward the request: the raw header block is the only place left to see the ambiguity
/// and refuse it.
pub fn received_content_length(raw_head: &[u8]) -> bool {
    raw_head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| line.split(|&b| b == b':').next())
        .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"content-length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_lengths(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::CONTENT_LENGTH,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    /// Found by the `http_framing` fuzz target: `Content-Length: +00` passed, since
    /// `str::parse::<u64>` takes a leading `+`.
    #[test]
    fn a_signed_content_length_is_invalid() {
        for v in [
            "+00",
            "+5",
            "-1",
            " ",
            "5 5",
            "0x10",
            "18446744073709551616",
        ] {
            assert_eq!(
                smuggling(&with_lengths(&[v]), true),
                Some("invalid Content-Length\n"),
                "{v:?}"
            );
        }
        for v in ["0", "5", " 17 ", "18446744073709551615"] {
            assert_eq!(smuggling(&with_lengths(&[v]), true), None, "{v:?}");
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let mut h = with_lengths(&["5"]);
        assert_eq!(
            smuggling(&with_lengths(&["5", "6"]), true),
            Some("conflicting Content-Length headers\n")
        );
        assert_eq!(
            smuggling(&with_lengths(&["5", "5"]), true),
            Some("more than one Content-Length header\n")
        );
        h.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(
            smuggling(&h, true),
            Some("both Content-Length and Transfer-Encoding\n")
        );
        let mut te = HeaderMap::new();
        te.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(smuggling(&te, false), None);
        assert!(
            smuggling(&te, true).is_some(),
            "a Content-Length pingora dropped still counts"
        );
        te.append(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            smuggling(&te, false),
            Some("unsupported Transfer-Encoding\n")
        );
        assert!(received_content_length(
            b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length : 5\r\n\r\n"
        ));
        assert!(!received_content_length(
            b"POST /content-length: HTTP/1.1\r\nHost: a\r\n\r\n"
        ));
    }
}
