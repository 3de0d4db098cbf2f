//! Both line formats of one entry: fields, escaping and redaction.

use super::*;

fn entry<'a>(retries: &'a [&'static str]) -> Entry<'a> {
    Entry {
        // 2026-12-04T18:56:50.123Z
        time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_410_610_123),
        listener: "public",
        client: Some("10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
        method: "GET",
        path: "/api/v1/items",
        query: Some("page=2&access_token=abc123&sig=zz"),
        protocol: "HTTP/1.1",
        status: 200,
        bytes_sent: 1234,
        referer: Some(b"https://example.com/login?password=hunter2&next=/"),
        user_agent: Some(b"curl/8.5 \"quoted\"\n"),
        request_time: Duration::from_micros(12_345),
        upstream_time: Some(Duration::from_micros(9_876)),
        upstream: Some("api"),
        pool: Some("blue"),
        backend: Some("127.0.0.1:9001"),
        attempts: 2,
        retries,
        request_id: Some(b"req 1"),
    }
}

/// A line is always UTF-8: everything else is escaped.
fn text(line: Vec<u8>) -> String {
    String::from_utf8(line).unwrap_or_else(|e| panic!("not UTF-8: {e}"))
}

#[test]
fn combined_is_nginx_then_our_fields() {
    let mut out = Vec::new();
    entry(&["connect"]).combined(&mut out);
    let out = text(out);
    assert_eq!(
        out,
        "10.1.2.3 - - [04/Dec/2026:18:56:50 +0000] \
         \"GET /api/v1/items?page=2&access_token=REDACTED&sig=REDACTED HTTP/1.1\" 200 1234 \
         \"https://example.com/login?password=REDACTED&next=/\" \
         \"curl/8.5 \\x22quoted\\x22\\x0A\" request_time=0.012 upstream_time=0.009 \
         upstream=api pool=blue backend=127.0.0.1:9001 attempts=2 retries=connect \
         request_id=req\\x201\n"
    );
    assert!(!out.contains("abc123") && !out.contains("hunter2"));
}

#[test]
fn combined_without_upstream_uses_dashes() {
    let mut e = entry(&[]);
    (e.client, e.query, e.referer, e.user_agent) = (None, None, None, None);
    (e.upstream_time, e.upstream, e.pool, e.backend) = (None, None, None, None);
    (e.attempts, e.request_id, e.status) = (0, None, 404);
    let mut out = Vec::new();
    e.combined(&mut out);
    let out = text(out);
    assert!(
        out.starts_with("- - - [04/Dec/2026:18:56:50 +0000] \"GET /api/v1/items HTTP/1.1\" 404 1234 \"-\" \"-\""),
        "{out}"
    );
    assert!(out.ends_with(
        " upstream_time=- upstream=- pool=- backend=- attempts=0 retries=- request_id=-\n"
    ));
}

#[test]
fn json_parses_with_every_field() {
    let mut out = Vec::new();
    entry(&["connect", "status"]).json(&mut out);
    let out = text(out);
    assert!(out.ends_with("}\n") && out.matches('\n').count() == 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["time"], "2026-12-04T18:56:50.123Z");
    assert_eq!(v["listener"], "public");
    assert_eq!(v["client"], "10.1.2.3");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/v1/items");
    assert_eq!(v["query"], "page=2&access_token=REDACTED&sig=REDACTED");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_sent"], 1234);
    assert_eq!(
        v["referer"],
        "https://example.com/login?password=REDACTED&next=/"
    );
    assert_eq!(v["user_agent"], "curl/8.5 \"quoted\"\n");
    assert_eq!(v["request_time"], 0.012);
    assert_eq!(v["upstream_time"], 0.009);
    assert_eq!(
        (&v["upstream"], &v["pool"], &v["backend"]),
        (&"api".into(), &"blue".into(), &"127.0.0.1:9001".into())
    );
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["retries"], serde_json::json!(["connect", "status"]));
    assert_eq!(v["request_id"], "req 1");
}

#[test]
fn json_escapes_what_a_client_sends() {
    let mut e = entry(&[]);
    e.user_agent = Some(b"\x01\xff\\");
    e.request_id = None;
    e.upstream_time = None;
    let mut out = Vec::new();
    e.json(&mut out);
    let out = text(out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["user_agent"], "\u{1}\u{fffd}\\");
    assert!(v["request_id"].is_null() && v["upstream_time"].is_null());
}

#[test]
fn secret_parameters_by_name() {
    for name in [
        "token",
        "access_token",
        "X-Amz-Signature",
        "api_key",
        "apiKey",
        "password",
        "client_secret",
        "key",
        "code",
        "sessionid",
    ] {
        assert!(secret_param(name), "{name}");
    }
    for name in ["page", "q", "sort", "next", "keyword"] {
        assert!(!secret_param(name), "{name}");
    }
    assert!(matches!(redact_query("a=1&b"), Cow::Borrowed("a=1&b")));
    assert_eq!(
        redact_query("token=x&token&b=2"),
        "token=REDACTED&token&b=2"
    );
}
