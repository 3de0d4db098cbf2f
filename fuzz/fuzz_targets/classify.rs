//! The SQL classifier (pre-check, cache and full parse) against `pg_query`'s own tree.
//!
//! Properties:
//! - `classify` (pre-check, then cache, then parse) and `analyse` (the parse alone) agree on
//!   the target and the transaction effect, and a second `classify` (a cache hit) gives the
//!   same decision, also with a tiny cache that evicts all the time;
//! - the cache key (the text with its literals' values out) is sound: the same text with
//!   other literal values has the same key and the same decision from the parse, and a key
//!   is its own key;
//! - a statement sent to a replica never writes: `pg_query` parses it, every statement is
//!   a `SELECT`, `SHOW`, `EXPLAIN` of a `SELECT`, `COPY … TO STDOUT`, transaction control or
//!   `SET TRANSACTION`, no node anywhere is an `INSERT`/`UPDATE`/`DELETE`/`MERGE`, no
//!   `SELECT` has a locking clause or `INTO`, no table is a DML or DDL target, and no function
//!   called is one of the writers listed here (kept apart from the classifier's own lists);
//! - transaction pooling's lexer (`pooling::transaction::sql::inspect`) reads the same text
//!   without panicking.
#![no_main]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pg_query::protobuf::{self, TransactionStmtKind};
use pg_query::{NodeEnum, NodeRef};
use switchyard_config::{ReplicaFallback, RoutingSettings};
use switchyard_dbrouter::classify::{
    cache_key, with_other_literals, Classifier, Decision, Limits, Reason, Target,
};

fn settings() -> RoutingSettings {
    RoutingSettings {
        read_write_split: true,
        max_replica_lag_bytes: None,
        max_replica_lag: None,
        fallback: ReplicaFallback::Primary,
        read_your_writes: false,
        read_only_functions: vec!["shop.price_of".into(), "safe_fn".into()],
        write_functions: vec!["audit".into()],
    }
}

