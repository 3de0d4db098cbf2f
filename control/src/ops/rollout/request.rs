//! What a rollout is asked to do: `POST /v1/upstreams/{name}/rollout`'s body, parsed and
//! checked into a [`RolloutRequest`].
//!
//! ```json
//! {"backends": "all" | {"pool": "blue"}, "batch_size": 2 | "34%",
//!  "drain_timeout": "30s", "ready_timeout": "60s", "version": "v2",
//!  "verify": {"window": "30s", "max_error_ratio": 0.01, "min_requests": 20,
//!             "max_p99_ratio": 2.0},
//!  "replace": {"command": "NAME"} | {"webhook": "NAME"} | "external",
//!  "min_available": 1, "pause_between_batches": false}
//! ```
//!
//! `replace` only names a command or webhook of the config's `[rollout]` section: the
//! request never carries a program or a URL.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ops::request::{Verify, MAX_WINDOW};

/// Longest `drain_timeout` or `ready_timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How many backends one batch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSize {
    Count(usize),
    Percent(u8),
}

impl BatchSize {
    /// The batch size for `total` backends: at least 1, at most `total`.
    pub fn of(self, total: usize) -> usize {
        let n = match self {
            BatchSize::Count(n) => n,
            BatchSize::Percent(p) => (total * p as usize).div_ceil(100),
        };
        n.clamp(1, total.max(1))
    }
}

/// How a batch is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replace {
    /// A `[rollout.commands.NAME]` of the config.
    Command(String),
    /// A `[rollout.webhooks.NAME]` of the config.
    Webhook(String),
    /// A deploy tool replaces the batch; the rollout waits for the new version.
    External,
}

/// What `POST /v1/upstreams/{name}/rollout` asks for (and, as serialized, what the fleet's
/// store keeps of it: a node taking the rollout over reads it back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRequest {
    /// Only this pool's backends (all of the upstream's when `None`).
    pub pool: Option<String>,
    pub batch_size: BatchSize,
    #[serde(with = "humantime_text")]
    pub drain_timeout: Duration,
    #[serde(with = "humantime_text")]
    pub ready_timeout: Duration,
    /// The version a replaced backend must report in its health check's `version_header`.
    pub version: Option<String>,
    pub verify: Verify,
    /// A batch whose p99 over the window is above this many times the p99 of the backends
    /// not yet replaced (same window) fails; `None`: latency is not compared.
    pub max_p99_ratio: Option<f64>,
    pub replace: Replace,
    /// Refuse a batch that would leave fewer healthy backends in rotation.
    pub min_available: usize,
    /// Wait for `POST …/rollout/resume` after each verified batch.
    pub pause_between_batches: bool,
}

impl RolloutRequest {
    /// Parse and check a request body (every key but `replace` optional).
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            backends: Option<serde_json::Value>,
            batch_size: Option<serde_json::Value>,
            drain_timeout: Option<String>,
            ready_timeout: Option<String>,
            version: Option<String>,
            verify: Option<serde_json::Value>,
            replace: serde_json::Value,
            min_available: Option<usize>,
            pause_between_batches: Option<bool>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            format!("expected {{\"batch_size\": 2, \"replace\": {{\"command\": \"NAME\"}} | \"external\", …}}: {e}")
        })?;
        let pool = match raw.backends {
            None => None,
            Some(serde_json::Value::String(s)) if s == "all" => None,
            Some(serde_json::Value::Object(m)) if m.len() == 1 => match m.get("pool") {
                Some(serde_json::Value::String(p)) => Some(p.clone()),
                _ => return Err("backends: expected \"all\" or {\"pool\": \"NAME\"}".into()),
            },
            Some(_) => return Err("backends: expected \"all\" or {\"pool\": \"NAME\"}".into()),
        };
        let batch_size = match raw.batch_size {
            None => BatchSize::Count(1),
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(n @ 1..=10_000) => BatchSize::Count(n as usize),
                _ => return Err(format!("batch_size: expected 1 to 10000, not {n}")),
            },
            Some(serde_json::Value::String(s)) => {
                match s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<u8>().ok())
                {
                    Some(p @ 1..=100) => BatchSize::Percent(p),
                    _ => {
                        return Err(format!(
                            "batch_size: expected a count or \"1%\" to \"100%\", not {s:?}"
                        ))
                    }
                }
            }
            Some(v) => return Err(format!("batch_size: expected a count or \"N%\", not {v}")),
        };
        let duration = |v: Option<String>, key: &str, default: u64| -> Result<Duration, String> {
            let d = match v {
                None => Duration::from_secs(default),
                Some(t) => humantime::parse_duration(&t)
                    .map_err(|e| format!("{key}: invalid duration {t:?}: {e}"))?,
            };
            if d.is_zero() || d > MAX_TIMEOUT {
                return Err(format!("{key} must be above 0 and at most 1h"));
            }
            Ok(d)
        };
        let drain_timeout = duration(raw.drain_timeout, "drain_timeout", 30)?;
        let ready_timeout = duration(raw.ready_timeout, "ready_timeout", 60)?;
        let mut max_p99_ratio = None;
        let verify = match raw.verify {
            None => Verify::default(),
            Some(mut v) => {
                if let Some(r) = v.as_object_mut().and_then(|m| m.remove("max_p99_ratio")) {
                    match r.as_f64() {
                        Some(r) if (1.0..=1000.0).contains(&r) => max_p99_ratio = Some(r),
                        _ => {
                            return Err(format!(
                                "verify.max_p99_ratio: expected 1 to 1000, not {r}"
                            ))
                        }
                    }
                }
                let body = serde_json::json!({ "to": "-", "verify": v }).to_string();
                crate::ops::FlipRequest::from_json(body.as_bytes())?.verify
            }
        };
        debug_assert!(verify.window <= MAX_WINDOW);
        let replace = match raw.replace {
            serde_json::Value::String(s) if s == "external" => Replace::External,
            serde_json::Value::Object(m) if m.len() == 1 => {
                match (m.get("command"), m.get("webhook")) {
                    (Some(serde_json::Value::String(c)), None) => Replace::Command(c.clone()),
                    (None, Some(serde_json::Value::String(w))) => Replace::Webhook(w.clone()),
                    _ => return Err(REPLACE_SHAPE.into()),
                }
            }
            _ => return Err(REPLACE_SHAPE.into()),
        };
        if replace == Replace::External && raw.version.is_none() {
            return Err("replace \"external\" needs \"version\": the rollout waits for the health check to report it".into());
        }
        if raw.version.as_ref().is_some_and(|v| v.is_empty()) {
            return Err("version must not be empty".into());
        }
        Ok(RolloutRequest {
            pool,
            batch_size,
            drain_timeout,
            ready_timeout,
            version: raw.version,
            verify,
            max_p99_ratio,
            replace,
            min_available: raw.min_available.unwrap_or(1),
            pause_between_batches: raw.pause_between_batches.unwrap_or(false),
        })
    }
}

