//! Test helpers: an [`Applier`] over a config file in a temporary directory, and its audit
//! log. Used by the applier's and the runtime operations' unit tests.

use std::sync::Arc;

use tempfile::TempDir;

use super::Applier;

/// Two pools, all traffic on blue; the audit log sits next to the file.
pub const BLUE_GREEN: &str = r#"# Blue/green test config.
[control]
audit_log = "audit.jsonl"

[http.upstreams.api.pools.blue]
weight = 100 # live
backends = ["127.0.0.1:9001"]

[http.upstreams.api.pools.green]
weight = 0
backends = ["127.0.0.1:9101", "127.0.0.1:9102"]
"#;

/// Start an applier (no data planes) over `text` written to a fresh temporary directory.
pub fn start(text: &str) -> (TempDir, Arc<Applier>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write config: {e}"));
    let applier = Applier::start(&path, Vec::new()).unwrap_or_else(|e| panic!("start: {e}"));
    (dir, applier)
}

/// Every line of the audit log, parsed.
pub fn audit_lines(dir: &TempDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
