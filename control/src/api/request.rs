//! Reading what a request carries: its body (bounded by [`MAX_BODY_BYTES`]), query flags
//! and percent-encoded path segments.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::response::{error, Body};
use super::state::MAX_BODY_BYTES;

/// Collect a request body, refusing more than [`MAX_BODY_BYTES`] with 413.
pub(super) async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len = len.to_str().ok().and_then(|l| l.parse::<u64>().ok());
        match len {
            Some(n) if n > MAX_BODY_BYTES as u64 => return Err(too_large()),
            Some(_) => {}
            None => return Err(error(StatusCode::BAD_REQUEST, "invalid Content-Length")),
        }
    }
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read request body: {e}"),
        )),
    }
}

fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// The value of `key` in a query string (no percent-decoding: our flags are plain words).
pub(super) fn query_flag(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// Percent-decode one path segment; 400 if it is not UTF-8 after decoding.
pub(super) fn decode(segment: &str) -> Result<String, Response<Body>> {
    let bad = || {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid percent-encoding in path segment {segment:?}"),
        )
    };
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            // Two hex digits: `from_str_radix` alone would also take a sign (`%+f`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad());
            }
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| bad())?;
    if decoded.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "empty path segment"));
    }
    Ok(decoded)
}
