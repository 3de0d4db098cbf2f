//! The hyper HTTP/1 engine (`http1 = "hyper"` on a listener), set explicitly so that CI
//! covers it whatever `SWITCHYARD_TEST_HTTP1` says: requests and bodies go through with the
//! forwarded headers, a keep-alive connection that idles leaves hyper and comes back, a dead backend is retried on the
//! next one and a failure status on another, bodies over the route's limit get 413, and the
//! smuggling vectors (both `Content-Length` and `Transfer-Encoding`, two `Content-Length`s,
//! a chunk extension ended by a bare LF) get 400 and never reach the backend. Every other
//! proxy test runs on this engine with `SWITCHYARD_TEST_HTTP1=hyper`.

mod support;

use anyhow::ensure;
use support::backend::Backend;
use support::conn::Conn;
use support::http::{send_raw, Request};
use support::proxy::Proxy;

/// Listener `public` on the hyper engine; route `/dead` to a backend that is not there,
/// `/small` to `api` with a 100-byte body limit, everything else to `api`, whose blue pool
/// has `backends` (a dead one first, when given).
fn start(backends: &[String]) -> anyhow::Result<Proxy> {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let list = list.join(", ");
    Proxy::start(|_, port| {
        Ok(format!(
            r#"
[[http.listeners]]
name = "public"
addr = "127.0.0.1:{port}"
http1 = "hyper"

[[http.routes]]
host = "*"
upstream = "api"
retries = 2

[[http.routes]]
host = "*"
path_prefix = "/small"
upstream = "api"
max_body_bytes = 100

[[http.routes]]
host = "*"
path_prefix = "/dead"
upstream = "dead"

[http.upstreams.api]
balance = "round_robin"
failure_statuses = [503]
max_fails = 100

[http.upstreams.api.pools.blue]
backends = [{list}]

[http.upstreams.dead.pools.blue]
backends = ["127.0.0.1:1"]
"#
        ))
    })
}

#[test]
fn requests_and_bodies_go_through_hyper_with_forwarded_headers() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&[app.addr_str()])?;
    let r = proxy.request(Request::get("/a").host("api.test"))?;
    ensure!(
        r.status == 200 && r.header("x-backend") == Some("app"),
        "{}",
        r.describe()
    );
    let seen = app.last_headers().unwrap_or_default();
    let xff = seen.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    ensure!(xff == Some("127.0.0.1"), "X-Forwarded-For: {xff:?}");
    ensure!(seen.contains_key("x-request-id"), "no request id: {seen:?}");
    let host = seen.get("x-forwarded-host").and_then(|v| v.to_str().ok());
    ensure!(host == Some("api.test"), "X-Forwarded-Host: {host:?}");

    let r = proxy.request(Request::post("/b", vec![b'x'; 200_000]).host("api.test"))?;
    ensure!(r.status == 200, "a 200 kB POST: {}", r.describe());
    ensure!(app.count("POST") == 1);

    // Keep-alive on the client side: requests on one connection, each answered, also after
    // an idle wait long enough for the connection to leave hyper (and its buffers) between
    // them, and with the next head arriving in two writes across such a wait.
    let mut conn = Conn::open(proxy.http_addr())?;
    for pause in [0, 300, 0, 300] {
        std::thread::sleep(std::time::Duration::from_millis(pause));
        conn.send(b"GET /k HTTP/1.1\r\nHost: api.test\r\n\r\n")?;
        let r = conn.response()?;
        ensure!(r.status == 200, "after {pause} ms idle: {}", r.describe());
    }
    conn.send(b"GET /k HTTP/1.1\r\nHo")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    conn.send(b"st: api.test\r\n\r\n")?;
    let r = conn.response()?;
    ensure!(r.status == 200, "a head split by a pause: {}", r.describe());

    // pingora's own error responses say `Server: Pingora`; this one comes from hyper's path.
    let r = proxy.request(Request::get("/dead").host("api.test"))?;
    ensure!(r.status == 502, "{}", r.describe());
    ensure!(
        r.header("server").is_none(),
        "not served by the hyper engine: {}",
        r.describe()
    );
    Ok(())
}

#[test]
fn a_dead_backend_and_a_failure_status_are_retried_on_another() -> anyhow::Result<()> {
    let (good, bad) = (Backend::start("good")?, Backend::start("bad")?);
    bad.set_status(503);
    let proxy = start(&["127.0.0.1:1".to_string(), good.addr_str(), bad.addr_str()])?;
    for i in 0..6 {
        let r = proxy.get(&format!("/r{i}"))?;
        ensure!(
            r.status == 200 && r.header("x-backend") == Some("good"),
            "request {i}: {}",
            r.describe()
        );
    }
    ensure!(good.total() == 6, "good saw {}", good.total());
    Ok(())
}

#[test]
fn bodies_over_the_limit_get_413() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&[app.addr_str()])?;
    let r = proxy.request(Request::post("/small", vec![b'x'; 101]).host("api.test"))?;
    ensure!(r.status == 413, "Content-Length over: {}", r.describe());
    let chunk = "x".repeat(80);
    let raw = format!(
        "POST /small HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n{chunk}\r\n50\r\n{chunk}\r\n0\r\n\r\n"
    );
    let r = send_raw(proxy.http_addr(), raw.as_bytes())?;
    ensure!(r.status == 413, "chunked over: {}", r.describe());
    let r = proxy.request(Request::post("/small", vec![b'x'; 100]).host("api.test"))?;
    ensure!(r.status == 200, "at the limit: {}", r.describe());
    ensure!(
        app.count("POST") == 1,
        "backend saw {} POSTs",
        app.count("POST")
    );
    Ok(())
}

#[test]
fn smuggling_vectors_get_400_and_never_reach_the_backend() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&[app.addr_str()])?;
    let vectors: [(&str, &[u8]); 4] = [
        (
            "Content-Length then Transfer-Encoding",
            b"POST /p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding then Content-Length",
            b"POST /p HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
        ),
        (
            "two identical Content-Length",
            b"POST /p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "a chunk extension ended by a bare LF",
            b"POST /p HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n0\r\n\r\n",
        ),
    ];
    for (what, raw) in vectors {
        let r = send_raw(proxy.http_addr(), raw)?;
        ensure!(r.status == 400, "{what}: {}", r.describe());
    }
    ensure!(app.total() == 0, "the backend saw {} requests", app.total());
    // A multipart-like body whose text holds a Content-Length line is not a second field.
    let body = "--b\r\nContent-Length: 3\r\n\r\nabc\r\n--b--\r\n";
    let raw = format!(
        "POST /p HTTP/1.1\r\nHost: api.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = send_raw(proxy.http_addr(), raw.as_bytes())?;
    ensure!(r.status == 200, "multipart body: {}", r.describe());
    Ok(())
}

/// A backend that switches every connection's protocol (101) and then echoes what it reads.
fn echo_upgrader() -> anyhow::Result<std::net::SocketAddr> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let lower = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !lower.contains("\r\nupgrade: websocket") {
                    let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                );
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[test]
fn an_upgrade_is_relayed_both_ways() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let backend = echo_upgrader()?;
    let proxy = start(&[backend.to_string()])?;
    let mut s = std::net::TcpStream::connect(proxy.http_addr())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        ensure!(s.read(&mut byte)? == 1, "closed in the head: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    ensure!(head.starts_with("http/1.1 101"), "{head}");
    ensure!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"ping"[..], b"a second frame"] {
        s.write_all(msg)?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back)?;
        ensure!(back == msg, "echoed {back:?}");
    }
    Ok(())
}
