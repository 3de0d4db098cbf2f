//! Named prepared statements under transaction pooling.
//!
//! A statement a client prepared on one server connection does not exist on the next one it
//! gets. So every named statement is renamed to a global name, `sy_<n>`, that stands for its
//! text and parameter types in a [`StatementRegistry`] shared by the node's pool: two clients
//! that prepare the same text share one name, and a server connection that has it prepared
//! serves both. Each server connection remembers which global names it has
//! ([`crate::server::conn::ServerState::prepared`]); before a client's `Bind` or `Describe` of a
//! statement the server lacks, the router sends the `Parse` itself and swallows its
//! `ParseComplete`. The unnamed statement passes through untouched (it lives only until the
//! next `Parse` anyway).
//!
//! A client that prepares a statement some server already accepted, while it holds no
//! server connection, is answered `ParseComplete` by the router alone: the statement is
//! prepared where it is first bound. Besides a round trip, this saves synchronous clients
//! from a deadlock: pgbench `-M prepared` blocks a whole thread in `PQprepare`, and with
//! the thread's other clients inside transactions holding every server connection, that
//! `Parse` would wait for a connection forever. (The price: a statement that no longer
//! parses, because a table was dropped since, fails at its `Bind` instead.)
//!
//! A server's copy can go stale where a client's own statement would not: a client that
//! prepares a text again after DDL expects it planned afresh, but gets the copy prepared
//! before. When a `Bind` or `Describe` of a shared statement fails because the copy no longer
//! fits the catalog ([`is_stale`]), the registry forgets it, so the next `Parse` of that text
//! is prepared anew (asyncpg re-prepares after `0A000` by itself). Parameter types that
//! were inferred from a table since dropped and created again with other column types stay
//! as they were without any error: a known limit of sharing statements by text.
//!
//! TODO: bound the registry and each server's set (PgBouncer's `max_prepared_statements`
//! closes the least recently used one); today both grow with the distinct statement texts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::sql::{self, Effects};

/// A statement as the servers know it.
#[derive(Debug)]
pub struct StatementDef {
    pub id: u64,
    /// `sy_<id>`.
    pub name: Box<[u8]>,
    pub query: Box<[u8]>,
    /// `Parse`'s parameter type section (count and OIDs), as the client sent it.
    pub types: Box<[u8]>,
    /// What running it does to the session ([`sql::inspect`] of its text).
    pub effects: Effects,
    /// A server accepted it (answered `ParseComplete`).
    accepted: AtomicBool,
}

impl StatementDef {
    /// A server answered `ParseComplete` to it.
    pub fn accept(&self) {
        self.accepted.store(true, Relaxed);
    }

    /// Whether a server ever accepted it.
    pub fn accepted(&self) -> bool {
        self.accepted.load(Relaxed)
    }
}

/// Statement ids are unique in the process, not per registry: with read/write split a
/// server connection of a replica gets statements registered with the primary's pool, and
/// a reload may change which node that is.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Global statement names by text and parameter types, for one node.
#[derive(Debug, Default)]
pub struct StatementRegistry {
    by_text: Mutex<HashMap<Box<[u8]>, Arc<StatementDef>>>,
}

impl StatementRegistry {
    /// The statement for `query` with `types`, registered on first sight.
    pub fn get(&self, query: &[u8], types: &[u8]) -> Arc<StatementDef> {
        let key = registry_key(query, types);
        let mut map = self.by_text.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(def) = map.get(&key[..]) {
            return def.clone();
        }
        let id = NEXT_ID.fetch_add(1, Relaxed) + 1;
        let def = Arc::new(StatementDef {
            id,
            name: format!("sy_{id}").into_bytes().into(),
            query: query.into(),
            types: types.into(),
            effects: sql::inspect(query),
            accepted: AtomicBool::new(false),
        });
        map.insert(key.into(), def.clone());
        def
    }

