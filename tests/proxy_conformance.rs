//! RFC 9110/9112 behaviour of the HTTP listener, on raw sockets against the real binary and a
//! backend that records request heads as received: pipelined requests answered in order and
//! each sent upstream once, hop-by-hop response fields removed, ambiguous framing refused
//! (duplicate `Content-Length`, HTTP/1.1 without `Host`), an HTTP/1.0 request without `Host`
//! given one, repeated `X-Forwarded-For` fields joined, and gzip only where the client's
//! q-values accept it and the body is long enough.

mod support;

use std::time::Duration;

use anyhow::ensure;
use support::conn::{ok, Conn, RawBackend};
use support::http::send_raw;
use support::proxy::{one_upstream, Proxy};

/// A backend that answers each request with its path as the body; `/slow...` after 300 ms,
/// `/hop` with hop-by-hop fields, `/big` and `/small` with text bodies of 4000 and 20 bytes.
fn backend() -> anyhow::Result<RawBackend> {
    RawBackend::start(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        if path.starts_with("/slow") {
            std::thread::sleep(Duration::from_millis(300));
        }
        if path == "/hop" {
            return ok(
                "Connection: X-Foo\r\nX-Foo: bar\r\nKeep-Alive: timeout=5, max=100\r\nX-Kept: yes\r\n",
                b"hop",
            );
        }
        if path.ends_with("/big") {
            return ok("Content-Type: text/plain\r\n", "a".repeat(4000).as_bytes());
        }
        if path.ends_with("/small") {
            return ok("Content-Type: text/plain\r\n", b"twenty bytes of text");
        }
        ok("", path.as_bytes())
    })
}

fn start(app: &RawBackend) -> anyhow::Result<Proxy> {
    let routes = r#"
[[http.routes]]
host = "*"
upstream = "api"
gzip = true

[[http.routes]]
host = "*"
path_prefix = "/tiny"
upstream = "api"
gzip = true
gzip_min_length = 10
"#;
    Proxy::start(|_, port| Ok(one_upstream(port, app.addr(), "", routes)))
}

/// Read one response per path in `want`, in order, each 200 with the path as its body.
fn in_order(conn: &mut Conn, want: &[&str]) -> anyhow::Result<()> {
    for want in want {
        let r = conn.response()?;
        ensure!(
            r.status == 200 && r.text() == *want,
            "want {want}: {}",
            r.describe()
        );
    }
    Ok(())
}

/// Heads the backend received for paths starting with `prefix`.
fn heads(app: &RawBackend, prefix: &str) -> Vec<String> {
    let needle = format!(" {prefix}");
    app.heads()
        .into_iter()
        .filter(|h| h.lines().next().is_some_and(|l| l.contains(&needle)))
        .collect()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n").into_bytes()
}

#[test]
fn pipelined_requests_are_answered_in_order_and_sent_once() -> anyhow::Result<()> {
    let app = backend()?;
    let proxy = start(&app)?;

    // Three GETs in one write.
    let mut conn = Conn::open(proxy.http_addr())?;
    conn.send(&[get("/p1"), get("/p2"), get("/p3")].concat())?;
    in_order(&mut conn, &["/p1", "/p2", "/p3"])?;

    // A GET sent while the one before is in flight at the backend.
    let mut conn = Conn::open(proxy.http_addr())?;
    conn.send(&get("/slow1"))?;
    std::thread::sleep(Duration::from_millis(100));
    conn.send(&get("/slow2"))?;
    in_order(&mut conn, &["/slow1", "/slow2"])?;

    // A request right after a body of exact Content-Length, in the same write.
    let mut conn = Conn::open(proxy.http_addr())?;
    conn.send(b"POST /post HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: api.test\r\n\r\n")?;
    in_order(&mut conn, &["/post", "/after"])?;

    for p in ["/p1", "/p2", "/p3", "/slow1", "/slow2", "/post", "/after"] {
        let n = heads(&app, &format!("{p} ")).len();
        ensure!(n == 1, "{p} reached the backend {n} times");
    }
    Ok(())
}