fn classifiers() -> &'static (Classifier, Classifier) {
    static C: OnceLock<(Classifier, Classifier)> = OnceLock::new();
    C.get_or_init(|| {
        let tiny = Limits {
            cache_entries: 4,
            cache_bytes: 4096,
            max_parse_len: Limits::default().max_parse_len,
        };
        (
            Classifier::new(&settings()),
            Classifier::with_limits(&settings(), tiny),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = switchyard_dbrouter::pooling::transaction::sql::inspect(data);
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if sql.len() > Limits::default().max_parse_len {
        return;
    }
    let (full, tiny) = classifiers();
    let first = full.classify(sql);
    let again = full.classify(sql);
    assert_eq!(
        first, again,
        "a cache hit differs from the first answer for {sql:?}"
    );
    let evicting = tiny.classify(sql);
    assert_eq!(
        first, evicting,
        "a tiny cache answers differently for {sql:?}"
    );
    let analysed = full.analyse(sql);
    assert_eq!(
        (first.target, first.tx),
        (analysed.target, analysed.tx),
        "the pre-check or the cache disagrees with the parse for {sql:?}: {first:?} vs {analysed:?}"
    );
    // The cache is keyed by the text with its literals' values out: other values must not
    // change the parse's decision (and `first` above may be another input's cached one).
    // A key is its own key: the exact-text lookup that comes first finds only entries of
    // texts that share this text's key.
    let key = cache_key(sql);
    assert_eq!(cache_key(&key), key, "a key that is not its own key, for {sql:?}");
    if let Some(other) = with_other_literals(sql) {
        assert_eq!(
            cache_key(&other),
            cache_key(sql),
            "other literal values gave another key: {sql:?} vs {other:?}"
        );
        let o = full.analyse(&other);
        assert_eq!(
            (o.target, o.tx),
            (analysed.target, analysed.tx),
            "a literal's value changed the decision: {sql:?} vs {other:?}: {analysed:?} vs {o:?}"
        );
    }
    // A `/* switchyard: replica */` comment is the user's choice, not the classifier's (the
    // replica refuses any write in it): only the classifier's own replica verdicts must read.
    if first.target == Target::Replica && first.reason != Reason::Override {
        if let Err(why) = reads_only(sql, &first) {
            panic!("{sql:?} went to a replica ({first:?}) but {why}");
        }
    }
});

/// Writers and primary-only functions, listed apart from the classifier's own tables.
fn writes(function: &str) -> bool {
    let name = function
        .rsplit('.')
        .next()
        .unwrap_or(function)
        .to_ascii_lowercase();
    matches!(
        name.as_str(),
        "nextval"
            | "setval"
            | "currval"
            | "lastval"
            | "set_config"
            | "pg_notify"
            | "txid_current"
            | "pg_current_xact_id"
            | "pg_terminate_backend"
            | "pg_cancel_backend"
            | "pg_reload_conf"
            | "pg_switch_wal"
            | "pg_promote"
            | "pg_create_restore_point"
            | "setseed"
            | "audit"
            | "pg_current_wal_lsn"
    ) || [
        "pg_advisory",
        "pg_try_advisory",
        "lo_",
        "dblink",
        "pg_stat_reset",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn reads_only(sql: &str, decision: &Decision) -> Result<(), String> {
    let parsed = match catch_unwind(AssertUnwindSafe(|| pg_query::parse(sql, 0))) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(format!("pg_query cannot parse it: {e}")),
        Err(_) => return Err("pg_query panics on it".into()),
    };
    if decision.reason == Reason::Empty && parsed.protobuf.stmts.is_empty() {
        return Ok(());
    }
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
            continue;
        };
        top_level(node)?;
    }
    if !parsed.dml_tables().is_empty() {
        return Err(format!("pg_query sees DML on {:?}", parsed.dml_tables()));
    }
    if !parsed.ddl_tables().is_empty() {
        return Err(format!("pg_query sees DDL on {:?}", parsed.ddl_tables()));
    }
    for (node, _, _, _) in parsed.protobuf.nodes() {
        match node {
            NodeRef::InsertStmt(_)
            | NodeRef::UpdateStmt(_)
            | NodeRef::DeleteStmt(_)
            | NodeRef::MergeStmt(_) => {
                return Err("pg_query's tree has a data-modifying statement in it".into())
            }
            NodeRef::SelectStmt(s) => select(s)?,
            NodeRef::LockingClause(_) => return Err("it has a locking clause".into()),
            NodeRef::IntoClause(_) => return Err("it has an INTO clause".into()),
            _ => {}
        }
    }
    if let Some(f) = parsed.functions().into_iter().find(|f| writes(f)) {
        return Err(format!("it calls {f}"));
    }
    Ok(())
}

fn select(s: &protobuf::SelectStmt) -> Result<(), String> {
    if !s.locking_clause.is_empty() {
        return Err("a SELECT in it has a locking clause".into());
    }
    if s.into_clause.is_some() {
        return Err("a SELECT in it has INTO".into());
    }
    Ok(())
}

fn inner(node: &Option<Box<pg_query::Node>>) -> Option<&NodeEnum> {
    node.as_ref()?.node.as_ref()
}

fn top_level(node: &NodeEnum) -> Result<(), String> {
    match node {
        NodeEnum::SelectStmt(s) => select(s),
        NodeEnum::VariableShowStmt(_) => Ok(()),
        NodeEnum::ExplainStmt(e) => match inner(&e.query) {
            Some(NodeEnum::SelectStmt(s)) => select(s),
            other => Err(format!("it explains a {}", kind(other))),
        },
        NodeEnum::CopyStmt(c) => {
            if c.is_from || c.is_program || !c.filename.is_empty() {
                return Err("it is a COPY FROM or to a file or program".into());
            }
            match inner(&c.query) {
                None => Ok(()),
                Some(NodeEnum::SelectStmt(s)) => select(s),
                other => Err(format!("it copies from a {}", kind(other))),
            }
        }
        NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(
                TransactionStmtKind::TransStmtPrepare
                | TransactionStmtKind::TransStmtCommitPrepared
                | TransactionStmtKind::TransStmtRollbackPrepared,
            ) => Err("it is two-phase commit".into()),
            _ => Ok(()),
        },
        NodeEnum::VariableSetStmt(s) if s.name == "TRANSACTION" => Ok(()),
        other => Err(format!("it is a {}", kind(Some(other)))),
    }
}

fn kind(node: Option<&NodeEnum>) -> String {
    match node {
        None => "nothing".into(),
        Some(n) => format!("{n:?}")
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect(),
    }
}
