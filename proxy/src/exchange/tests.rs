//! The request path's policy without a server: admission answers, body counting, picks,
//! forwarded headers, verdicts within `retries` and the retry budget, and the in-flight
//! release at the end. The runtime is built from a config by [`HttpPlane::build`], with
//! backends that are never connected to.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Method, Request, Version};

use super::*;
use crate::runtime::HttpRuntime;
use crate::HttpPlane;

const CONFIG: &str = r#"
    [[http.listeners]]
    name = "web"
    addr = "127.0.0.1:0"
    health_path = "/healthz"
    max_header_bytes = 1024

    [[http.routes]]
    host = "api.example.com"
    upstream = "api"
    retries = 2
    max_body_bytes = 10
    gzip = true

    [http.upstreams.api]
    retry_budget = 0.0
    failure_statuses = [503]

    [http.upstreams.api.pools.blue]
    backends = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"]
"#;

fn runtime() -> Arc<HttpRuntime> {
    let config = switchyard_config::parse(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let plane = HttpPlane::new();
    let rt = plane
        .build(&Arc::new(config))
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(rt)
}

fn head(method: Method, version: Version, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder()
        .method(method)
        .uri("/v1/jobs")
        .version(version);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).expect("request head").into_parts().0
}

fn get(headers: &[(&str, &str)]) -> Parts {
    head(Method::GET, Version::HTTP_11, headers)
}

/// An admitted request of `rt`, as a front end holds it.
fn admitted(rt: &Arc<HttpRuntime>, h: &Parts) -> Exchange {
    let mut ex = Exchange::new(Instant::now());
    let a = admit(rt, "web", h, false).unwrap_or_else(|r| panic!("refused: {r:?}"));
    ex.rt = Some(rt.clone());
    ex.route = Some(a.route);
    ex
}

const SAFE: Replay = Replay {
    idempotent: true,
    body_truncated: false,
    response_sent: false,
};

#[test]
fn admit_answers_in_order() {
    let rt = runtime();
    let status = |h: Parts, cl: bool| admit(&rt, "web", &h, cl).map_err(|r| (r.status, r.close));
    let api = ("host", "api.example.com");
    assert_eq!(
        status(get(&[api, ("transfer-encoding", "chunked")]), true),
        Err((400, true))
    );
    assert_eq!(status(get(&[]), false), Err((400, true)));
    let mut health = get(&[api]);
    health.uri = "/healthz".parse().expect("uri");
    assert_eq!(status(health, false), Err((200, false)));
    let big = "x".repeat(1024);
    assert_eq!(
        status(get(&[api, ("x-big", &big)]), false),
        Err((431, true))
    );
    assert_eq!(
        status(get(&[("host", "other.org")]), false),
        Err((404, false))
    );
    assert_eq!(
        status(get(&[api, ("content-length", "11")]), true),
        Err((413, true))
    );
    let ok = admit(&rt, "web", &get(&[api, ("accept-encoding", "gzip")]), false);
    assert_eq!(
        ok,
        Ok(Admitted {
            route: 0,
            gzip: true
        })
    );
    let no_gzip = admit(
        &rt,
        "web",
        &get(&[api, ("accept-encoding", "gzip;q=0")]),
        false,
    );
    assert_eq!(no_gzip.map(|a| a.gzip), Ok(false));
}

#[test]
fn bodies_are_counted_against_the_route_limit() {
    let rt = runtime();
    let mut ex = admitted(&rt, &get(&[("host", "api.example.com")]));
    assert!(count_body(&mut ex, 6));
    assert!(count_body(&mut ex, 4));
    assert!(!count_body(&mut ex, 1));
    // Before admission there is no limit to apply.
    assert!(count_body(&mut Exchange::new(Instant::now()), 1 << 20));
}

#[test]
fn picks_skip_tried_backends_and_hold_an_in_flight_count() {
    let rt = runtime();
    let mut ex = admitted(&rt, &get(&[("host", "api.example.com")]));
    let a = pick(&mut ex, Instant::now()).expect("a backend");
    let b = pick(&mut ex, Instant::now()).expect("another backend");
    assert_ne!(a.socket, b.socket);
    let state = |t: &Target| {
        rt.upstreams["api"].pools[0]
            .backends
            .iter()
            .find(|e| e.socket == t.socket)
            .map(|e| e.state.in_flight())
    };
    // The second attempt replaced the first: only it holds a count.
    assert_eq!((state(&a), state(&b)), (Some(0), Some(1)));
    let h = get(&[("host", "api.example.com")]);
    let summary = Summary {
        listener: "web",
        head: &h,
        client: None,
        status: 200,
        bytes_sent: 0,
    };
    finish(&mut ex, &summary);
    assert_eq!(state(&b), Some(0));
    assert_eq!(
        pick(&mut Exchange::new(Instant::now()), Instant::now()),
        Err(NoTarget::NotAdmitted("no runtime"))
    );
}

