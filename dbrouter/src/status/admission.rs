//! Each cluster's admission counts (`max_client_conn`) and TLS settings in `/v1/status`.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use crate::client::admission::Admission;
use crate::runtime::DbRuntime;

/// Add each cluster's admission counts and TLS settings to the `/v1/status` document.
pub fn augment(rt: &DbRuntime, admission: &Admission, doc: &mut Value) {
    let Some(clusters) = doc.get_mut("clusters").and_then(Value::as_array_mut) else {
        return;
    };
    for c in clusters {
        let Some(name) = c.get("name").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let Some(cluster) = rt.clusters.get(&name) else {
            continue;
        };
        let counts = admission.counts(&name);
        let Some(obj) = c.as_object_mut() else {
            continue;
        };
        obj.insert(
            "max_client_conn".into(),
            json!(cluster.config.max_client_conn),
        );
        obj.insert(
            "clients_admitted".into(),
            json!(counts.admitted.load(Relaxed)),
        );
        obj.insert(
            "clients_refused_total".into(),
            json!(counts.refused_total.load(Relaxed)),
        );
        obj.insert(
            "tls".into(),
            json!(cluster
                .config
                .tls
                .as_ref()
                .map(|t| json!({ "mode": t.mode }))),
        );
        obj.insert(
            "server_tls".into(),
            json!({
                "mode": cluster.config.server_tls,
                "verified": cluster.server_tls.verified,
            }),
        );
    }
}
