//! TLS listeners, end to end: certificates made at test time, one chosen per handshake by
//! SNI; HTTP/2 negotiated by ALPN and proxied to an HTTP/1.1 backend; a certificate replaced
//! on disk and reloaded (SIGHUP) is what new handshakes get, with no restart, while an
//! established connection keeps working.

mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::ensure;
use support::backend::Backend;
use support::eventually;
use support::proxy::Proxy;
use support::tls::{SelfSigned, Tls};

/// Plain HTTP/1.1 over TLS only.
const H1: &[&str] = &["http/1.1"];
/// HTTP/2 preferred, as browsers offer.
const H2_FIRST: &[&str] = &["h2", "http/1.1"];

/// A TLS listener with the certificates `a.crt`/`a.key` and `b.crt`/`b.key` (written into
/// the config directory from `a` and `b`), routing everything to `backend`.
fn tls_config(
    dir: &Path,
    port: u16,
    a: &SelfSigned,
    b: &SelfSigned,
    backend: &Backend,
) -> anyhow::Result<String> {
    a.write(dir, "a")?;
    b.write(dir, "b")?;
    Ok(format!(
        r#"
[[http.listeners]]
name = "secure"
addr = "127.0.0.1:{port}"
tls = [{{ cert = "a.crt", key = "a.key" }}, {{ cert = "b.crt", key = "b.key" }}]

[[http.routes]]
host = "*"
upstream = "api"

[http.upstreams.api.pools.blue]
backends = ["{addr}"]
"#,
        addr = backend.addr()
    ))
}

/// Start Switchyard with [`tls_config`], ready once a TLS `/health` answers.
fn start(a: &SelfSigned, b: &SelfSigned, backend: &Backend) -> anyhow::Result<Proxy> {
    Proxy::start_checked(
        |dir, port| tls_config(dir, port, a, b, backend),
        |proxy| {
            let r = Tls::connect(proxy.http_addr(), "a.test", H1)?.h1_get("a.test", "/health")?;
            ensure!(r.status == 200, "{}", r.describe());
            Ok(())
        },
    )
}

#[test]
fn sni_chooses_the_certificate() -> anyhow::Result<()> {
    let (a, b) = (SelfSigned::new(&["a.test"])?, SelfSigned::new(&["b.test"])?);
    let app = Backend::start("app")?;
    let proxy = start(&a, &b, &app)?;
    let addr = proxy.http_addr();

    ensure!(
        Tls::connect(addr, "a.test", H1)?.peer_cert()? == a.der,
        "a.test: not a's certificate"
    );
    ensure!(
        Tls::connect(addr, "b.test", H1)?.peer_cert()? == b.der,
        "b.test: not b's certificate"
    );
    // A name no certificate has gets the listener's first one.
    ensure!(
        Tls::connect(addr, "c.test", H1)?.peer_cert()? == a.der,
        "c.test: not the first certificate"
    );

    // Requests over TLS reach the backend, which is told the client used https.
    let r = Tls::connect(addr, "b.test", H1)?.h1_get("b.test", "/profile")?;
    ensure!(
        r.status == 200 && r.header("x-backend") == Some("app"),
        "{}",
        r.describe()
    );
    let seen = app
        .last_headers()
        .ok_or_else(|| anyhow::anyhow!("backend saw nothing"))?;
    ensure!(
        seen.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https"),
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn http2_over_tls_reaches_the_backend() -> anyhow::Result<()> {
    let (a, b) = (SelfSigned::new(&["a.test"])?, SelfSigned::new(&["b.test"])?);
    let app = Backend::start("app")?;
    let proxy = start(&a, &b, &app)?;

    let tls = Tls::connect(proxy.http_addr(), "a.test", H2_FIRST)?;
    ensure!(
        tls.alpn().as_deref() == Some("h2"),
        "ALPN chose {:?}",
        tls.alpn()
    );
    let mut h2 = tls.h2()?;
    // Two requests on one connection, both answered by the (HTTP/1.1) backend.
    for path in ["/one", "/two"] {
        let (status, headers, body) = h2.get("a.test", path)?;
        ensure!(
            status == 200 && headers.get("x-backend").is_some_and(|v| v == "app"),
            "{path}: {status} {headers:?}"
        );
        ensure!(body.as_ref() == b"app\n", "{path}: body {body:?}");
    }
    ensure!(
        app.count("GET") == 2,
        "backend saw {} GETs",
        app.count("GET")
    );
    Ok(())
}

#[test]
fn a_replaced_certificate_is_served_after_a_reload() -> anyhow::Result<()> {
    let (a, b) = (SelfSigned::new(&["a.test"])?, SelfSigned::new(&["b.test"])?);
    let app = Backend::start("app")?;
    let proxy = start(&a, &b, &app)?;
    let addr = proxy.http_addr();
    let pid = proxy.pid()?;

    let tls = Tls::connect(addr, "a.test", H2_FIRST)?;
    ensure!(tls.peer_cert()? == a.der);
    let mut established = tls.h2()?;

    // Renew a.test in place (same paths, new key and certificate), then reload.
    let renewed = SelfSigned::new(&["a.test"])?;
    renewed.write(&proxy.conf_dir(), "a")?;
    proxy.signal("HUP")?;
    eventually(Duration::from_secs(5), || {
        let got = Tls::connect(addr, "a.test", H1)?.peer_cert()?;
        ensure!(got == renewed.der, "a.test still gets the old certificate");
        Ok(())
    })?;
    ensure!(
        Tls::connect(addr, "b.test", H1)?.peer_cert()? == b.der,
        "b.test changed"
    );
    ensure!(proxy.pid()? == pid, "the process was restarted");

    // The connection made before the reload still works.
    let (status, _, _) = established.get("a.test", "/after-reload")?;
    ensure!(
        status == 200,
        "established connection after the reload: {status}"
    );
    Ok(())
}
