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
//! A shared copy must follow the schema as a client's own statement would: a client that
//! prepares a text after DDL expects it planned afresh, with the types the server infers
//! now. So any DDL a turn runs (a `CommandComplete` tagged `CREATE …`, `ALTER …` or
//! `DROP …`, see [`is_ddl`]) *retires* every registered statement ([`StatementRegistry::retire_all`]),
//! at once and again when the turn ends (DDL in a transaction is seen by others only once
//! it commits, and undone if it rolls back): the next `Parse` of any text gets a new global
//! name and is prepared afresh on each server connection where it is bound. DDL the router
//! does not see (another router, a direct migration) shows as an error on a shared copy
//! ([`is_stale`]: 0A000 "cached plan must not change result type", XX000 "cache lookup
//! failed"), which retires every statement the same way; the client gets the error, as it
//! would from its own statement, and its retry is planned afresh (asyncpg retries by
//! itself).
//!
//! A client's statement prepared *before* the DDL keeps its server copies, and behaves on
//! them as on a direct connection: the server revalidates it, keeps its parameter types,
//! and fails it with 0A000 if its result type changed. Where it must be prepared again (a
//! server connection that never had it), it is sent with the parameter types the server
//! first resolved for it ([`StatementDef::types_to_send`]), as a direct connection keeps
//! them. Retired statements no client holds any more are closed on each server connection
//! at its next turn ([`closable`]), so DDL does not leave server connections growing.
//!
//! While a turn runs DDL (from its text to the end of its turn, [`StatementRegistry::ddl_started`])
//! nothing is shared: each `Parse` gets a statement of its own, born retired. A `Parse` the
//! router answered from a shared statement just before DDL it had not seen yet (its text
//! arrived a moment later, or it ran on another router or directly), meets at its first
//! use a server copy that may have been planned before that DDL. So the first use on a
//! server that has a copy is preceded, outside a transaction, by the router's own
//! `Describe` of the copy; if it went stale, every statement is retired and the client's
//! name moves to one planned afresh (`TxRelay::probe`), as its own `Parse` would be.
//! Inside a transaction block the copy is used as it is (a failed probe would fail the
//! transaction).
//!
//! This is what PgBouncer (1.21+, `max_prepared_statements`) and PgDog do — share by text
//! and parameter types under a global name — plus the schema tracking they lack (PgBouncer
//! documents the 0A000 after a migration and says to `RECONNECT`).
//!
//! TODO: bound the registry and each server's set (PgBouncer's `max_prepared_statements`
//! closes the least recently used one); today both grow with the distinct statement texts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

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
    /// The parameter types a server resolved for it (`ParameterDescription`), in `Parse`'s
    /// format: what it is prepared with on the next server connections.
    resolved: OnceLock<Box<[u8]>>,
    /// What a server first described its result as: `RowDescription` or `NoData`, tag and
    /// body (what its clients were told).
    described: OnceLock<Box<[u8]>>,
    /// Retired after DDL ([`StatementRegistry::retire_all`]): a copy prepared now may not
    /// be what its clients were told.
    retired: AtomicBool,
}

impl Drop for StatementDef {
    fn drop(&mut self) {
        ALIVE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        DROPPED.fetch_add(1, Relaxed);
    }
}

impl StatementDef {
    /// A server described its parameters (a `ParameterDescription` body, which has the
    /// layout of `Parse`'s type section); the first description is kept.
    pub fn resolve(&self, description: &[u8]) {
        if self.resolved.get().is_none() && description.len() >= 2 {
            let _ = self.resolved.set(description.into());
        }
    }

    /// A server described its result (`RowDescription` or `NoData`); the first is kept.
    pub fn describe(&self, tag: u8, body: &[u8]) {
        if self.described.get().is_none() {
            let mut d = Vec::with_capacity(1 + body.len());
            d.push(tag);
            d.extend_from_slice(body);
            let _ = self.described.set(d.into());
        }
    }

    /// Whether it was retired after DDL.
    #[inline]
    pub fn retired(&self) -> bool {
        self.retired.load(Relaxed)
    }

    /// Whether its result was described before.
    pub fn is_described(&self) -> bool {
        self.described.get().is_some()
    }

    /// Whether a server's description of a copy prepared now (`tag`, `body`) gives the
    /// result its clients were told: the same column names, types and type modifiers, as
    /// the server's own check ("cached plan must not change result type") compares them
    /// (the tables the columns come from may differ). `true` when nothing was recorded.
    pub fn same_result(&self, tag: u8, body: &[u8]) -> bool {
        let Some(d) = self.described.get() else {
            return true;
        };
        d.first() == Some(&tag) && result_shape(&d[1..]) == result_shape(body)
    }

