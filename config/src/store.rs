//! The split between a node's own settings and the document a fleet shares (the `[store]`
//! section itself is modelled in `model.rs`).
//!
//! With `kind = "file"` (the default) the config file is the whole config, as it always was.
//! With `kind = "etcd"` every node keeps a small local file (its control listener and TLS,
//! its audit log, and `[store]` itself) and the rest comes from one TOML document in etcd:
//! [`overlay`] builds the text a node runs from the shared document and its local file, and
//! [`strip_local`] takes the node-local keys out of a text before it is shared.

use toml_edit::{DocumentMut, Item};

use crate::error::ConfigErrors;

/// The node-local keys: `(table, key)`, `key = None` for a whole top-level table.
const LOCAL: &[(&str, Option<&str>)] = &[
    ("store", None),
    ("control", Some("listen")),
    ("control", Some("tls")),
    ("control", Some("audit_log")),
];

/// The keys that stay in each node's own file, for messages and the README.
pub const LOCAL_KEYS: &str = "store, control.listen, control.tls, control.audit_log";

/// Shared keys a node's own file may override when it sets them (several nodes on one host
/// need their own listener ports).
const OVERRIDABLE: &[(&str, &str)] = &[("http", "listeners")];

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
    let overrides = OVERRIDABLE.iter().map(|(t, k)| (t, Some(k)));
    for (table, key) in LOCAL.iter().map(|(t, k)| (t, k.as_ref())).chain(overrides) {
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
