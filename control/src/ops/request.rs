//! What a flip is asked to do: `POST /v1/upstreams/{name}/flip`'s body, parsed and
//! checked into a [`FlipRequest`] with its [`Verify`] settings.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest verification window accepted.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// How a flip is verified: within `window`, once the new pool has served `min_requests`,
/// an error ratio above `max_error_ratio` rolls the flip back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    #[serde(serialize_with = "ser_duration", deserialize_with = "de_duration")]
    pub window: Duration,
    pub max_error_ratio: f64,
    pub min_requests: u64,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            window: Duration::from_secs(30),
            max_error_ratio: 0.01,
            min_requests: 20,
        }
    }
}

/// What `POST /v1/upstreams/{name}/flip` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct FlipRequest {
    /// The pool that gets the traffic.
    pub to: String,
    pub verify: Verify,
}

impl FlipRequest {
    /// Parse and check `{"to": "green", "verify": {"window": "30s", "max_error_ratio": 0.01,
    /// "min_requests": 20}}` (`verify` and each of its keys optional).
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            to: String,
            #[serde(default)]
            verify: RawVerify,
        }
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct RawVerify {
            window: Option<String>,
            max_error_ratio: Option<f64>,
            min_requests: Option<u64>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            format!("expected {{\"to\": \"POOL\", \"verify\": {{\"window\": \"30s\", \"max_error_ratio\": 0.01, \"min_requests\": 20}}}}: {e}")
        })?;
        let mut verify = Verify::default();
        if let Some(w) = raw.verify.window {
            verify.window = humantime::parse_duration(&w)
                .map_err(|e| format!("verify.window: invalid duration {w:?}: {e}"))?;
        }
        if verify.window.is_zero() || verify.window > MAX_WINDOW {
            return Err(format!(
                "verify.window must be above 0 and at most {}",
                humantime::format_duration(MAX_WINDOW)
            ));
        }
        if let Some(r) = raw.verify.max_error_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("verify.max_error_ratio must be 0 to 1, not {r}"));
            }
            verify.max_error_ratio = r;
        }
        if let Some(n) = raw.verify.min_requests {
            if n == 0 {
                return Err("verify.min_requests must be at least 1".into());
            }
            verify.min_requests = n;
        }
        Ok(FlipRequest { to: raw.to, verify })
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// The window as [`ser_duration`] writes it (a flip's state read back from the store).
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_requests_parse_with_defaults_and_checks() {
        let parsed = FlipRequest::from_json(br#"{"to": "green"}"#);
        let expected = FlipRequest {
            to: "green".into(),
            verify: Verify::default(),
        };
        assert_eq!(parsed, Ok(expected));
        let custom = FlipRequest::from_json(
            br#"{"to": "green", "verify": {"window": "2m", "max_error_ratio": 0.5, "min_requests": 3}}"#,
        );
        let expected = Verify {
            window: Duration::from_secs(120),
            max_error_ratio: 0.5,
            min_requests: 3,
        };
        assert_eq!(custom.map(|r| r.verify), Ok(expected));
        for bad in [
            r#"{}"#,
            r#"[]"#,
            r#"{"to": "green", "extra": 1}"#,
            r#"{"to": "green", "verify": {"windo": "1s"}}"#,
            r#"{"to": "green", "verify": {"window": "soon"}}"#,
            r#"{"to": "green", "verify": {"window": "0s"}}"#,
            r#"{"to": "green", "verify": {"window": "2h"}}"#,
            r#"{"to": "green", "verify": {"max_error_ratio": 1.5}}"#,
            r#"{"to": "green", "verify": {"max_error_ratio": -0.1}}"#,
            r#"{"to": "green", "verify": {"min_requests": 0}}"#,
        ] {
            assert!(FlipRequest::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn verify_serializes_the_window_as_text() {
        let v = serde_json::to_value(Verify::default()).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({ "window": "30s", "max_error_ratio": 0.01, "min_requests": 20 })
        );
    }
}
