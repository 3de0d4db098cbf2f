//! Read/write classification: decides, from a statement's text alone, whether it may run on
//! a replica or must run on the primary, and what it does to the transaction state.
//!
//! The classifier is pure and synchronous: no I/O, no async, no knowledge of the session. It
//! parses with Postgres's own grammar ([`pg_query`], the server's parser compiled as a
//! library), so it sees exactly the statement the server will see: a `FOR UPDATE` after a
//! subquery, an `INSERT` hidden in a `WITH`, a `nextval` inside a `CASE`.
//!
//! # Rules
//! Conservative: a replica gets a statement only when the classifier can tell it is a read.
//! Anything it is unsure about goes to the primary, where it is always correct, only slower.
//!
//! - **Replica**: `SELECT`, `VALUES` and `TABLE` without a locking clause (`FOR UPDATE`,
//!   `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`), without a data-modifying `WITH`
//!   (`INSERT`/`UPDATE`/`DELETE`/`MERGE` inside it), without `INTO`, calling only functions
//!   known to be read-only (a curated list of built-ins, see `functions`, plus the user's
//!   `read_only_functions`); `SHOW`; `EXPLAIN` of such a read (with or without `ANALYZE`);
//!   `COPY … TO STDOUT` of a table or of such a read; `BEGIN READ ONLY` and
//!   `START TRANSACTION READ ONLY` ([`TxEffect::Begin`] with `read_only: true`); `SET
//!   TRANSACTION READ ONLY` ([`TxEffect::SetReadOnly`]).
//! - **Primary**, with the [`Reason`] saying why: DML, DDL, locking clauses, writing CTEs,
//!   `SELECT INTO`, any function not known read-only (`UnknownFunction`), the user's
//!   `write_functions`, sequence functions, advisory locks, `LISTEN`/`UNLISTEN`/`NOTIFY`,
//!   `SET`/`RESET`/`DISCARD`, plain `BEGIN`, `COMMIT`/`ROLLBACK` on their own, `COPY … FROM`,
//!   `COPY` to a server file or program, `LOCK`, `CALL`, `DO`, `PREPARE`/`EXECUTE`, cursors,
//!   `VACUUM`/`ANALYZE`/`CLUSTER`/`REINDEX`/`CHECKPOINT`, and every statement that does not
//!   parse (`ParseError`: the primary answers with the server's own error), nests deeper
//!   than the parser's limits (`TooComplex`), or is too long to parse on the query path
//!   (`TooLarge`, see [`Limits::max_parse_len`]).
//! - **Serializable**: a `BEGIN … ISOLATION LEVEL SERIALIZABLE READ ONLY` goes to the primary:
//!   a hot standby refuses serializable transactions ("cannot use serializable mode in a hot
//!   standby"), so sending it to a replica would turn a valid transaction into an error.
//! - **Several statements in one string** (simple protocol): a replica only if every
//!   statement may go to one; `COMMIT`, `ROLLBACK`, `SAVEPOINT` and `RELEASE` do not count
//!   against it, so `BEGIN READ ONLY; SELECT …; COMMIT` goes to a replica. Otherwise the
//!   primary, with [`Reason::MultiStatement`] holding the reason of the first statement that
//!   needed it. The [`TxEffect`] is that of the last statement that changes the transaction.
//!
//! What it cannot see: the body of a view or of a function it is told is read-only, operators
//! and casts backed by user functions, and session state (`default_transaction_isolation`,
//! `search_path`). A view that calls `nextval` looks like a read: route such queries with
//! a `primary` override.
//!
//! # Overrides
//! A comment `/* switchyard: primary */` or `-- switchyard: replica` anywhere in the text
//! (case and spaces do not matter; only real comments count, not string literals) overrides
//! the decision for the whole text, with [`Reason::Override`]:
//! - `primary` is always honoured.
//! - `replica` is honoured only where the classifier lacked knowledge, not where it saw a
//!   write: statements that are reads already, calls to unknown functions, and a plain
//!   `BEGIN` (its transaction then runs on a replica, which refuses any write in it with
//!   SQLSTATE 25006). A write, DDL, locking clause, sequence call, advisory lock, `LISTEN` and
//!   the rest stay on the primary: a replica would refuse them, or (advisory locks) take them
//!   in the wrong place without an error.
//!
//! Both keep the statement's [`TxEffect`].
//!
//! # Cost
//! [`Classifier::classify`] first runs a pre-check (`precheck`) that answers without
//! parsing for text that is obviously a write, DDL, session `SET`, transaction control, or a
//! trivial read such as `SELECT 1`; then a bounded cache keyed by the exact text (`cache`),
//! which prepared statements and ORM queries hit; only then the full parse, for texts up to
//! [`Limits::max_parse_len`]. Nothing recurses without bound: the parser checks its stack
//! depth, the protobuf decoder refuses trees nested deeper than 100 messages, and the walk
//! over a tree (`walk`) follows the decoded tree. `benches/classify.rs` has the figures.

