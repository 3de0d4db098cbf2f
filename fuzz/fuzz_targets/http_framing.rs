//! The HTTP/1 request-smuggling checks (`proxy/src/framing.rs`, compiled here by path so
//! the fuzz build needs no pingora): the raw head is parsed with `httparse` (the parser
//! pingora uses), then judged.
//!
//! Property: the verdict equals an independent reading of RFC 9112 §6 over the parsed
//! header lines: refuse when `Content-Length` and `Transfer-Encoding` are both present (in
//! the raw head, as pingora drops `Content-Length` from the parsed map in that case), when
//! `Content-Length` values differ or are not a decimal number, and when `Transfer-Encoding`
//! is anything but one plain `chunked`.
#![no_main]

#[path = "../../proxy/src/framing.rs"]
mod framing;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(data) else {
        return;
    };
    let raw_head = &data[..head_len];
    let mut map = HeaderMap::new();
    let mut cls: Vec<&[u8]> = Vec::new();
    let mut tes: Vec<&[u8]> = Vec::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return; // pingora refuses such a request before the checks run
        };
        if h.name.eq_ignore_ascii_case("content-length") {
            cls.push(h.value);
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            tes.push(h.value);
        }
        map.append(name, value);
    }
    let cl_received = framing::received_content_length(raw_head);
    assert_eq!(
        cl_received,
        !cls.is_empty(),
        "the raw scan and httparse disagree on {raw_head:?}"
    );

    let verdict = framing::smuggling(&map, cl_received);
    let trim = |v: &[u8]| -> Vec<u8> { v.trim_ascii().to_vec() };
    let expected = if !cls.is_empty() && !tes.is_empty() {
        Some("both")
    } else if cls.windows(2).any(|w| w[0] != w[1]) {
        Some("conflicting")
    } else if cls.len() > 1 {
        Some("more than one")
    } else if cls.iter().any(|v| {
        let t = trim(v);
        t.is_empty()
            || !t.iter().all(u8::is_ascii_digit)
            || std::str::from_utf8(&t)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_none()
    }) {
        Some("invalid")
    } else if tes.len() > 1 || tes.iter().any(|v| !v.eq_ignore_ascii_case(b"chunked")) {
        Some("unsupported")
    } else {
        None
    };
    match (verdict, expected) {
        (None, None) => {}
        (Some(got), Some(want)) => assert!(
            got.to_ascii_lowercase().contains(want),
            "{raw_head:?}: got {got:?}, expected {want}"
        ),
        (got, want) => panic!(
            "{:?}: got {got:?}, expected {want:?}",
            String::from_utf8_lossy(raw_head)
        ),
    }
});