#[test]
fn hop_by_hop_response_fields_do_not_reach_the_client() -> anyhow::Result<()> {
    let app = backend()?;
    let proxy = start(&app)?;
    let mut conn = Conn::open(proxy.http_addr())?;
    conn.send(&get("/hop"))?;
    let r = conn.response()?;
    ensure!(r.status == 200, "{}", r.describe());
    ensure!(
        r.header("x-foo").is_none(),
        "X-Foo named in Connection reached the client: {:?}",
        r.headers
    );
    ensure!(
        r.header("keep-alive").is_none(),
        "Keep-Alive reached the client: {:?}",
        r.headers
    );
    ensure!(
        r.header("x-kept") == Some("yes"),
        "an end-to-end field was lost: {:?}",
        r.headers
    );
    ensure!(
        r.header("connection")
            .is_none_or(|c| !c.to_ascii_lowercase().contains("x-foo")),
        "the backend's Connection reached the client: {:?}",
        r.headers
    );
    Ok(())
}

#[test]
fn ambiguous_framing_is_refused_and_http10_gets_a_host() -> anyhow::Result<()> {
    let app = backend()?;
    let proxy = start(&app)?;
    let refused = |what: &str, raw: &[u8]| -> anyhow::Result<()> {
        let before = app.heads().len();
        let r = send_raw(proxy.http_addr(), raw)?;
        ensure!(r.status == 400, "{what}: want 400, got {}", r.describe());
        ensure!(app.heads().len() == before, "{what}: reached the backend");
        Ok(())
    };
    refused(
        "two identical Content-Length",
        b"POST /cl HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )?;
    refused("HTTP/1.1 without Host", b"GET /nohost HTTP/1.1\r\n\r\n")?;
    refused(
        "two Host headers",
        b"GET /twohosts HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    )?;

    // HTTP/1.0 without Host: forwarded (as HTTP/1.1) with the backend's address as Host.
    let r = send_raw(proxy.http_addr(), b"GET /old HTTP/1.0\r\n\r\n")?;
    ensure!(r.status == 200 && r.text() == "/old", "{}", r.describe());
    let head = heads(&app, "/old ")
        .pop()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let want = format!("\r\nhost: {}\r\n", app.addr());
    ensure!(
        head.contains(&want),
        "no Host {} upstream: {head:?}",
        app.addr()
    );
    Ok(())
}

#[test]
fn repeated_x_forwarded_for_fields_are_joined_then_the_client_added() -> anyhow::Result<()> {
    let app = backend()?;
    let proxy = start(&app)?;
    let r = send_raw(
        proxy.http_addr(),
        b"GET /xff HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\nConnection: close\r\n\r\n",
    )?;
    ensure!(r.status == 200, "{}", r.describe());
    let head = heads(&app, "/xff ")
        .pop()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let xff: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("x-forwarded-for:"))
        .map(str::trim)
        .collect();
    ensure!(
        xff == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"],
        "X-Forwarded-For upstream: {xff:?}"
    );
    Ok(())
}

#[test]
fn gzip_follows_q_values_and_the_minimum_length() -> anyhow::Result<()> {
    let app = backend()?;
    let proxy = start(&app)?;
    let fetch = |path: &str, ae: &str| -> anyhow::Result<support::Response> {
        let mut conn = Conn::open(proxy.http_addr())?;
        conn.send(
            format!("GET {path} HTTP/1.1\r\nHost: api.test\r\nAccept-Encoding: {ae}\r\n\r\n")
                .as_bytes(),
        )?;
        let r = conn.response()?;
        ensure!(r.status == 200, "{path} ({ae}): {}", r.describe());
        Ok(r)
    };
    let gzipped = |r: &support::Response| r.header("content-encoding") == Some("gzip");

    let r = fetch("/big", "gzip")?;
    ensure!(
        gzipped(&r) && r.body.len() < 4000,
        "a 4000-byte text is not gzipped: {:?}",
        r.headers
    );
    let r = fetch("/big", "gzip;q=0")?;
    ensure!(
        !gzipped(&r) && r.body.len() == 4000,
        "gzip;q=0 got gzip: {:?}",
        r.headers
    );
    let r = fetch("/big", "br;q=1, gzip;q=0, identity")?;
    ensure!(!gzipped(&r), "gzip;q=0 in a list got gzip: {:?}", r.headers);
    let r = fetch("/small", "gzip")?;
    ensure!(
        !gzipped(&r) && r.body == b"twenty bytes of text",
        "a 20-byte body under the default 1 KB minimum was gzipped: {:?}",
        r.headers
    );
    // The route under /tiny sets gzip_min_length = 10.
    let r = fetch("/tiny/small", "gzip")?;
    ensure!(
        gzipped(&r),
        "a 20-byte body over the route's 10-byte minimum: {:?}",
        r.headers
    );
    Ok(())
}