mod cache;
mod comment;
mod functions;
mod precheck;
mod statement;
mod walk;

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use switchyard_config::RoutingSettings;

use functions::FunctionLists;

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Only the primary will do.
    Primary,
    /// Any replica within the lag limits (or the primary, when none qualifies).
    Replica,
}

/// What a statement does to the session's transaction state, so the session can pin a
/// transaction to the server its first statement went to. A hint: the `ReadyForQuery` status
/// byte remains the truth about whether a transaction is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxEffect {
    /// Does not start or end a transaction (savepoints included).
    None,
    /// `BEGIN` / `START TRANSACTION`, read-only or not.
    Begin { read_only: bool },
    /// `SET TRANSACTION READ ONLY` inside a transaction.
    SetReadOnly,
    /// `COMMIT` / `END` (and `PREPARE TRANSACTION`, which also ends the transaction).
    Commit,
    /// `ROLLBACK` / `ABORT` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
}

/// Why a statement went where it did. [`Reason::label`] names it for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    // === to a replica ===
    /// A `SELECT`/`VALUES`/`TABLE` (or `EXPLAIN` of one) that only reads.
    Read,
    /// `SHOW`.
    Show,
    /// `COPY … TO STDOUT` of a table or a read.
    CopyTo,
    /// `BEGIN READ ONLY` or `SET TRANSACTION READ ONLY`.
    ReadOnlyTransaction,
    // === to the primary ===
    /// `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`.
    Write,
    /// Schema changes, and any statement kind not named by another reason.
    Ddl,
    /// `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`.
    LockingClause,
    /// A data-modifying statement inside `WITH`.
    WritingCte,
    /// `SELECT … INTO` (creates a table).
    SelectInto,
    /// A call to a function not known to be read-only.
    UnknownFunction(Arc<str>),
    /// A call to a function that writes or only works on the primary (user's
    /// `write_functions`, `set_config`, `pg_notify`, `txid_current`, …).
    WriteFunction(Arc<str>),
    /// `nextval`, `setval`, `currval`, `lastval`.
    Sequence,
    /// `pg_advisory_*` and `pg_try_advisory_*`.
    AdvisoryLock,
    /// `LISTEN` / `UNLISTEN`.
    Listen,
    /// `NOTIFY`.
    Notify,
    /// `BEGIN` (read-write), `COMMIT`, `ROLLBACK`, savepoints, two-phase commit.
    TransactionControl,
    /// A serializable transaction, which a hot standby refuses.
    Serializable,
    /// `SET`, `RESET`, `DISCARD`, `SET CONSTRAINTS`, `SET SESSION CHARACTERISTICS`.
    SessionState,
    /// `COPY … FROM`.
    CopyFrom,
    /// `COPY … TO` a server-side file or program.
    CopyToFile,
    /// `LOCK TABLE`.
    Lock,
    /// `CALL` and `DO`.
    Procedure,
    /// `PREPARE`, `EXECUTE`, `DEALLOCATE` (the prepared statement is not visible here).
    Prepared,
    /// `DECLARE`, `FETCH`, `MOVE`, `CLOSE`.
    Cursor,
    /// `VACUUM`, `ANALYZE`, `CLUSTER`, `REINDEX`, `CHECKPOINT`.
    Maintenance,
    /// An override comment decided.
    Override,
    /// The text does not parse: the primary answers with the server's own error.
    ParseError,
    /// Nested deeper than the parser or the tree decoder allow.
    TooComplex,
    /// Longer than [`Limits::max_parse_len`]: not worth parsing on the query path.
    TooLarge,
    /// No statement at all (empty, whitespace, comments).
    Empty,
    /// Several statements, not all of them replica-safe: the first one that was not.
    MultiStatement(Box<Reason>),
}

impl Reason {
    /// A short snake_case name, for the `reason` label of metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::Show => "show",
            Reason::CopyTo => "copy_to",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::Write => "write",
            Reason::Ddl => "ddl",
            Reason::LockingClause => "locking_clause",
            Reason::WritingCte => "writing_cte",
            Reason::SelectInto => "select_into",
            Reason::UnknownFunction(_) => "unknown_function",
            Reason::WriteFunction(_) => "write_function",
            Reason::Sequence => "sequence",
            Reason::AdvisoryLock => "advisory_lock",
            Reason::Listen => "listen",
            Reason::Notify => "notify",
            Reason::TransactionControl => "transaction_control",
            Reason::Serializable => "serializable",
            Reason::SessionState => "session_state",
            Reason::CopyFrom => "copy_from",
            Reason::CopyToFile => "copy_to_file",
            Reason::Lock => "lock",
            Reason::Procedure => "procedure",
            Reason::Prepared => "prepared",
            Reason::Cursor => "cursor",
            Reason::Maintenance => "maintenance",
            Reason::Override => "override",
            Reason::ParseError => "parse_error",
            Reason::TooComplex => "too_complex",
            Reason::TooLarge => "too_large",
            Reason::Empty => "empty",
            Reason::MultiStatement(_) => "multi_statement",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnknownFunction(name) => write!(f, "unknown_function {name}"),
            Reason::WriteFunction(name) => write!(f, "write_function {name}"),
            Reason::MultiStatement(first) => write!(f, "multi_statement ({first})"),
            other => f.write_str(other.label()),
        }
    }
}

