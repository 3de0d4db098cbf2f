//! Structural diff of two configs, for `PUT /v1/config?dry_run=true` and the audit log.
//!
//! Works on the JSON form of the validated model (secrets redacted), so it reports what
//! changes in effect, not in layout: a moved comment is no change, a default spelled out
//! is no change.

use serde::Serialize;
use serde_json::Value;

use crate::model::Config;
use crate::redact::{redact_json, REDACTED, SECRET_KEYS};

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
///
/// Sections and upstreams that are equal are skipped before anything is converted to JSON,
/// so the cost follows the size of the change, not the size of the config.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    section(&old.control, &new.control, "control", &mut out);
    section(
        &old.http.listeners,
        &new.http.listeners,
        "http.listeners",
        &mut out,
    );
    section(&old.http.routes, &new.http.routes, "http.routes", &mut out);
    let (a, b) = (&old.http.upstreams, &new.http.upstreams);
    if a != b {
        let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let path = format!("http.upstreams.{name}");
            match (a.get(name), b.get(name)) {
                (Some(x), Some(y)) => section(x, y, &path, &mut out),
                (x, y) => out.push(Change {
                    path,
                    op: if x.is_some() { "removed" } else { "added" },
                    from: x.map(redacted),
                    to: y.map(redacted),
                }),
            }
        }
    }
    section(&old.postgres, &new.postgres, "postgres", &mut out);
    out
}

fn redacted<T: Serialize>(v: &T) -> Value {
    let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
    redact_json(&mut v);
    v
}

/// The differences inside one part of the config, if it changed at all.
///
/// Compared before redaction, so a changed password or token hash is reported (the config's
/// hash and version change with it), and redacted after: the change names the key, never
/// the values.
fn section<T: Serialize + PartialEq>(a: &T, b: &T, path: &str, out: &mut Vec<Change>) {
    if a != b {
        let plain = |v: &T| serde_json::to_value(v).unwrap_or(Value::Null);
        let first = out.len();
        walk(&plain(a), &plain(b), path.to_string(), out);
        for change in &mut out[first..] {
            let secret = SECRET_KEYS.contains(&change.path.rsplit('.').next().unwrap_or(""));
            for value in [&mut change.from, &mut change.to].into_iter().flatten() {
                if secret && value.is_string() {
                    *value = Value::from(REDACTED);
                } else {
                    redact_json(value);
                }
            }
        }
    }
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
