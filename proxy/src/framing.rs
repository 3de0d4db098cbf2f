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
    if cls.iter().any(|v| {
        v.to_str()
            .map_or(true, |s| s.trim().parse::<u64>().is_err())
    }) {
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
