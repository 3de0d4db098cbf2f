//! Classification of parsed text: one [`Verdict`] per statement, then one [`Decision`] for
//! the whole string. The rules are in the [module docs](super).

use std::panic::{catch_unwind, AssertUnwindSafe};

use pg_query::protobuf::{self, a_const, CopyStmt, TransactionStmtKind, VariableSetStmt};
use pg_query::{Node, NodeEnum};

use super::functions::FunctionLists;
use super::{walk, Decision, Reason, Target, TxEffect};

/// The decision for a whole text, and whether a `replica` override may change it.
#[derive(Debug)]
pub(super) struct Natural {
    pub decision: Decision,
    pub replica_override_allowed: bool,
}

/// One statement's verdict.
#[derive(Debug)]
struct Verdict {
    decision: Decision,
    /// Ends or marks a transaction (`COMMIT`, `ROLLBACK`, savepoints): among several
    /// statements it does not decide the target.
    neutral: bool,
}

impl From<Decision> for Verdict {
    fn from(decision: Decision) -> Self {
        Verdict {
            decision,
            neutral: false,
        }
    }
}

/// Parse `sql` and decide for all of its statements.
pub(super) fn classify_text(sql: &str, functions: &FunctionLists) -> Natural {
    let parsed = match parse(sql) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return Natural {
                decision: Decision::primary(reason),
                replica_override_allowed: false,
            }
        }
    };
    let statements = parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| raw.stmt.as_ref()?.node.as_ref());
    let verdicts: Vec<Verdict> = statements.map(|node| statement(node, functions)).collect();
    let replica_override_allowed = verdicts
        .iter()
        .all(|v| v.neutral || replica_overridable(&v.decision));
    let decision = match verdicts.as_slice() {
        [] => Decision::primary(Reason::Empty),
        [one] => one.decision.clone(),
        several => combine(several),
    };
    Natural {
        decision,
        replica_override_allowed,
    }
}

/// Several statements: a replica only if each non-neutral one may go there.
fn combine(verdicts: &[Verdict]) -> Decision {
    let tx = verdicts
        .iter()
        .rev()
        .map(|v| v.decision.tx)
        .find(|tx| *tx != TxEffect::None);
    let tx = tx.unwrap_or(TxEffect::None);
    let mut deciding = verdicts.iter().filter(|v| !v.neutral).map(|v| &v.decision);
    let Some(first) = deciding.clone().next() else {
        return Decision::primary(Reason::TransactionControl).with_tx(tx);
    };
    match deciding.find(|d| d.target == Target::Primary) {
        Some(d) => {
            Decision::primary(Reason::MultiStatement(Box::new(d.reason.clone()))).with_tx(tx)
        }
        None => Decision::replica(first.reason.clone()).with_tx(tx),
    }
}

/// Whether a `replica` override may move this statement: it is a read already, or it went
/// to the primary only for want of knowledge (an unknown function, a plain `BEGIN`).
fn replica_overridable(decision: &Decision) -> bool {
    decision.target == Target::Replica
        || matches!(decision.reason, Reason::UnknownFunction(_) | Reason::Empty)
        || (decision.reason == Reason::TransactionControl
            && decision.tx == TxEffect::Begin { read_only: false })
}

/// `pg_query::parse`, with its failures mapped to reasons. It is called under
/// `catch_unwind`: the crate indexes into the tree while summarising it, and a bug there
/// must cost one statement a trip to the primary, not the router its session.
fn parse(sql: &str) -> Result<pg_query::ParseResult, Reason> {
    match catch_unwind(AssertUnwindSafe(|| pg_query::parse(sql, 0))) {
        Ok(Ok(parsed)) => Ok(parsed),
        Ok(Err(pg_query::Error::Decode(_))) => Err(Reason::TooComplex),
        Ok(Err(pg_query::Error::Parse(msg))) if msg.contains("stack depth limit exceeded") => {
            Err(Reason::TooComplex)
        }
        Ok(Err(_)) | Err(_) => Err(Reason::ParseError),
    }
}

fn statement(node: &NodeEnum, functions: &FunctionLists) -> Verdict {
    let primary = |reason| Decision::primary(reason).into();
    match node {
        NodeEnum::SelectStmt(select) => read(select, functions).into(),
        NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::MergeStmt(_)
        | NodeEnum::TruncateStmt(_) => primary(Reason::Write),
        // With or without ANALYZE: the plan of a read reads; of anything else, play safe.
        NodeEnum::ExplainStmt(explain) => match inner(&explain.query) {
            Some(query) => statement(query, functions)
                .decision
                .with_tx(TxEffect::None)
                .into(),
            None => primary(Reason::ParseError),
        },
        NodeEnum::CopyStmt(copy) => self::copy(copy, functions).into(),
        NodeEnum::VariableShowStmt(_) => Decision::replica(Reason::Show).into(),
        NodeEnum::VariableSetStmt(set) => self::set(set).into(),
        NodeEnum::DiscardStmt(_) | NodeEnum::ConstraintsSetStmt(_) => primary(Reason::SessionState),
        NodeEnum::TransactionStmt(t) => transaction(t),
        NodeEnum::ListenStmt(_) | NodeEnum::UnlistenStmt(_) => primary(Reason::Listen),
        NodeEnum::NotifyStmt(_) => primary(Reason::Notify),
        NodeEnum::LockStmt(_) => primary(Reason::Lock),
        NodeEnum::CallStmt(_) | NodeEnum::DoStmt(_) => primary(Reason::Procedure),
        NodeEnum::PrepareStmt(_) | NodeEnum::ExecuteStmt(_) | NodeEnum::DeallocateStmt(_) => {
            primary(Reason::Prepared)
        }
        NodeEnum::DeclareCursorStmt(_) | NodeEnum::FetchStmt(_) | NodeEnum::ClosePortalStmt(_) => {
            primary(Reason::Cursor)
        }
        NodeEnum::VacuumStmt(_)
        | NodeEnum::ClusterStmt(_)
        | NodeEnum::ReindexStmt(_)
        | NodeEnum::CheckPointStmt(_) => primary(Reason::Maintenance),
        // CREATE/ALTER/DROP of every kind, GRANT, COMMENT, CREATE TABLE AS, REFRESH …
        _ => primary(Reason::Ddl),
    }
}

