//! Hostile and broken input to the control API: every refusal is a clean 4xx with a reason,
//! the running config and its file are untouched, the process keeps serving, and the attempt
//! is in the audit log.

mod support;

use anyhow::Context;
use support::config::{Conf, ADMIN, VIEWER};
use support::{Request, Response, Switchyard};

/// What must not move when a request is refused.
struct Before {
    version: u64,
    hash: serde_json::Value,
    file: String,
    audit_lines: usize,
}

fn before(sy: &Switchyard) -> anyhow::Result<Before> {
    let s = sy.status()?;
    Ok(Before {
        version: s["version"].as_u64().context("version")?,
        hash: s["hash"].clone(),
        file: sy.config_text()?,
        audit_lines: sy.audit()?.len(),
    })
}

/// The config, its file and its version are as they were; the refusal was audited as
/// `action` with `result`.
fn assert_untouched(sy: &Switchyard, b: &Before, action: &str, result: &str) -> anyhow::Result<()> {
    let s = sy.status()?;
    assert_eq!(s["version"].as_u64(), Some(b.version), "{s}");
    assert_eq!(s["hash"], b.hash);
    assert_eq!(sy.config_text()?, b.file, "the config file changed");
    let audit = sy.audit()?;
    assert_eq!(
        audit.len(),
        b.audit_lines + 1,
        "one audit line per attempt: {audit:?}"
    );
    let last = &audit[audit.len() - 1];
    assert_eq!(last["action"], action, "{last}");
    assert_eq!(last["result"], result, "{last}");
    assert_eq!(last["version_after"].as_u64(), Some(b.version), "{last}");
    Ok(())
}

/// A JSON error body with a message.
fn assert_error_body(r: &Response) -> anyhow::Result<()> {
    let v = r.json()?;
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    Ok(())
}

/// A valid config that differs from the running one, so only the refusal keeps it out.
fn changed(sy: &Switchyard) -> String {
    Conf::new(sy.port()).backend(9002).render()
}

#[test]
fn ten_megabyte_body_is_413() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let b = before(&sy)?;
    let mut huge = changed(&sy).into_bytes();
    huge.resize(10 * 1024 * 1024, b'#');
    let r = sy.send(Request::put("/v1/config", huge.clone()).bearer(ADMIN))?;
    assert_eq!(r.status, 413, "{}", r.describe());
    assert_error_body(&r)?;
    assert_untouched(&sy, &b, "config.put", "rejected")?;

    // The same without a Content-Length: chunked, cut off at the limit while reading.
    let b = before(&sy)?;
    let mut raw = format!(
        "PUT /v1/config HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        sy.addr()
    )
    .into_bytes();
    for chunk in huge.chunks(64 * 1024) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = sy.send_raw(&raw)?;
    assert_eq!(r.status, 413, "{}", r.describe());
    assert_untouched(&sy, &b, "config.put", "rejected")?;
    Ok(())
}

#[test]
fn non_toml_body_is_400_with_errors() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    for body in [
        "{\"control\": {\"listen\": \"127.0.0.1:1\"}}",
        "<config><listen/></config>",
        "this is not toml at all",
    ] {
        let b = before(&sy)?;
        let r = sy.send(Request::put("/v1/config", body).bearer(ADMIN))?;
        assert_eq!(r.status, 400, "{body}: {}", r.describe());
        let v = r.json()?;
        let errors = v["errors"].as_array().context("errors is a list")?;
        assert!(!errors.is_empty(), "{v}");
        for e in errors {
            assert!(e["path"].is_string() && e["message"].is_string(), "{e}");
            assert!(e["line"].is_u64(), "{e}");
        }
        assert_untouched(&sy, &b, "config.put", "rejected")?;
    }
    Ok(())
}

#[test]
fn hundred_thousand_backends_is_a_clean_4xx() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let b = before(&sy)?;
    let backends: Vec<String> = (0..100_000u32)
        .map(|i| {
            format!(
                "\"127.0.{}.{}:{}\"",
                i / 60_000,
                1 + i / 250 % 250,
                1024 + i % 60_000
            )
        })
        .collect();
    let text = Conf::new(sy.port()).render().replace(
        "backends = [\"127.0.0.1:9001\"]",
        &format!("backends = [{}]", backends.join(", ")),
    );
    let r = sy.send(Request::put("/v1/config", text).bearer(ADMIN))?;
    assert!(r.status == 400 || r.status == 413, "{}", r.describe());
    assert_error_body(&r)?;
    if r.status == 400 {
        let v = r.json()?;
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("100000 backends")),
            "{v}"
        );
    }
    assert_untouched(&sy, &b, "config.put", "rejected")?;
    assert_eq!(sy.send(Request::get("/health"))?.status, 200);
    Ok(())
}