#[test]
fn connect_failures_retry_within_the_route_retries() {
    let rt = runtime();
    let mut ex = admitted(&rt, &get(&[("host", "api.example.com")]));
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        pick(&mut ex, Instant::now()).expect("a backend");
        verdicts.push(judge(&mut ex, Outcome::ConnectFailed, SAFE));
    }
    // `retries = 2`: three attempts in all.
    assert_eq!(verdicts, [Verdict::Retry, Verdict::Retry, Verdict::Fail]);
    assert_eq!(ex.retries, ["connect", "connect"]);
}

#[test]
fn failure_statuses_retry_within_the_budget() {
    let rt = runtime();
    // `retry_budget = 0.0`: only the budget's floor of 3 retries per ten seconds is left.
    let mut verdicts = Vec::new();
    for _ in 0..4 {
        let mut ex = admitted(&rt, &get(&[("host", "api.example.com")]));
        pick(&mut ex, Instant::now()).expect("a backend");
        verdicts.push(judge(&mut ex, Outcome::Status(503), SAFE));
    }
    assert_eq!(
        verdicts,
        [
            Verdict::Retry,
            Verdict::Retry,
            Verdict::Retry,
            Verdict::Done
        ]
    );
    // The error that carries a granted status retry is a retry, whatever the budget says.
    let mut ex = admitted(&rt, &get(&[("host", "api.example.com")]));
    ex.retry_status = true;
    let err = Outcome::Failed {
        downstream: false,
        reused: false,
    };
    assert_eq!(judge(&mut ex, err, SAFE), Verdict::Retry);
    // A status that is not a failure is passed on, and counts as a success.
    pick(&mut ex, Instant::now()).expect("a backend");
    assert_eq!(judge(&mut ex, Outcome::Status(200), SAFE), Verdict::Done);
}

#[test]
fn errors_retry_only_what_can_be_sent_again() {
    let rt = runtime();
    let err = Outcome::Failed {
        downstream: false,
        reused: true,
    };
    let post = head(
        Method::POST,
        Version::HTTP_11,
        &[("host", "api.example.com")],
    );
    let mut ex = admitted(&rt, &post);
    pick(&mut ex, Instant::now()).expect("a backend");
    let not_idempotent = Replay {
        idempotent: false,
        ..SAFE
    };
    assert_eq!(judge(&mut ex, err, not_idempotent), Verdict::Fail);
    // Idempotent but no longer whole: only pingora's stale-connection rule may retry it.
    let mut ex = admitted(&rt, &get(&[("host", "api.example.com")]));
    pick(&mut ex, Instant::now()).expect("a backend");
    let truncated = Replay {
        body_truncated: true,
        ..SAFE
    };
    assert_eq!(
        judge(&mut ex, err, truncated),
        Verdict::RetryIfStale { reused: true }
    );
    assert_eq!(ex.retries, ["stale_connection"]);
}

#[test]
fn forwarded_headers() {
    let rt = runtime();
    let client: IpAddr = "192.0.2.7".parse().expect("ip");
    let h = get(&[("host", "api.example.com"), ("x-forwarded-for", "10.0.0.1")]);
    let ex = admitted(&rt, &h);
    let fwd = rewrite_request(&ex, &h, &h.headers, Some(client), "https").expect("forwarding");
    let (xff, real_ip) = fwd.client.expect("client headers");
    assert_eq!(xff, "10.0.0.1, 192.0.2.7");
    assert_eq!(real_ip, "192.0.2.7");
    assert_eq!(fwd.proto, "https");
    assert_eq!(
        fwd.host,
        UpstreamHost::Forwarded(HeaderValue::from_static("api.example.com"))
    );
    // An HTTP/1.0 request without Host takes the route's host upstream.
    let old = head(Method::GET, Version::HTTP_10, &[]);
    let mut ex = admitted(&rt, &h);
    ex.tried.push("127.0.0.1:1".into());
    let fwd = rewrite_request(&ex, &old, &old.headers, None, "http").expect("forwarding");
    assert_eq!(fwd.client, None);
    assert_eq!(
        fwd.host,
        UpstreamHost::Host(HeaderValue::from_static("api.example.com"))
    );
}