/// The classifier's answer for one query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
    pub tx: TxEffect,
}

impl Decision {
    pub(crate) fn primary(reason: Reason) -> Self {
        Self {
            target: Target::Primary,
            reason,
            tx: TxEffect::None,
        }
    }

    pub(crate) fn replica(reason: Reason) -> Self {
        Self {
            target: Target::Replica,
            reason,
            tx: TxEffect::None,
        }
    }

    pub(crate) fn with_tx(self, tx: TxEffect) -> Self {
        Self { tx, ..self }
    }
}

/// Bounds on what classification may cost, in time and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most statement texts the cache holds.
    pub cache_entries: usize,
    /// Most bytes of text the cache holds (each entry also counts a fixed overhead). The
    /// cache is split in 32 shards: a text longer than a shard's share is never cached.
    pub cache_bytes: usize,
    /// Longer texts are not parsed and go to the primary ([`Reason::TooLarge`]), unless the
    /// pre-check decides them. A miss costs about 0.12 ms per KiB for one long statement
    /// and 0.4 ms per KiB for many short ones (`benches/classify.rs`): the default bounds a
    /// miss near 30 ms, and one client's megabyte of text cannot stall a query thread.
    pub max_parse_len: usize,
}

impl Default for Limits {
    /// 16 384 cached texts within 16 MiB; texts up to 64 KiB parsed.
    fn default() -> Self {
        Self {
            cache_entries: 16 * 1024,
            cache_bytes: 16 << 20,
            max_parse_len: 64 << 10,
        }
    }
}

/// Cache counters since the classifier was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// Classifies query strings for one cluster's routing settings. Cheap to share (`&self`
/// everywhere, thread-safe); build a new one when the settings change.
#[derive(Debug)]
pub struct Classifier {
    functions: FunctionLists,
    max_parse_len: usize,
    cache: cache::DecisionCache,
    hit_counter: metrics::Counter,
    miss_counter: metrics::Counter,
}

impl Classifier {
    /// A classifier with the user's function lists and the default [`Limits`].
    pub fn new(settings: &RoutingSettings) -> Self {
        Self::with_limits(settings, Limits::default())
    }

    /// A classifier with the given cache size and parse limit.
    pub fn with_limits(settings: &RoutingSettings, limits: Limits) -> Self {
        let counter = |result: &'static str| metrics::counter!("switchyard_postgres_classify_cache_total", "result" => result);
        Self {
            functions: FunctionLists::new(&settings.read_only_functions, &settings.write_functions),
            max_parse_len: limits.max_parse_len,
            cache: cache::DecisionCache::new(&limits),
            hit_counter: counter("hit"),
            miss_counter: counter("miss"),
        }
    }

    /// Where `sql` (one simple-protocol query string, or the text of one `Parse`) may run.
    pub fn classify(&self, sql: &str) -> Decision {
        if let Some(decision) = precheck::decide(sql) {
            return decision;
        }
        if sql.len() > self.max_parse_len {
            return Decision::primary(Reason::TooLarge);
        }
        if let Some(decision) = self.cache.get(sql) {
            self.hit_counter.increment(1);
            return decision;
        }
        self.miss_counter.increment(1);
        let decision = self.analyse(sql);
        self.cache.insert(sql, &decision);
        decision
    }

    /// The full classification, without the pre-check or the cache (what a cache miss costs).
    pub fn analyse(&self, sql: &str) -> Decision {
        let natural = statement::classify_text(sql, &self.functions);
        let tx = natural.decision.tx;
        match comment::override_in(sql) {
            Some(Target::Primary) => Decision {
                target: Target::Primary,
                reason: Reason::Override,
                tx,
            },
            Some(Target::Replica) if natural.replica_override_allowed => Decision {
                target: Target::Replica,
                reason: Reason::Override,
                tx,
            },
            _ => natural.decision,
        }
    }

    /// Cache hits and misses so far, and the entries held.
    pub fn cache_stats(&self) -> CacheStats {
        let (hits, misses, entries) = self.cache.counts();
        CacheStats {
            hits,
            misses,
            entries,
        }
    }
}