    /// The servers' copies of `def` went stale (see [`is_stale`]): the next `Parse` of its
    /// text and types gets a new global statement, prepared afresh where it is used.
    /// Clients that hold `def` keep it, and get the server's error again if they use it, as
    /// they would from their own statement on a server.
    pub fn forget(&self, def: &StatementDef) {
        let key = registry_key(&def.query, &def.types);
        let mut map = self.by_text.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&key[..]).is_some_and(|d| d.id == def.id) {
            map.remove(&key[..]);
        }
    }

    /// Statements registered.
    pub fn len(&self) -> usize {
        self.by_text.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn registry_key(query: &[u8], types: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(query.len() + 1 + types.len());
    key.extend_from_slice(query);
    key.push(0);
    key.extend_from_slice(types);
    key
}

/// Whether an error the server sent in answer to a `Bind` or `Describe` of a shared statement
/// says the server's prepared copy no longer fits the catalog: a table it reads changed the
/// type of a column (`0A000`, "cached plan must not change result type"), or a type its
/// parameters were inferred as was dropped (`XX000`, "cache lookup failed for type …").
/// A client's own `Parse` on a server would have planned afresh; here it was answered
/// from a copy prepared earlier, perhaps for another client.
pub fn is_stale(code: &str, message: &str) -> bool {
    (code == "0A000" && message.starts_with("cached plan must not change result type"))
        || (code == "XX000" && message.starts_with("cache lookup failed for"))
}

/// One client's named statements: its names for them, and what they are.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<StatementDef>>,
}

impl ClientStatements {
    /// The client prepared `name` as `def` (a name prepared again is replaced).
    pub fn insert(&mut self, name: &[u8], def: Arc<StatementDef>) {
        self.by_name.insert(name.into(), def);
    }

    /// The statement the client calls `name`, if it prepared one (never for the unnamed one).
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Arc<StatementDef>> {
        if name.is_empty() {
            return None;
        }
        self.by_name.get(name)
    }

    /// The client closed `name` (or preparing it failed).
    pub fn remove(&mut self, name: &[u8]) {
        self.by_name.remove(name);
    }

    /// `DISCARD ALL` or `DEALLOCATE ALL` ran for the client.
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_a_global_name() {
        let reg = StatementRegistry::default();
        let a = reg.get(b"select $1", &[0, 1, 0, 0, 0, 23]);
        let b = reg.get(b"select $1", &[0, 1, 0, 0, 0, 23]);
        let c = reg.get(b"select $1", &[0, 0]);
        let d = reg.get(b"select $2", &[0, 1, 0, 0, 0, 23]);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_ne!(a.id, d.id);
        assert_eq!(&*a.name, format!("sy_{}", a.id).as_bytes());
        assert_eq!(reg.len(), 3);
    }

    #[test]
    fn a_forgotten_statement_is_registered_anew() {
        let reg = StatementRegistry::default();
        let old = reg.get(b"select * from t", &[0, 0]);
        reg.forget(&old);
        let new = reg.get(b"select * from t", &[0, 0]);
        assert_ne!(old.id, new.id);
        // Forgetting the old one again leaves the new one alone.
        reg.forget(&old);
        assert_eq!(reg.get(b"select * from t", &[0, 0]).id, new.id);
        assert!(is_stale("0A000", "cached plan must not change result type"));
        assert!(is_stale("XX000", "cache lookup failed for type 30866"));
        assert!(!is_stale("0A000", "cannot insert into view"));
        assert!(!is_stale("22P02", "invalid input syntax for type integer"));
    }

    #[test]
    fn client_names_map_to_statements() {
        let reg = StatementRegistry::default();
        let mut mine = ClientStatements::default();
        mine.insert(b"s0", reg.get(b"listen x", &[0, 0]));
        assert_eq!(mine.get(b"s0").map(|d| d.effects.pin), Some(Some("LISTEN")));
        assert!(mine.get(b"").is_none());
        mine.remove(b"s0");
        assert!(mine.is_empty());
    }
}
