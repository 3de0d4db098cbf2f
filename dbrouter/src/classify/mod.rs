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
//! trivial read such as `SELECT 1`; then a bounded cache (`cache`) keyed by the text with
//! the values of its literals taken out (`normalize`: one scan, no parse), which prepared
//! statements, ORM queries and simple-protocol texts with inlined values all hit; only
//! then the full parse, for texts up to
//! [`Limits::max_parse_len`]. Nothing recurses without bound: the parser checks its stack
//! depth, the protobuf decoder refuses trees nested deeper than 100 messages, and the walk
//! over a tree (`walk`) follows the decoded tree. `benches/classify.rs` has the figures.
//!
//! A leaf of the router: it imports no other part (the runtime holds one [`Classifier`] per
//! cluster, and [`crate::route::turn`] asks it).

mod cache;
mod comment;
mod decision;
mod functions;
mod normalize;
mod precheck;
mod statement;
mod walk;

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;

use switchyard_config::RoutingSettings;

pub use decision::{CacheStats, Decision, Limits, Reason, Target, TxEffect};
use functions::FunctionLists;
pub use normalize::{cache_key, with_other_literals};

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
        // The exact text first: prepared and extended-protocol texts (`$1`, no literal) are
        // their own key, and skip the scan.
        if let Some(decision) = self.cache.get(sql, false) {
            self.hit_counter.increment(1);
            return decision;
        }
        // A text with no literal is looked up again: a miss either way, counted once.
        let key = normalize::cache_key(sql);
        if let Some(decision) = self.cache.get(&key, true) {
            self.hit_counter.increment(1);
            return decision;
        }
        self.miss_counter.increment(1);
        let decision = self.analyse(sql);
        self.cache.insert(&key, &decision);
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
