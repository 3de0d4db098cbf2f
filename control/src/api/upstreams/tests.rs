//! The upstream operation routes over a real socket: roles, refusals in the audit log,
//! percent-encoded backend addresses, status codes, flip status and conflicts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::applier::testing::{audit_lines, start, BLUE_GREEN};
use crate::plane::{PoolCounts, TrafficStats};

const OPERATOR: &str = "operator-token";
const VIEWER: &str = "viewer-token";

/// Green always has served nothing: flips stay `verifying` for their window.
struct Idle;

impl TrafficStats for Idle {
    fn pool_counts(&self, _: &str, _: &str) -> Option<PoolCounts> {
        Some(PoolCounts::default())
    }
}

struct Api {
    addr: SocketAddr,
    dir: TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve() -> Api {
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let text = format!(
        "{BLUE_GREEN}\n[[control.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n\n[[control.tokens]]\nname = \"watcher\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        hash(OPERATOR),
        hash(VIEWER)
    );
    let (dir, applier) = start(&text);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let state = Arc::new(ApiState::new(applier, None, addr, Some(Arc::new(Idle))));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(super::super::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Api {
        addr,
        dir,
        _stop: stop,
    }
}

/// One request; the status and the JSON body.
async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut tcp = tokio::net::TcpStream::connect(api.addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = String::new();
    let read = tcp.read_to_string(&mut raw);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path}"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn weights_need_an_operator_and_refusals_are_audited() {
    let api = serve().await;
    let body = r#"{"blue": 90, "green": 10}"#;
    let (status, _) = call(&api, "POST", "/v1/upstreams/api/weights", VIEWER, body).await;
    assert_eq!(status, 403);
    let (status, _) = call(&api, "POST", "/v1/upstreams/api/weights", "wrong", body).await;
    assert_eq!(status, 401);
    let denied: Vec<_> = audit_lines(&api.dir)
        .into_iter()
        .filter(|l| l["result"] == "denied")
        .collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["action"], "upstream.weights");
    assert_eq!(denied[0]["actor"], "watcher");

    let (status, v) = call(&api, "POST", "/v1/upstreams/api/weights", OPERATOR, body).await;
    assert_eq!(
        (status, &v["result"], &v["version"]),
        (200, &"applied".into(), &2.into())
    );
    let (status, v) = call(&api, "POST", "/v1/upstreams/web/weights", OPERATOR, body).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = call(
        &api,
        "POST",
        "/v1/upstreams/api/weights",
        OPERATOR,
        r#"{"red": 1}"#,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = call(
        &api,
        "POST",
        "/v1/upstreams/api/weights",
        OPERATOR,
        r#"{"blue": -1}"#,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = call(
        &api,
        "POST",
        "/v1/upstreams/api/weights",
        OPERATOR,
        r#"{"blue": 0, "green": 0}"#,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["errors"].as_array().is_some_and(|e| !e.is_empty()), "{v}");
    let (status, _) = call(&api, "GET", "/v1/upstreams/api/weights", OPERATOR, "").await;
    assert_eq!(status, 405);
    let (status, _) = call(&api, "POST", "/v1/upstreams/api/nope", OPERATOR, "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn drain_and_enable_take_percent_encoded_addresses() {
    let api = serve().await;
    let path = "/v1/upstreams/api/backends/127.0.0.1%3A9101/drain";
    let (status, v) = call(&api, "POST", path, OPERATOR, "").await;
    assert_eq!((status, &v["result"]), (200, &"applied".into()), "{v}");
    let line = audit_lines(&api.dir).pop().unwrap_or_default();
    assert_eq!(line["action"], "upstream.backend.drain");
    assert_eq!(line["actor"], "ops");
    let path = "/v1/upstreams/api/backends/127.0.0.1:9101/enable";
    let (status, v) = call(&api, "POST", path, OPERATOR, "").await;
    assert_eq!(
        (status, &v["result"], &v["version"]),
        (200, &"applied".into(), &3.into())
    );
    let path = "/v1/upstreams/api/backends/127.0.0.1:1/drain";
    let (status, v) = call(&api, "POST", path, OPERATOR, "").await;
    assert_eq!(status, 400, "{v}");
    let path = "/v1/upstreams/api/backends/127.0.0.1%3/drain";
    let (status, _) = call(&api, "POST", path, OPERATOR, "").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_flip_reports_progress_and_refuses_a_second_one() {
    let api = serve().await;
    let (status, v) = call(&api, "GET", "/v1/upstreams/api/flip", VIEWER, "").await;
    assert_eq!(status, 404, "{v}");
    let body = r#"{"to": "green", "verify": {"window": "1m"}}"#;
    let (status, _) = call(&api, "POST", "/v1/upstreams/api/flip", VIEWER, body).await;
    assert_eq!(status, 403);
    let (status, v) = call(&api, "POST", "/v1/upstreams/api/flip", OPERATOR, body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "applied");
    assert_eq!(v["flip"]["state"], "verifying");
    assert_eq!(
        v["flip"]["weights"],
        serde_json::json!({"blue": 0, "green": 100})
    );
    assert_eq!(v["flip"]["window"], "1m");

    let (status, v) = call(&api, "GET", "/v1/upstreams/api/flip", VIEWER, "").await;
    assert_eq!((status, &v["state"]), (200, &"verifying".into()), "{v}");
    assert_eq!(
        v["previous_weights"],
        serde_json::json!({"blue": 100, "green": 0})
    );
    assert_eq!(v["flip_version"], 2);

    let (status, v) = call(&api, "POST", "/v1/upstreams/api/flip", OPERATOR, body).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["flip"]["state"], "verifying");
    let line = audit_lines(&api.dir).pop().unwrap_or_default();
    assert_eq!(
        (&line["action"], &line["result"]),
        (&"upstream.flip".into(), &"rejected".into())
    );

    let bad = r#"{"to": "green", "verify": {"max_error_ratio": 2}}"#;
    let (status, _) = call(&api, "POST", "/v1/upstreams/api/flip", OPERATOR, bad).await;
    assert_eq!(status, 400);
    let (status, _) = call(&api, "DELETE", "/v1/upstreams/api/flip", OPERATOR, "").await;
    assert_eq!(status, 405);
}

#[test]
fn path_segments_are_percent_decoded() {
    assert_eq!(
        decode("127.0.0.1%3A9001").ok(),
        Some("127.0.0.1:9001".into())
    );
    assert_eq!(decode("%5B%3A%3A1%5d:80").ok(), Some("[::1]:80".into()));
    assert_eq!(decode("api").ok(), Some("api".into()));
    // `%+f` and `%-1`: `from_str_radix` takes a sign; a percent-encoding does not.
    for bad in ["%", "%3", "%zz", "%ff", "", "%+f", "%-1"] {
        let status = decode(bad).err().map(|r| r.status());
        assert_eq!(status, Some(StatusCode::BAD_REQUEST), "{bad:?}");
    }
}