    /// The parameter types to prepare it with: those a server resolved, once known (so a
    /// copy prepared on another server connection after DDL keeps the client's parameter
    /// types, as its own statement would), else those the client gave.
    #[inline]
    pub fn types_to_send(&self) -> &[u8] {
        self.resolved.get().map_or(&self.types, |t| t)
    }

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

/// Ids of the statements that exist (registered, or held by a client or a request in
/// flight); a server connection's copy of any other may be closed.
static ALIVE: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(Default::default);

/// How many statements were dropped: a server connection whose set was last swept at
/// another count may hold copies nobody can use ([`closable`]).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The count of dropped statements now (see [`closable`]).
#[inline]
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// The statements of `prepared` (a server connection's set) that no longer exist: retired
/// and held by no client, so no client can bind them again. The caller closes them.
pub fn closable(prepared: &HashSet<u64>) -> Vec<u64> {
    let alive = ALIVE.lock().unwrap_or_else(|p| p.into_inner());
    prepared
        .iter()
        .filter(|id| !alive.contains(id))
        .copied()
        .collect()
}

/// The global name of statement `id`.
pub fn global_name(id: u64) -> Vec<u8> {
    format!("sy_{id}").into_bytes()
}

/// Global statement names by text and parameter types, for one node.
#[derive(Debug, Default)]
pub struct StatementRegistry {
    by_text: Mutex<HashMap<Box<[u8]>, Arc<StatementDef>>>,
    /// Turns with DDL under way ([`StatementRegistry::ddl_started`]).
    ddl_turns: AtomicUsize,
}

impl StatementRegistry {
    /// The statement for `query` with `types`, registered on first sight.
    pub fn get(&self, query: &[u8], types: &[u8]) -> Arc<StatementDef> {
        if self.ddl_turns.load(Relaxed) > 0 {
            // While DDL may be committing, nothing is shared: a statement planned now may
            // be planned before or after it, so it is born retired (checked wherever it
            // must be prepared again) and given to this client alone.
            let def = new_def(query, types);
            def.retired.store(true, Relaxed);
            return def;
        }
        let key = registry_key(query, types);
        let mut map = self.by_text.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(def) = map.get(&key[..]) {
            return def.clone();
        }
        let def = new_def(query, types);
        map.insert(key.into(), def.clone());
        def
    }

    /// A turn started running DDL (its text was seen, or its `CommandComplete`): every
    /// statement is retired, and until [`StatementRegistry::ddl_ended`] none is shared.
    pub fn ddl_started(&self) {
        self.ddl_turns.fetch_add(1, Relaxed);
        self.retire_all();
    }

    /// A turn with DDL ended (its transaction committed or rolled back, or its connection
    /// went): statements prepared from now on see the outcome.
    pub fn ddl_ended(&self) {
        let _ = self
            .ddl_turns
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        self.retire_all();
    }

    /// The schema changed (see the module's notes): every statement is retired, and the
    /// next `Parse` of any text gets a new one, prepared afresh where it is used. Clients
    /// keep the statements they hold.
    pub fn retire_all(&self) {
        let retired = {
            let mut map = self.by_text.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *map)
        };
        for def in retired.values() {
            def.retired.store(true, Relaxed);
        }
        // Dropped outside the lock (a drop takes `ALIVE`'s).
        drop(retired);
    }

    /// Statements registered.
    pub fn len(&self) -> usize {
        self.by_text.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `RowDescription` body without what does not count for the result type (each column's
/// table OID and attribute number, and its format code): `None` if malformed.
fn result_shape(body: &[u8]) -> Option<Vec<&[u8]>> {
    let (count, mut rest) = body.split_first_chunk::<2>()?;
    let count = u16::from_be_bytes(*count);
    let mut shape = Vec::with_capacity(usize::from(count) * 2);
    for _ in 0..count {
        let end = rest.iter().position(|&b| b == 0)?;
        let (name, tail) = rest.split_at(end + 1);
        // Table OID (4), attribute number (2), type OID (4), length (2), modifier (4),
        // format (2).
        let fields = tail.get(..18)?;
        shape.push(name);
        shape.push(&fields[6..16]);
        rest = &tail[18..];
    }
    Some(shape)
}

fn new_def(query: &[u8], types: &[u8]) -> Arc<StatementDef> {
    let id = NEXT_ID.fetch_add(1, Relaxed) + 1;
    ALIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
    Arc::new(StatementDef {
        id,
        name: global_name(id).into(),
        query: query.into(),
        types: types.into(),
        effects: sql::inspect(query),
        accepted: AtomicBool::new(false),
        resolved: OnceLock::new(),
        described: OnceLock::new(),
        retired: AtomicBool::new(false),
    })
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

/// Whether a `CommandComplete` body (its tag) is DDL that may change what statements
/// prepared before it mean: their result or parameter types, or the types they name.
#[inline]
pub fn is_ddl(tag: &[u8]) -> bool {
    match tag.first() {
        Some(b'C') => tag.starts_with(b"CREATE "),
        Some(b'A') => tag.starts_with(b"ALTER "),
        Some(b'D') => tag.starts_with(b"DROP "),
        _ => false,
    }
}

/// One client's named statements: its names for them, and what they are.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<StatementDef>>,
    /// Names whose `Parse` the router answered alone and that no server has seen used yet:
    /// their statement is planned only where they are first bound or described.
    provisional: HashSet<Box<[u8]>>,
}

impl ClientStatements {
    /// The client prepared `name` as `def` (a name prepared again is replaced).
    pub fn insert(&mut self, name: &[u8], def: Arc<StatementDef>) {
        if !self.provisional.is_empty() {
            self.provisional.remove(name);
        }
        self.by_name.insert(name.into(), def);
    }

    /// [`ClientStatements::insert`] for a `Parse` the router answered without a server.
    pub fn insert_provisional(&mut self, name: &[u8], def: Arc<StatementDef>) {
        self.by_name.insert(name.into(), def);
        self.provisional.insert(name.into());
    }

    /// Whether `name` was provisional (its first use ends that).
    #[inline]
    pub fn take_provisional(&mut self, name: &[u8]) -> bool {
        !self.provisional.is_empty() && self.provisional.remove(name)
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
        self.provisional.remove(name);
    }

    /// `DISCARD ALL` or `DEALLOCATE ALL` ran for the client.
    pub fn clear(&mut self) {
        self.by_name.clear();
        self.provisional.clear();
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every named statement, with the client's name.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Arc<StatementDef>)> {
        self.by_name.iter().map(|(n, d)| (&**n, d))
    }
}

#[cfg(test)]
#[path = "prepared_tests.rs"]
mod tests;
