//! Where the config lives (`[store]`), and the split between a node's own settings and the
//! document a fleet shares.
//!
//! With `kind = "file"` (the default) the config file is the whole config, as it always was.
//! With `kind = "etcd"` every node keeps a small local file (its control listener and TLS,
//! its audit log, and `[store]` itself) and the rest comes from one TOML document in etcd:
//! [`overlay`] builds the text a node runs from the shared document and its local file, and
//! [`strip_local`] takes the node-local keys out of a text before it is shared.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use toml_edit::{DocumentMut, Item};

use crate::error::ConfigErrors;
use crate::model::TlsFiles;

/// `[store]`: where the config lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// File mode: a JSON file keeping the version counter and the bounded history, so both
    /// survive a restart. Off when absent (versions start again at 1).
    pub state_file: Option<PathBuf>,
    /// Etcd mode's settings (`None` with `kind = "file"`).
    pub etcd: Option<EtcdStore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    File,
    Etcd,
}

/// How a node reaches the shared document in etcd.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdStore {
    /// `http://host:port` or `https://host:port` of etcd members.
    pub endpoints: Vec<String>,
    /// Key prefix: the document is `<prefix>/config`, its history `<prefix>/history/<version>`,
    /// the registered nodes `<prefix>/members/<node>`.
    pub prefix: String,
    /// This node's id in `GET /v1/fleet` (default: `<hostname>-<control port>`).
    pub node: Option<String>,
    /// Deadline of every etcd request; a change gets 503 after it.
    #[serde(serialize_with = "crate::model::ser_duration")]
    pub timeout: Duration,
    /// TTL of the node's registration lease.
    #[serde(serialize_with = "crate::model::ser_duration")]
    pub lease_ttl: Duration,
    /// Names of the environment variables holding the etcd user and password (never the
    /// secrets themselves).
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    /// TLS to etcd: the CA to trust, and optionally a client certificate.
    pub tls: Option<EtcdTls>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub client: Option<TlsFiles>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::File,
            state_file: None,
            etcd: None,
        }
    }
}

/// The node-local keys: `(table, key)`, `key = None` for a whole top-level table.
const LOCAL: &[(&str, Option<&str>)] = &[
    ("store", None),
    ("control", Some("listen")),
    ("control", Some("tls")),
    ("control", Some("audit_log")),
];

/// The keys that stay in each node's own file, for messages and the README.
pub const LOCAL_KEYS: &str = "store, control.listen, control.tls, control.audit_log";

fn parse_doc(text: &str, what: &str) -> Result<DocumentMut, ConfigErrors> {
    text.parse::<DocumentMut>().map_err(|e| {
        ConfigErrors::single(
            "(file)",
            format!("{what} is not valid TOML: {}", e.message()),
        )
    })
}

/// `text` without the node-local keys: what a node shares. Fails only on invalid TOML.
pub fn strip_local(text: &str) -> Result<String, ConfigErrors> {
    let mut doc = parse_doc(text, "the config")?;
    for (table, key) in LOCAL {
        match key {
            None => {
                doc.remove(table);
            }
            Some(key) => {
                if let Some(t) = doc.get_mut(table).and_then(Item::as_table_like_mut) {
                    t.remove(key);
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// The text a node runs: the `shared` document with the node-local keys taken from `local`
/// (those in `shared` are ignored). Fails when either is not valid TOML.
pub fn overlay(shared: &str, local: &str) -> Result<String, ConfigErrors> {
    let mut doc = parse_doc(&strip_local(shared)?, "the shared config document")?;
    let local = parse_doc(local, "the local config file")?;
    for (table, key) in LOCAL {
        let Some(from) = local.get(table) else {
            continue;
        };
        match key {
            None => {
                doc.insert(table, from.clone());
            }
            Some(key) => {
                let Some(value) = from.as_table_like().and_then(|t| t.get(key)) else {
                    continue;
                };
                if doc.get(table).and_then(Item::as_table_like).is_none() {
                    doc.insert(table, Item::Table(toml_edit::Table::new()));
                }
                if let Some(t) = doc.get_mut(table).and_then(Item::as_table_like_mut) {
                    t.insert(key, value.clone());
                }
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL_FILE: &str = r#"
[control]
listen = "127.0.0.1:9911"
history_limit = 3

[store]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379"]
"#;

    const SHARED: &str = r#"
[control]
listen = "0.0.0.0:1"
history_limit = 20

[[control.tokens]]
name = "ops"
role = "admin"
env = "OPS_TOKEN"

[store]
kind = "file"
"#;

    #[test]
    fn overlay_takes_node_keys_from_the_local_file_and_the_rest_from_the_shared_one() {
        let text = overlay(SHARED, LOCAL_FILE).unwrap_or_default();
        let config = crate::parse(&text).map_err(|e| e.to_string());
        let config = config.as_ref().map_err(|e| e.as_str());
        let Ok(config) = config else {
            panic!("{config:?}\n{text}");
        };
        assert_eq!(config.control.listen.port(), 9911);
        assert_eq!(config.control.history_limit, 20, "shared, not local");
        assert_eq!(config.control.tokens.len(), 1);
        assert_eq!(config.store.kind, StoreKind::Etcd);
    }

    #[test]
    fn strip_local_keeps_only_what_is_shared() {
        let text = strip_local(LOCAL_FILE).unwrap_or_default();
        assert!(
            !text.contains("store") && !text.contains("listen"),
            "{text}"
        );
        assert!(text.contains("history_limit = 3"), "{text}");
        assert!(strip_local("[control\n").is_err());
        assert!(overlay("x = = 1", LOCAL_FILE).is_err());
    }

    #[test]
    fn store_section_is_validated_with_key_paths() {
        let paths = |text: &str| -> Vec<String> {
            match crate::parse(text) {
                Ok(_) => vec![],
                Err(e) => e.0.into_iter().map(|e| e.path).collect(),
            }
        };
        assert_eq!(
            paths("[store]\nkind = \"file\"\nendpoints = [\"http://a:1\"]\n"),
            ["store.endpoints"]
        );
        assert_eq!(paths("[store]\nkind = \"etcd\"\n"), ["store.endpoints"]);
        assert_eq!(paths("[store]\nkind = \"zk\"\n"), ["store.kind"]);
        assert_eq!(
            paths("[store]\nkind = \"etcd\"\nendpoints = [\"http://a:1\"]\nuser_env = \"U\"\n"),
            ["store"]
        );
        assert_eq!(
            paths("[store]\nkind = \"etcd\"\nendpoints = [\"https://a:1\"]\n"),
            ["store.endpoints[0]"]
        );
        let ok = crate::parse(
            "[store]\nkind = \"etcd\"\nendpoints = [\"http://a:1/\"]\nprefix = \"/sy/\"\nuser_env = \"U\"\npassword_env = \"P\"\n",
        );
        let etcd = ok.ok().and_then(|c| c.store.etcd);
        assert_eq!(etcd.as_ref().map(|e| e.prefix.as_str()), Some("/sy"));
        assert_eq!(
            etcd.map(|e| e.endpoints),
            Some(vec!["http://a:1".to_string()])
        );
        let default = crate::parse("").ok().map(|c| c.store);
        assert_eq!(default, Some(StoreConfig::default()));
    }
}
