//! Structural diff of two configs, for `PUT /v1/config?dry_run=true` and the audit log.
//!
//! Works on the JSON form of the validated model (secrets redacted), so it reports what
//! changes in effect, not in layout: a moved comment is no change, a default spelled out
//! is no change.

use serde::Serialize;
use serde_json::Value;

use crate::model::Config;
use crate::redact::redact_json;

/// One difference between two configs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Key path, e.g. `http.upstreams.jobs-api.pools.green.weight`.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// Every difference from `old` to `new`, in key order.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut a = serde_json::to_value(old).unwrap_or(Value::Null);
    let mut b = serde_json::to_value(new).unwrap_or(Value::Null);
    redact_json(&mut a);
    redact_json(&mut b);
    let mut out = Vec::new();
    walk(&a, &b, String::new(), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => walk(va, vb, join(&path, k), out),
                    None => out.push(Change {
                        path: join(&path, k),
                        op: "removed",
                        from: Some(va.clone()),
                        to: None,
                    }),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(Change {
                        path: join(&path, k),
                        op: "added",
                        from: None,
                        to: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(va, vb, p, out),
                    (Some(va), None) => out.push(Change {
                        path: p,
                        op: "removed",
                        from: Some(va.clone()),
                        to: None,
                    }),
                    (None, Some(vb)) => out.push(Change {
                        path: p,
                        op: "added",
                        from: None,
                        to: Some(vb.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(Change {
            path,
            op: "changed",
            from: Some(a.clone()),
            to: Some(b.clone()),
        }),
        _ => {}
    }
}