const REPLACE_SHAPE: &str =
    "replace: expected {\"command\": \"NAME\"}, {\"webhook\": \"NAME\"} or \"external\" (names from the config's [rollout] section)";

/// Durations as humantime text (`"30s"`).
pub(super) mod humantime_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults_and_checks() {
        let r = RolloutRequest::from_json(br#"{"replace": {"command": "restart"}}"#);
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.batch_size, BatchSize::Count(1));
        assert_eq!(r.replace, Replace::Command("restart".into()));
        assert_eq!((r.pool, r.min_available), (None, 1));
        let r = RolloutRequest::from_json(
            br#"{"backends": {"pool": "blue"}, "batch_size": "34%", "replace": "external", "version": "2",
                 "verify": {"window": "5s", "min_requests": 3, "max_p99_ratio": 2.5}, "pause_between_batches": true}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.pool.as_deref(), Some("blue"));
        assert_eq!(r.batch_size.of(6), 3);
        assert_eq!(r.verify.window, Duration::from_secs(5));
        assert_eq!((r.verify.min_requests, r.max_p99_ratio), (3, Some(2.5)));
        assert!(r.pause_between_batches);
        for bad in [
            r#"{}"#,
            r#"{"replace": "ssh root@host"}"#,
            r#"{"replace": {"argv": ["rm"]}}"#,
            r#"{"replace": "external"}"#,
            r#"{"replace": "external", "version": "2", "batch_size": 0}"#,
            r#"{"replace": "external", "version": "2", "batch_size": "0%"}"#,
            r#"{"replace": "external", "version": "2", "drain_timeout": "2h"}"#,
            r#"{"replace": "external", "version": "2", "verify": {"window": "0s"}}"#,
            r#"{"replace": "external", "version": "2", "backends": "some"}"#,
            r#"{"replace": "external", "version": "2", "extra": 1}"#,
            r#"{"replace": "external", "version": "2", "verify": {"max_p99_ratio": 0.5}}"#,
            r#"{"replace": "external", "version": "2", "verify": {"max_p99_ratio": "2"}}"#,
        ] {
            assert!(RolloutRequest::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_reads_back_as_the_fleets_store_keeps_it() {
        let r = RolloutRequest::from_json(
            br#"{"backends": {"pool": "blue"}, "batch_size": "34%", "replace": {"webhook": "deploy"},
                 "drain_timeout": "1m 30s", "verify": {"window": "5s", "min_requests": 3}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(&r).unwrap_or_default();
        let back: RolloutRequest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back, r);
    }

    #[test]
    fn batch_sizes_round_up_and_stay_in_range() {
        assert_eq!(BatchSize::Percent(34).of(6), 3);
        assert_eq!(BatchSize::Percent(1).of(6), 1);
        assert_eq!(BatchSize::Count(10).of(6), 6);
        assert_eq!(BatchSize::Count(2).of(6), 2);
    }
}
