//! Targeted edits of the config *text* for runtime operations: set pool weights, drain or
//! re-enable a backend, and change Postgres node roles ([`postgres`]).
//!
//! A runtime operation through the control API changes the config like any other change,
//! so it is versioned, kept in the history and written back to the file. Writing back means
//! editing the operator's file, and an operator's file has comments and a layout worth
//! keeping: these functions change only the values they are asked to, through
//! [`toml_edit::DocumentMut`], and leave every other byte as it was. They do not validate:
//! the caller applies the result through the usual parse → validate path, which refuses a
//! weight out of range or weights that sum to 0.
//!
//! Pools may be written as `[http.upstreams.api.pools.blue]` tables, dotted keys
//! (`pools.blue.weight = 100`) or inline tables; backends as `"host:port"` strings, inline
//! tables `{ addr = "host:port", state = "drain" }` or `[[...backends]]` tables.

pub mod postgres;

use toml_edit::{DocumentMut, InlineTable, Item, TableLike, Value};

use crate::model::{Address, BackendState};
use crate::validate::parse_address;

/// Why an edit could not be made. [`EditError::kind`] says how an API should answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text to edit is not TOML at all.
    #[error("the config text is not valid TOML: {0}")]
    Syntax(String),
    #[error("no upstream named {upstream:?}")]
    UnknownUpstream { upstream: String },
    #[error("upstream {upstream:?} has no pool named {} (pools: {})", quoted(.pools), known.join(", "))]
    UnknownPool {
        upstream: String,
        /// Every requested pool that does not exist.
        pools: Vec<String>,
        /// The pools the upstream has.
        known: Vec<String>,
    },
    #[error("invalid backend address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: &'static str },
    #[error("no Postgres cluster named {cluster:?}")]
    UnknownCluster { cluster: String },
    #[error("upstream {upstream:?} has no backend {addr}")]
    UnknownBackend { upstream: String, addr: String },
    /// The request itself makes no sense (no pools given, …).
    #[error("{0}")]
    BadRequest(String),
    /// The text is TOML but not laid out the way a valid config is, at `path`.
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
}

/// How an [`EditError`] should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditErrorKind {
    /// The named upstream does not exist (HTTP 404).
    NotFound,
    /// The request names a pool or backend the upstream does not have, or is malformed
    /// (HTTP 400).
    BadRequest,
    /// The running config's text cannot be edited this way (HTTP 409).
    Conflict,
}

impl EditError {
    /// How an API should answer this error.
    pub fn kind(&self) -> EditErrorKind {
        match self {
            EditError::UnknownUpstream { .. } | EditError::UnknownCluster { .. } => {
                EditErrorKind::NotFound
            }
            EditError::UnknownPool { .. }
            | EditError::BadAddress { .. }
            | EditError::UnknownBackend { .. }
            | EditError::BadRequest(_) => EditErrorKind::BadRequest,
            EditError::Syntax(_) | EditError::Shape { .. } => EditErrorKind::Conflict,
        }
    }
}

fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

/// Set `http.upstreams.<upstream>.pools.<pool>.weight` for each `(pool, weight)`, adding the
/// key where it is absent. Pools not named keep their weight. Every named pool must exist;
/// all unknown ones are reported at once.
pub fn set_pool_weights(
    text: &str,
    upstream: &str,
    weights: &[(String, u32)],
) -> Result<String, EditError> {
    if weights.is_empty() {
        return Err(EditError::BadRequest(
            "give at least one pool weight, e.g. {\"blue\": 90, \"green\": 10}".into(),
        ));
    }
    let mut doc = parse(text)?;
    let pools = pools_mut(&mut doc, upstream)?;
    let known: Vec<String> = pools.iter().map(|(k, _)| k.to_string()).collect();
    let unknown: Vec<String> = weights
        .iter()
        .filter(|(p, _)| !known.contains(p))
        .map(|(p, _)| p.clone())
        .collect();
    if !unknown.is_empty() {
        return Err(EditError::UnknownPool {
            upstream: upstream.to_string(),
            pools: unknown,
            known,
        });
    }
    for (pool, weight) in weights {
        let weight = Value::from(i64::from(*weight));
        let done = match pools.get_mut(pool) {
            Some(Item::Value(Value::InlineTable(t))) => {
                set_inline(t, "weight", weight);
                true
            }
            Some(item) => item
                .as_table_like_mut()
                .map(|t| set_value(t, "weight", weight))
                .is_some(),
            None => false,
        };
        if !done {
            return Err(EditError::Shape {
                path: format!("http.upstreams.{upstream}.pools.{pool}"),
                message: "a pool must be a table".into(),
            });
        }
    }
    Ok(doc.to_string())
}

