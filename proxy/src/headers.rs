//! Header rules of RFC 9110/9112 that the proxy applies itself, as pure functions over header
//! maps (pingora 0.9 leaves them to the application): hop-by-hop fields taken out of
//! responses, the `Host` a request must have, `X-Forwarded-For` joined across repeated
//! fields, whether `Accept-Encoding` really accepts gzip (q-values included), and the
//! `X-Request-Id` a request is given when it has none.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

/// The request id field, kept when a request has one, added when not; forwarded to the
/// backend and written in the access log.
pub const REQUEST_ID: &str = "x-request-id";

/// A new request id: 128 random bits as 32 hex digits, like nginx's `$request_id`.
pub fn new_request_id() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    // Hex digits are always a valid header value.
    HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("-"))
}

/// The HTTP version as a request line writes it.
pub fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// Hop-by-hop fields that are never forwarded, named in `Connection` or not (RFC 9110 §7.6.1;
/// `Keep-Alive` and `Proxy-Connection` are the ones still seen in practice).
const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

/// Fields a `Connection` header may not take away: the message's framing is pingora's to
/// decide, and a backend naming `Content-Length` there must not make the response ambiguous.
const FRAMING: [HeaderName; 2] = [header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

/// The hop-by-hop fields of a response, to remove before it goes to the client: every field
/// named in a `Connection` header, `Connection` itself, and [`HOP_BY_HOP`]. A `101 Switching
/// Protocols` keeps `Connection` and `Upgrade`, which are the switch itself.
pub fn hop_by_hop(headers: &HeaderMap, switching_protocols: bool) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !FRAMING.contains(n))
        .filter(|n| !(switching_protocols && *n == header::UPGRADE))
        .filter(|n| headers.contains_key(n))
        .collect();
    for name in HOP_BY_HOP {
        if headers.contains_key(name) && !(switching_protocols && name == "upgrade") {
            out.push(HeaderName::from_static(name));
        }
    }
    if !switching_protocols && headers.contains_key(header::CONNECTION) {
        out.push(header::CONNECTION);
    }
    out
}

/// What is wrong with a request's `Host` fields, if anything (RFC 9112 §3.2): an HTTP/1.1
/// request must have exactly one, any request at most one.
pub fn host_problem(version: Version, headers: &HeaderMap) -> Option<&'static str> {
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Some("more than one Host header\n");
    }
    if hosts == 0 && version == Version::HTTP_11 {
        return Some("HTTP/1.1 request without Host\n");
    }
    None
}

/// The `X-Forwarded-For` to send upstream: every received `X-Forwarded-For` field in order,
/// then the client's address.
pub fn forwarded_for(headers: &HeaderMap, client: &str) -> String {
    let mut out = String::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { continue };
        for hop in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            out.push_str(hop);
            out.push_str(", ");
        }
    }
    out.push_str(client);
    out
}

/// Whether `Accept-Encoding` (every field of it) accepts gzip: an explicit `gzip` (or
/// `x-gzip`) with a q-value above 0, or else `*` with one. No header means no compression,
/// as nginx does (RFC 9110 lets any coding go then, but an old client may not decode it).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map(|(_, v)| v.trim().parse::<f32>().unwrap_or(0.0))
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(gzip.map_or(q, |g: f32| g.max(q))),
                "*" => any = Some(q),
                _ => {}
            }
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// `Content-Length` of a response, when it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        h
    }

    fn strip_hop_by_hop(h: &mut HeaderMap, switching: bool) {
        for name in hop_by_hop(h, switching) {
            h.remove(name);
        }
    }

    #[test]
    fn hop_by_hop_fields_leave_responses() {
        let mut h = map(&[
            ("connection", "X-Foo, close"),
            ("connection", "x-bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-kept"]);
    }

    #[test]
    fn connection_cannot_remove_framing_and_101_keeps_the_upgrade() {
        let mut h = map(&[("connection", "content-length"), ("content-length", "3")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.contains_key("content-length"));
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn host_rules() {
        assert!(host_problem(Version::HTTP_11, &map(&[])).is_some());
        assert!(host_problem(Version::HTTP_10, &map(&[])).is_none());
        assert!(host_problem(Version::HTTP_11, &map(&[("host", "a")])).is_none());
        assert!(host_problem(Version::HTTP_10, &map(&[("host", "a"), ("host", "b")])).is_some());
    }

    #[test]
    fn forwarded_for_joins_every_field() {
        let h = map(&[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
        ]);
        assert_eq!(
            forwarded_for(&h, "9.9.9.9"),
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9"
        );
        assert_eq!(forwarded_for(&map(&[]), "9.9.9.9"), "9.9.9.9");
    }

    #[test]
    fn gzip_q_values() {
        let ae = |v: &str| accepts_gzip(&map(&[("accept-encoding", v)]));
        assert!(ae("gzip"));
        assert!(ae("br, gzip;q=0.5"));
        assert!(!ae("gzip;q=0"));
        assert!(!ae("gzip; q=0.000"));
        assert!(!ae("br"));
        assert!(ae("*"));
        assert!(!ae("*;q=0"));
        assert!(!ae("gzip;q=0, *"));
        assert!(!accepts_gzip(&map(&[])));
    }
}
