//! What the classifier answers ([`Decision`]: a [`Target`], a [`Reason`] and a
//! [`TxEffect`]) and the bounds it works within ([`Limits`]).

use std::fmt;
use std::sync::Arc;

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