/// Set the administrative state of the backend `addr` (in whichever pool of `upstream`
/// lists it; addresses are compared after normalization, so `Api.Internal:80` finds
/// `api.internal:80`).
///
/// [`BackendState::Drain`] turns a `"host:port"` element into
/// `{ addr = "host:port", state = "drain" }` or sets `state` in a table;
/// [`BackendState::Enabled`] removes `state`, and turns `{ addr = "host:port" }` back into
/// the plain string when nothing else is left.
pub fn set_backend_state(
    text: &str,
    upstream: &str,
    addr: &str,
    state: BackendState,
) -> Result<String, EditError> {
    let wanted = parse_address(addr.trim()).map_err(|reason| EditError::BadAddress {
        addr: addr.to_string(),
        reason,
    })?;
    let mut doc = parse(text)?;
    let pools = pools_mut(&mut doc, upstream)?;
    let mut found = false;
    for (pool, item) in pools.iter_mut() {
        let shape = |message: &str| EditError::Shape {
            path: format!("http.upstreams.{upstream}.pools.{}", pool.get()),
            message: message.to_string(),
        };
        let table = item
            .as_table_like_mut()
            .ok_or_else(|| shape("a pool must be a table"))?;
        match table.get_mut("backends") {
            None => {}
            Some(Item::Value(Value::Array(list))) => {
                for element in list.iter_mut() {
                    if element_addr(element).is_some_and(|a| same(a, &wanted)) {
                        set_element_state(element, state);
                        found = true;
                    }
                }
            }
            Some(Item::ArrayOfTables(tables)) => {
                for t in tables.iter_mut() {
                    let addr = t.get("addr").and_then(Item::as_str);
                    if addr.is_some_and(|a| same(a, &wanted)) {
                        set_table_state(t, state);
                        found = true;
                    }
                }
            }
            Some(_) => return Err(shape("backends must be a list")),
        }
    }
    if !found {
        return Err(EditError::UnknownBackend {
            upstream: upstream.to_string(),
            addr: wanted.to_string(),
        });
    }
    Ok(doc.to_string())
}

fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>()
        .map_err(|e| EditError::Syntax(e.message().to_string()))
}

/// The `pools` table of an upstream.
fn pools_mut<'d>(
    doc: &'d mut DocumentMut,
    upstream: &str,
) -> Result<&'d mut dyn TableLike, EditError> {
    let up = doc
        .as_table_mut()
        .get_mut("http")
        .and_then(Item::as_table_like_mut)
        .and_then(|http| http.get_mut("upstreams"))
        .and_then(Item::as_table_like_mut)
        .and_then(|ups| ups.get_mut(upstream))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::UnknownUpstream {
            upstream: upstream.to_string(),
        })?;
    up.get_mut("pools")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::Shape {
            path: format!("http.upstreams.{upstream}.pools"),
            message: "an upstream needs a table of pools".into(),
        })
}

/// Replace a value in place, keeping its decoration (spacing and trailing comment), or add
/// the key when absent.
fn set_value(table: &mut dyn TableLike, key: &str, new: Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = new;
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, Item::Value(new));
        }
    }
}

/// [`set_value`] for an inline table, where a new last key takes over the space before the
/// closing brace: `{ a = 1 }` becomes `{ a = 1, b = 2 }`, not `{ a = 1 , b = 2}`.
fn set_inline(table: &mut InlineTable, key: &str, mut new: Value) {
    if table.contains_key(key) {
        return set_value(table, key, new);
    }
    let before_brace = table.iter_mut().last().and_then(|(_, last)| {
        let suffix = last.decor().suffix().cloned();
        last.decor_mut().set_suffix("");
        suffix
    });
    new.decor_mut().set_prefix(" ");
    if let Some(suffix) = before_brace {
        new.decor_mut().set_suffix(suffix);
    }
    table.insert(key, new);
}

/// Remove a key from an inline table; when it was the last one, the new last key takes over
/// the space before the closing brace.
fn remove_inline(table: &mut InlineTable, key: &str) {
    let was_last = table.iter().last().is_some_and(|(k, _)| k == key);
    let Some(removed) = table.remove(key) else {
        return;
    };
    if let (true, Some(suffix)) = (was_last, removed.decor().suffix()) {
        if let Some((_, last)) = table.iter_mut().last() {
            last.decor_mut().set_suffix(suffix.clone());
        }
    }
}

fn element_addr(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.value()),
        Value::InlineTable(t) => t.get("addr").and_then(Value::as_str),
        _ => None,
    }
}

fn same(written: &str, wanted: &Address) -> bool {
    parse_address(written.trim()).is_ok_and(|a| a == *wanted)
}

fn set_element_state(element: &mut Value, state: BackendState) {
    let decor = element.decor().clone();
    match (state, &mut *element) {
        (BackendState::Drain, Value::String(s)) => {
            let mut t = InlineTable::new();
            t.insert("addr", Value::from(s.value().as_str()));
            t.insert("state", Value::from("drain"));
            t.fmt();
            *element = Value::InlineTable(t);
        }
        (BackendState::Drain, Value::InlineTable(t)) => {
            set_inline(t, "state", Value::from("drain"))
        }
        (BackendState::Enabled, Value::InlineTable(t)) => {
            remove_inline(t, "state");
            let only_addr = t.len() == 1;
            match t.get("addr").and_then(Value::as_str) {
                Some(addr) if only_addr => *element = Value::from(addr),
                _ => {}
            }
        }
        // A plain string is enabled already.
        (BackendState::Enabled, _) | (BackendState::Drain, _) => return,
    }
    *element.decor_mut() = decor;
}

fn set_table_state(table: &mut toml_edit::Table, state: BackendState) {
    match state {
        BackendState::Drain => set_value(table, "state", Value::from("drain")),
        BackendState::Enabled => {
            table.remove("state");
        }
    }
}

#[cfg(test)]
mod tests;
