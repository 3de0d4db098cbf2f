//! Hostile and broken requests on the HTTP listener, sent as raw bytes: a malformed request
//! line, headers over the listener's `max_header_bytes`, both `Content-Length` and
//! `Transfer-Encoding` (request smuggling), conflicting `Content-Length`s. Each gets a 4xx from
//! Switchyard and never reaches the backend; the listener keeps serving good requests.

mod support;

use anyhow::ensure;
use support::backend::Backend;
use support::http::{send_raw, Request};
use support::proxy::Proxy;

/// The listener's header limit in these tests (the default is 64 KiB).
const MAX_HEADER_BYTES: usize = 16 * 1024;

fn start(app: &Backend) -> anyhow::Result<Proxy> {
    let addr = app.addr();
    Proxy::start(|_, port| {
        Ok(format!(
            r#"
[[http.listeners]]
name = "public"
addr = "127.0.0.1:{port}"
max_header_bytes = {MAX_HEADER_BYTES}

[[http.routes]]
host = "*"
upstream = "api"

[http.upstreams.api.pools.blue]
backends = ["{addr}"]
"#
        ))
    })
}

/// A GET with `n` bytes of padding headers (1 KiB each).
fn padded(n: usize) -> Vec<u8> {
    let mut req = b"GET /padded HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n".to_vec();
    for i in 0..n / 1024 {
        req.extend_from_slice(format!("X-Pad-{i:04}: {}\r\n", "p".repeat(1010)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// Send `raw` to the listener: the answer must be `want` (a 4xx), and the backend must not
/// have seen anything.
fn refused(proxy: &Proxy, app: &Backend, what: &str, raw: &[u8], want: u16) -> anyhow::Result<()> {
    let before = app.total();
    let r = send_raw(proxy.http_addr(), raw)?;
    ensure!(
        r.status == want,
        "{what}: want {want}, got {}",
        r.describe()
    );
    ensure!(
        r.header("x-backend").is_none(),
        "{what}: answered by the backend"
    );
    ensure!(app.total() == before, "{what}: the backend saw the request");
    Ok(())
}

/// A good request still goes through (and so the backend is really there to see things).
fn still_serves(proxy: &Proxy, app: &Backend) -> anyhow::Result<()> {
    let before = app.total();
    let r = proxy.request(Request::get("/fine").host("api.test"))?;
    ensure!(
        r.status == 200 && r.header("x-backend") == Some("app"),
        "{}",
        r.describe()
    );
    ensure!(
        app.total() == before + 1,
        "the backend did not see the good request"
    );
    Ok(())
}

#[test]
fn malformed_request_lines_are_refused() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;
    still_serves(&proxy, &app)?;

    refused(
        &proxy,
        &app,
        "no method, path or version",
        b"GARBAGE\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "no version",
        b"GET /\r\nHost: api.test\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "unknown protocol",
        b"GET / HTTX/1.1\r\nHost: api.test\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "control byte in the method",
        b"G\x01T / HTTP/1.1\r\nHost: api.test\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "header line without a colon",
        b"GET / HTTP/1.1\r\nHost: api.test\r\nNoColon\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "two Host headers",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        400,
    )?;
    still_serves(&proxy, &app)
}

#[test]
fn oversized_headers_are_refused() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;

    // Under the limit: served.
    let r = send_raw(proxy.http_addr(), &padded(MAX_HEADER_BYTES / 2))?;
    ensure!(
        r.status == 200 && r.header("x-backend") == Some("app"),
        "{}",
        r.describe()
    );
    let served = app.total();

    refused(
        &proxy,
        &app,
        "32 KiB of headers",
        &padded(2 * MAX_HEADER_BYTES),
        431,
    )?;
    refused(&proxy, &app, "128 KiB of headers", &padded(128 * 1024), 431)?;
    let mut one_huge = b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Huge: ".to_vec();
    one_huge.extend(std::iter::repeat_n(b'h', 64 * 1024));
    one_huge.extend_from_slice(b"\r\n\r\n");
    refused(&proxy, &app, "one 64 KiB header", &one_huge, 431)?;
    ensure!(app.total() == served);
    still_serves(&proxy, &app)
}

#[test]
fn ambiguous_request_framing_is_refused() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;

    refused(
        &proxy,
        &app,
        "Content-Length and Transfer-Encoding",
        b"POST /pay HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "Transfer-Encoding and Content-Length (other order)",
        b"POST /pay HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "conflicting Content-Lengths",
        b"POST /pay HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "a Content-Length that is not a number",
        b"POST /pay HTTP/1.1\r\nHost: api.test\r\nContent-Length: five\r\n\r\nhello",
        400,
    )?;
    refused(
        &proxy,
        &app,
        "a Transfer-Encoding that does not end in chunked",
        b"POST /pay HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    )?;

    // A plain chunked POST is fine.
    let r = send_raw(
        proxy.http_addr(),
        b"POST /pay HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )?;
    ensure!(
        r.status == 200 && r.header("x-backend") == Some("app"),
        "{}",
        r.describe()
    );
    ensure!(
        app.count("POST") == 1,
        "backend saw {} POSTs",
        app.count("POST")
    );
    still_serves(&proxy, &app)
}
