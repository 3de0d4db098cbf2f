//! Slow and idle clients on the HTTP listener, on raw sockets against the real binary: the
//! whole request head has a deadline (a client dribbling one byte at a time is cut off), so
//! has a connection that never sends anything, a keep-alive connection is closed after
//! `keepalive_timeout` idle (and still serves requests before), a stalled request body gets
//! 408, and connections over `max_connections` are refused while the open ones keep being
//! served. Every timeout and refusal shows in `/metrics`.
//!
//! The listener's timeouts are set short (about a second) so the tests stay fast; each check
//! waits on the close with a deadline well above the timeout and well below pingora's own 60 s.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use support::backend::Backend;
use support::conn::Conn;
use support::proxy::{one_upstream, Proxy};
use support::{eventually, metric};

/// The listener's `header_timeout` and `keepalive_timeout` in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long a test waits for a close that should come after a timeout above.
const CLOSE_WAIT: Duration = Duration::from_secs(8);

fn start(app: &Backend) -> anyhow::Result<Proxy> {
    let listener = format!(
        "header_timeout = \"{}ms\"\nkeepalive_timeout = \"{}ms\"\nbody_timeout = \"1s\"",
        HEADER_TIMEOUT.as_millis(),
        KEEPALIVE_TIMEOUT.as_millis(),
    );
    Proxy::start(|_, port| Ok(one_upstream(port, app.addr(), &listener, "")))
}

/// `switchyard_http_client_timeouts_total{listener="public",phase}`.
fn timeouts(proxy: &Proxy, phase: &str) -> anyhow::Result<f64> {
    let text = proxy.metrics()?;
    let phase = format!("phase=\"{phase}\"");
    Ok(metric(
        &text,
        "switchyard_http_client_timeouts_total",
        &["listener=\"public\"", &phase],
    )
    .unwrap_or(0.0))
}

/// Wait until at least one timeout of `phase` has been counted.
fn counted(proxy: &Proxy, phase: &str) -> anyhow::Result<()> {
    eventually(Duration::from_secs(5), || {
        ensure!(
            timeouts(proxy, phase)? >= 1.0,
            "{phase} timeout not counted"
        );
        Ok(())
    })
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n";

#[test]
fn a_slow_request_head_is_cut_off_at_the_header_timeout() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;
    let mut conn = Conn::open(proxy.http_addr())?;
    let start = Instant::now();
    // One byte every 100 ms: each read is quick, the head never completes.
    let head = b"GET /slow HTTP/1.1\r\nHost: api.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in head.iter() {
        if conn.send(&[*b]).is_err() || start.elapsed() > CLOSE_WAIT {
            closed = true;
            break;
        }
        if conn.closed_within(Duration::from_millis(100))?.is_some() {
            closed = true;
            break;
        }
    }
    let took = start.elapsed();
    ensure!(closed, "still connected after {took:?} of a dribbled head");
    ensure!(
        took >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {took:?}, before the header timeout"
    );
    ensure!(app.total() == 0, "the backend saw the incomplete request");
    counted(&proxy, "header")
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;
    let mut conn = Conn::open(proxy.http_addr())?;
    let took = conn.closed_within(CLOSE_WAIT)?;
    ensure!(
        took.is_some(),
        "a silent connection is still open after {CLOSE_WAIT:?}"
    );
    counted(&proxy, "header")
}

#[test]
fn an_idle_keepalive_connection_is_closed_at_the_keepalive_timeout() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;
    let mut conn = Conn::open(proxy.http_addr())?;
    // Requests spaced by less than the timeouts: the connection stays and serves them all.
    for _ in 0..3 {
        conn.send(GET)?;
        let r = conn.response()?;
        ensure!(r.status == 200, "{}", r.describe());
        ensure!(
            conn.closed_within(Duration::from_millis(300))?.is_none(),
            "closed while idle for less than the keep-alive timeout"
        );
    }
    let took = conn.closed_within(CLOSE_WAIT)?;
    let Some(took) = took else {
        anyhow::bail!("idle keep-alive connection still open after {CLOSE_WAIT:?}");
    };
    ensure!(
        took + Duration::from_millis(400) >= KEEPALIVE_TIMEOUT,
        "closed {took:?} after the last request, before the keep-alive timeout"
    );
    counted(&proxy, "keepalive")
}

#[test]
fn a_stalled_request_body_gets_408() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    let proxy = start(&app)?;
    let mut conn = Conn::open(proxy.http_addr())?;
    conn.send(b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100\r\n\r\n0123456789")?;
    let r = conn.response()?;
    ensure!(r.status == 408, "stalled body: {}", r.describe());
    counted(&proxy, "body")
}

#[test]
fn connections_over_the_cap_are_refused_and_open_ones_are_kept() -> anyhow::Result<()> {
    let app = Backend::start("app")?;
    // Timeouts long enough that the open connections stay for the whole test.
    let listener = "max_connections = 3\nkeepalive_timeout = \"60s\"";
    let proxy = Proxy::start(|_, port| Ok(one_upstream(port, app.addr(), listener, "")))?;
    let refused = || -> anyhow::Result<f64> {
        let text = proxy.metrics()?;
        Ok(metric(
            &text,
            "switchyard_http_connections_refused_total",
            &["listener=\"public\""],
        )
        .unwrap_or(0.0))
    };
    // The start-up health check's connection may still be closing: wait until 3 fit.
    let mut open = Vec::new();
    eventually(Duration::from_secs(5), || {
        while open.len() < 3 {
            let mut c = Conn::open(proxy.http_addr())?;
            c.send(GET)?;
            let r = c.response()?;
            ensure!(r.status == 200, "{}", r.describe());
            open.push(c);
        }
        Ok(())
    })?;
    let before = refused()?;
    let mut extra = Conn::open(proxy.http_addr())?;
    let _ = extra.send(GET);
    ensure!(
        extra.closed_within(Duration::from_secs(5))?.is_some(),
        "a fourth connection was served over max_connections = 3"
    );
    ensure!(
        extra.leftover().is_empty(),
        "the refused connection got an answer"
    );
    ensure!(refused()? > before, "the refusal was not counted");
    // The open connections were never dropped.
    for c in &mut open {
        c.send(GET)?;
        let r = c.response()?;
        ensure!(r.status == 200, "an open connection: {}", r.describe());
    }
    // A slot freed is a slot for the next client.
    drop(open.pop());
    eventually(Duration::from_secs(5), || {
        let mut c = Conn::open(proxy.http_addr())?;
        c.send(GET)?;
        let r = c.response()?;
        ensure!(r.status == 200, "{}", r.describe());
        Ok(())
    })
}
