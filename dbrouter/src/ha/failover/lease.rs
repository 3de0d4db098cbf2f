//! The failover lease in etcd (`failover.etcd`): when several Switchyards watch one cluster
//! (a sidecar beside each application instance), the one that creates the key
//! `<prefix>/<cluster>/leader`, bound to a lease of `lease_ttl`, is the only one that may
//! promote; the others stand back and adopt the promoted node on their next attempt. This is
//! Patroni's leader key, held only for the length of a failover. No lease (etcd unreachable)
//! means no promotion: a partition must not produce two primaries.
//!
//! Spoken over etcd's v3 JSON gateway (`/v3/lease/grant`, `/v3/kv/txn`, `/v3/kv/put`,
//! `/v3/lease/revoke`) with hyper, keys and values base64 as the gateway wants them; the
//! endpoints are tried in order.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchyard_config::EtcdSettings;

/// Longest one request to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This Switchyard holds the lease (its id).
    Won { lease: String },
    /// Another one does: its identity as it wrote it.
    Lost { holder: String },
}

/// A client of the etcd cluster named in the config.
pub struct Arbiter {
    client: Client<HttpConnector, Full<Bytes>>,
    settings: EtcdSettings,
}

impl Arbiter {
    pub fn new(settings: &EtcdSettings) -> Self {
        Arbiter {
            client: Client::builder(TokioExecutor::new()).build_http(),
            settings: settings.clone(),
        }
    }

    fn key(&self, cluster: &str, name: &str) -> String {
        B64.encode(format!("{}/{cluster}/{name}", self.settings.prefix))
    }

    /// POST `body` to `path` on the first endpoint that answers.
    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let mut last = String::from("no etcd endpoint");
        for endpoint in &self.settings.endpoints {
            let req = hyper::Request::post(format!("{endpoint}{path}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| e.to_string())?;
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(v)
                } else {
                    Err(format!("{status}: {v}"))
                }
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
            match answer {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        Err(last)
    }

    /// Try to become the one Switchyard that fails `cluster` over, as `me`.
    pub async fn claim(&self, cluster: &str, me: &str) -> Result<Claim, String> {
        let ttl = self.settings.lease_ttl.as_secs().max(2);
        let grant = self.post("/v3/lease/grant", json!({ "TTL": ttl })).await?;
        let lease = grant["ID"]
            .as_str()
            .map(str::to_string)
            .or_else(|| grant["ID"].as_i64().map(|i| i.to_string()))
            .ok_or_else(|| format!("no lease ID in {grant}"))?;
        let key = self.key(cluster, "leader");
        let txn = json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": B64.encode(me), "lease": lease } }],
            "failure": [{ "request_range": { "key": key } }],
        });
        let answer = self.post("/v3/kv/txn", txn).await?;
        if answer["succeeded"].as_bool() == Some(true) {
            return Ok(Claim::Won { lease });
        }
        let _ = self.revoke(&lease).await;
        let holder = answer["responses"][0]["response_range"]["kvs"][0]["value"]
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "unknown".into());
        Ok(Claim::Lost { holder })
    }

    /// Record the decision (`<prefix>/<cluster>/primary`), durable, for operators and tools.
    pub async fn record(&self, cluster: &str, primary: &str) -> Result<(), String> {
        let put = json!({ "key": self.key(cluster, "primary"), "value": B64.encode(primary) });
        self.post("/v3/kv/put", put).await.map(|_| ())
    }

    /// Give the lease (and with it the leader key) back.
    pub async fn revoke(&self, lease: &str) -> Result<(), String> {
        self.post("/v3/lease/revoke", json!({ "ID": lease }))
            .await
            .map(|_| ())
    }
}

/// Who this process is, as written in the leader key.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("switchyard@{host}/{}", std::process::id())
}
