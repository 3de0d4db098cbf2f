//! Serde "raw" types: the TOML as written, before validation.
//!
//! Fields are `Option` so that defaults and "missing key" errors are decided by validation,
//! and addresses, durations and enum names are strings so that every bad one is reported
//! (a serde type error would stop at the first). Unknown keys are caught by
//! `serde_ignored` in [`crate::source`], all of them, rather than by `deny_unknown_fields`,
//! which stops at the first.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawControl {
    pub listen: Option<String>,
    pub audit_log: Option<String>,
    pub tokens: Option<Vec<RawToken>>,
    pub tls: Option<RawTls>,
    pub history_limit: Option<i64>,
    pub reload_check_interval: Option<String>,
    pub reload_debounce: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawToken {
    pub name: Option<String>,
    pub role: Option<String>,
    pub sha256: Option<String>,
    pub sha256_env: Option<String>,
    pub env: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawListener {
    pub name: Option<String>,
    pub addr: Option<String>,
    pub tls: Option<Vec<RawTls>>,
    pub health_path: Option<String>,
    pub max_header_bytes: Option<i64>,
    pub header_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub read_buffer_bytes: Option<i64>,
    pub http1: Option<String>,
    pub access_log: Option<RawAccessLog>,
}

#[derive(Debug, Deserialize)]
pub struct RawAccessLog {
    pub format: Option<String>,
    pub path: Option<String>,
    pub buffer_lines: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub upstream: Option<String>,
    pub retries: Option<i64>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub gzip: Option<bool>,
    pub gzip_min_length: Option<i64>,
    pub max_body_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawUpstream {
    pub balance: Option<String>,
    pub max_fails: Option<i64>,
    pub fail_timeout: Option<String>,
    pub max_ejected_percent: Option<i64>,
    pub failure_statuses: Option<Vec<i64>>,
    pub retry_budget: Option<f64>,
    pub slow_start: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub pools: Option<BTreeMap<String, RawPool>>,
}

#[derive(Debug, Deserialize)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub expect_status: Option<i64>,
    pub version_header: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawPool {
    pub weight: Option<i64>,
    pub backends: Option<Vec<RawBackend>>,
}

/// A backend: either `"host:port"` or `{ addr = "host:port", weight = 2, state = "drain" }`.
#[derive(Debug)]
pub struct RawBackend {
    pub addr: Option<String>,
    pub weight: Option<i64>,
    pub state: Option<String>,
}

#[derive(Deserialize)]
struct RawBackendTable {
    addr: Option<String>,
    weight: Option<i64>,
    state: Option<String>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BackendVisitor;
        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host:port\" or { addr = \"host:port\", weight = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: Some(v.to_string()),
                    weight: None,
                    state: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    addr: t.addr,
                    weight: t.weight,
                    state: t.state,
                })
            }
        }
        d.deserialize_any(BackendVisitor)
    }
}

#[derive(Debug, Deserialize)]
pub struct RawCluster {
    pub name: Option<String>,
    pub listen: Option<String>,
    pub pool_mode: Option<String>,
    pub nodes: Option<Vec<RawNode>>,
    pub users: Option<Vec<RawUser>>,
    pub pool: Option<RawPoolSettings>,
    pub routing: Option<RawRouting>,
    pub failover: Option<RawFailover>,
    pub tls: Option<RawPgTls>,
    pub server_tls: Option<String>,
    pub server_tls_ca: Option<String>,
    pub max_client_conn: Option<i64>,
}

/// `[postgres.clusters.tls]`: TLS offered to clients.
#[derive(Debug, Deserialize)]
pub struct RawPgTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawNode {
    pub addr: Option<String>,
    pub role: Option<String>,
    pub priority: Option<i64>,
    pub fenced: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawUser {
    pub name: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub client_auth: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPoolSettings {
    pub min_size: Option<i64>,
    pub max_size: Option<i64>,
    pub idle_timeout: Option<String>,
    pub max_lifetime: Option<String>,
    pub checkout_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouting {
    pub read_write_split: Option<bool>,
    pub max_replica_lag_bytes: Option<i64>,
    pub max_replica_lag: Option<String>,
    pub fallback: Option<String>,
    pub read_your_writes: Option<bool>,
    pub read_only_functions: Option<Vec<String>>,
    pub write_functions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFailover {
    pub auto_promote: Option<bool>,
    pub check_interval: Option<String>,
    pub check_timeout: Option<String>,
    pub failure_threshold: Option<i64>,
    pub write_pause_timeout: Option<String>,
    pub etcd: Option<RawEtcd>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawEtcd {
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub lease_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub kind: Option<String>,
    pub state_file: Option<String>,
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub node: Option<String>,
    pub timeout: Option<String>,
    pub lease_ttl: Option<String>,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    pub tls: Option<RawStoreTls>,
}

#[derive(Debug, Deserialize)]
pub struct RawStoreTls {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRollout {
    pub commands: Option<BTreeMap<String, RawRolloutCommand>>,
    pub webhooks: Option<BTreeMap<String, RawRolloutWebhook>>,
}

#[derive(Debug, Deserialize)]
pub struct RawRolloutCommand {
    pub argv: Option<Vec<String>>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawRolloutWebhook {
    pub url: Option<String>,
    pub timeout: Option<String>,
}