fn inner(node: &Option<Box<Node>>) -> Option<&NodeEnum> {
    node.as_ref()?.node.as_ref()
}

/// A `SELECT`, `VALUES` or `TABLE`: a replica unless something in it writes or locks.
fn read(select: &protobuf::SelectStmt, functions: &FunctionLists) -> Decision {
    let facts = walk::facts(select);
    let reason = if facts.data_modifying {
        Reason::WritingCte
    } else if facts.locking {
        Reason::LockingClause
    } else if facts.into {
        Reason::SelectInto
    } else {
        match facts
            .functions
            .iter()
            .try_for_each(|name| functions.check(name))
        {
            Ok(()) => return Decision::replica(Reason::Read),
            Err(reason) => reason,
        }
    };
    Decision::primary(reason)
}

/// `COPY … TO STDOUT` reads (if its query does); `FROM`, files and programs need the primary.
fn copy(copy: &CopyStmt, functions: &FunctionLists) -> Decision {
    if copy.is_from {
        return Decision::primary(Reason::CopyFrom);
    }
    if copy.is_program || !copy.filename.is_empty() {
        return Decision::primary(Reason::CopyToFile);
    }
    match inner(&copy.query).map(|query| statement(query, functions).decision) {
        Some(decision) if decision.target == Target::Primary => decision,
        _ => Decision::replica(Reason::CopyTo),
    }
}

/// `SET TRANSACTION READ ONLY` may go to a replica; any other `SET` or `RESET` is session
/// state, for the primary (the session replays it wherever it goes next).
fn set(set: &VariableSetStmt) -> Decision {
    if set.name != "TRANSACTION" {
        return Decision::primary(Reason::SessionState);
    }
    match transaction_options(&set.args) {
        (Some(true), true) => {
            Decision::primary(Reason::Serializable).with_tx(TxEffect::SetReadOnly)
        }
        (Some(true), false) => {
            Decision::replica(Reason::ReadOnlyTransaction).with_tx(TxEffect::SetReadOnly)
        }
        _ => Decision::primary(Reason::TransactionControl),
    }
}

fn transaction(t: &protobuf::TransactionStmt) -> Verdict {
    let control = |tx| Decision::primary(Reason::TransactionControl).with_tx(tx);
    let neutral = |tx| Verdict {
        decision: control(tx),
        neutral: true,
    };
    match TransactionStmtKind::try_from(t.kind) {
        Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
            let (read_only, serializable) = transaction_options(&t.options);
            let read_only = read_only == Some(true);
            let decision = match (read_only, serializable) {
                (true, true) => Decision::primary(Reason::Serializable),
                (true, false) => Decision::replica(Reason::ReadOnlyTransaction),
                (false, _) => Decision::primary(Reason::TransactionControl),
            };
            decision.with_tx(TxEffect::Begin { read_only }).into()
        }
        Ok(TransactionStmtKind::TransStmtCommit) => neutral(TxEffect::Commit),
        Ok(TransactionStmtKind::TransStmtRollback) => neutral(TxEffect::Rollback),
        Ok(
            TransactionStmtKind::TransStmtSavepoint
            | TransactionStmtKind::TransStmtRelease
            | TransactionStmtKind::TransStmtRollbackTo,
        ) => neutral(TxEffect::None),
        // PREPARE TRANSACTION ends the session's transaction like a commit.
        Ok(TransactionStmtKind::TransStmtPrepare) => control(TxEffect::Commit).into(),
        _ => control(TxEffect::None).into(),
    }
}

/// From `BEGIN`/`SET TRANSACTION` options: the last `READ ONLY`/`READ WRITE` given (as
/// Postgres applies them in order), and whether the isolation level is serializable.
fn transaction_options(options: &[Node]) -> (Option<bool>, bool) {
    let mut read_only = None;
    let mut serializable = false;
    for option in options {
        let Some(NodeEnum::DefElem(def)) = option.node.as_ref() else {
            continue;
        };
        let value = def.arg.as_ref().and_then(|arg| match arg.node.as_ref() {
            Some(NodeEnum::AConst(c)) => c.val.as_ref(),
            _ => None,
        });
        match (def.defname.as_str(), value) {
            ("transaction_read_only", Some(a_const::Val::Ival(i))) => read_only = Some(i.ival != 0),
            ("transaction_read_only", Some(a_const::Val::Boolval(b))) => {
                read_only = Some(b.boolval)
            }
            ("transaction_isolation", Some(a_const::Val::Sval(s))) => {
                serializable = s.sval.eq_ignore_ascii_case("serializable")
            }
            _ => {}
        }
    }
    (read_only, serializable)
}