/// A raw `PUT /v1/config` with a valid changed config and the given extra header lines.
fn raw_put(sy: &Switchyard, auth: &[u8], extra: &[u8]) -> Vec<u8> {
    let body = changed(sy);
    let mut raw = format!("PUT /v1/config HTTP/1.1\r\nHost: {}\r\n", sy.addr()).into_bytes();
    raw.extend_from_slice(b"Authorization: ");
    raw.extend_from_slice(auth);
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(extra);
    raw.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    raw
}

#[test]
fn odd_bytes_in_headers_are_refused() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let admin = format!("Bearer {ADMIN}").into_bytes();
    // (what, Authorization value, extra header lines, audit result if the API saw it)
    type Case<'a> = (&'a str, Vec<u8>, &'a [u8], Option<&'a str>);
    let cases: [Case<'_>; 5] = [
        // Control bytes never reach the API: the HTTP parser refuses the request.
        (
            "control byte in a value",
            admin.clone(),
            b"X-Odd: a\x01b\xffc\r\n",
            None,
        ),
        (
            "control byte in a name",
            admin.clone(),
            b"X-\x01Odd: 1\r\n",
            None,
        ),
        (
            "0xff in the token",
            b"Bearer \xff\xfe".to_vec(),
            b"",
            Some("denied"),
        ),
        (
            "0xff after the token",
            [&admin[..], b"\xff"].concat(),
            b"",
            Some("denied"),
        ),
        (
            "0xff in If-Match",
            admin.clone(),
            b"If-Match: \"\xff1\"\r\n",
            Some("rejected"),
        ),
    ];
    for (what, auth, extra, audited) in cases {
        let b = before(&sy)?;
        let r = sy.send_raw(&raw_put(&sy, &auth, extra))?;
        assert!((400..500).contains(&r.status), "{what}: {}", r.describe());
        let s = sy.status()?;
        assert_eq!(s["version"].as_u64(), Some(b.version), "{what}");
        assert_eq!(sy.config_text()?, b.file, "{what}");
        if let Some(result) = audited {
            assert_untouched(&sy, &b, "config.put", result)?;
        }
    }
    // Still serving, and a clean request still works.
    let r = sy.send(
        Request::put("/v1/config", changed(&sy))
            .bearer(ADMIN)
            .if_match(1),
    )?;
    assert_eq!(r.status, 200, "{}", r.describe());
    Ok(())
}

#[test]
fn non_utf8_body_is_400() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let b = before(&sy)?;
    let mut body = changed(&sy).into_bytes();
    body.extend_from_slice(b"\n# \xff\xfe\xc0\x80 not UTF-8\n");
    let r = sy.send(Request::put("/v1/config", body).bearer(ADMIN))?;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_error_body(&r)?;
    assert_untouched(&sy, &b, "config.put", "rejected")?;
    Ok(())
}

#[test]
fn rollback_to_a_version_not_in_history_is_404() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    for version in ["0", "2", "18446744073709551615"] {
        let b = before(&sy)?;
        let body = format!("{{\"version\": {version}}}");
        let r = sy.send(Request::post("/v1/config/rollback", body).bearer(ADMIN))?;
        assert_eq!(r.status, 404, "{version}: {}", r.describe());
        assert_error_body(&r)?;
        assert_untouched(&sy, &b, "config.rollback", "rejected")?;
    }
    let r = sy.send(Request::get("/v1/config/history/5").bearer(VIEWER))?;
    assert_eq!(r.status, 404, "{}", r.describe());
    let r = sy.send(Request::get("/v1/config/history/abc").bearer(VIEWER))?;
    assert_eq!(r.status, 400, "{}", r.describe());
    Ok(())
}

#[test]
fn malformed_rollback_request_is_400() -> anyhow::Result<()> {
    let sy = Switchyard::start(|p| Conf::new(p).render())?;
    let bodies: [&[u8]; 6] = [
        b"",
        b"not json",
        b"{\"version\": \"1\"}",
        b"{\"version\": -1}",
        b"{\"version\": 1, \"extra\": true}",
        b"{\"version\": 1\xff}",
    ];
    for body in bodies {
        let b = before(&sy)?;
        let r = sy.send(Request::post("/v1/config/rollback", body).bearer(ADMIN))?;
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            r.describe()
        );
        assert_error_body(&r)?;
        assert_untouched(&sy, &b, "config.rollback", "rejected")?;
    }
    Ok(())
}
