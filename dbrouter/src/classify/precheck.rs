//! Decisions that need no parse: the text's first word settles them.
//!
//! An `INSERT` is a write whatever follows, so it goes to the primary without paying for the
//! grammar or for hashing the text into the cache; statements with literal values inlined
//! are all different and would only churn the cache. The pre-check is deliberately narrow:
//! - the text must be one statement with no comment that could hold an override: no `;`
//!   except trailing ones, no `switchyard` anywhere (a `;` inside a string literal just
//!   sends the text to the full parse);
//! - it must start with a keyword, not a comment, and the keyword alone must decide:
//!   `INSERT`/`UPDATE`/`DELETE`/`MERGE`/`TRUNCATE` (write), `CREATE`/`ALTER`/`DROP`/`GRANT`/
//!   `REVOKE`/`COMMENT` (DDL), `SET` (but not `SET TRANSACTION`)/`RESET`/`DISCARD` (session
//!   state); or the whole text must be one of a few exact forms: `BEGIN`, `START
//!   TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `ABORT` (with optional `WORK`/`TRANSACTION`),
//!   `SELECT <integer>`. (`SHOW <name>` is left to the parser: whether a word is a setting
//!   name or a reserved keyword, and `a..b` or `a.` no name at all, is the grammar's call,
//!   and a `SHOW` that does not parse must go to the primary like any other such text.)
//!
//! Everything else returns `None` and goes on to the cache and the parser. A text the
//! pre-check decides but that would not parse (`INSERT garbage`) still goes to the primary,
//! where it belongs, with the keyword's reason rather than [`Reason::ParseError`].

use super::{comment, Decision, Reason, TxEffect};

/// The decision for `sql` if its first word settles it.
pub(super) fn decide(sql: &str) -> Option<Decision> {
    let text = sql.trim_matches(is_space);
    if text.is_empty() {
        return Some(Decision::primary(Reason::Empty));
    }
    let text = text.trim_end_matches(|c| c == ';' || is_space(c));
    if text.contains(';') || comment::contains_marker(text) {
        return None;
    }
    let mut words = text.split(is_space).filter(|w| !w.is_empty());
    let first = words.next()?;
    let kw = |k: &str| first.eq_ignore_ascii_case(k);
    let only = |rest: &[&str]| is_exactly(text, first, rest);
    let decision = if ["INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE"]
        .iter()
        .any(|k| kw(k))
    {
        Decision::primary(Reason::Write)
    } else if ["CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "COMMENT"]
        .iter()
        .any(|k| kw(k))
    {
        Decision::primary(Reason::Ddl)
    } else if kw("RESET") || kw("DISCARD") {
        Decision::primary(Reason::SessionState)
    } else if kw("SET") {
        // `SET TRANSACTION READ ONLY` may go to a replica: parse it. `SET SESSION
        // CHARACTERISTICS AS TRANSACTION …` is session state like any other `SET`.
        match words.next() {
            Some(w) if w.eq_ignore_ascii_case("TRANSACTION") => return None,
            Some(_) => Decision::primary(Reason::SessionState),
            None => return None,
        }
    } else if (kw("BEGIN") && only(&["", "WORK", "TRANSACTION"]))
        || (kw("START") && only(&["TRANSACTION"]))
    {
        Decision::primary(Reason::TransactionControl).with_tx(TxEffect::Begin { read_only: false })
    } else if (kw("COMMIT") || kw("END")) && only(&["", "WORK", "TRANSACTION"]) {
        Decision::primary(Reason::TransactionControl).with_tx(TxEffect::Commit)
    } else if (kw("ROLLBACK") || kw("ABORT")) && only(&["", "WORK", "TRANSACTION"]) {
        Decision::primary(Reason::TransactionControl).with_tx(TxEffect::Rollback)
    } else if kw("SELECT") && single_word(&mut words, |w| w.bytes().all(|b| b.is_ascii_digit())) {
        Decision::replica(Reason::Read)
    } else {
        return None;
    };
    Some(decision)
}

/// Postgres's whitespace: space, tab, newline, carriage return, form feed.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Is `text` exactly `first` followed by one of `rest` (`""` meaning nothing), ignoring
/// case and the amount of whitespace?
fn is_exactly(text: &str, first: &str, rest: &[&str]) -> bool {
    let tail: Vec<&str> = text[first.len()..]
        .split(is_space)
        .filter(|w| !w.is_empty())
        .collect();
    match tail.as_slice() {
        [] => rest.contains(&""),
        [word] => rest
            .iter()
            .any(|r| !r.is_empty() && word.eq_ignore_ascii_case(r)),
        _ => false,
    }
}

/// Is the rest of the text one word satisfying `ok`?
fn single_word<'a>(words: &mut impl Iterator<Item = &'a str>, ok: impl Fn(&str) -> bool) -> bool {
    matches!((words.next(), words.next()), (Some(w), None) if ok(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_only_what_the_first_word_settles() {
        let primary = |r| Some(Decision::primary(r));
        let tx = |t| Some(Decision::primary(Reason::TransactionControl).with_tx(t));
        let cases = [
            ("  \n\t ", primary(Reason::Empty)),
            ("insert into t values (1);", primary(Reason::Write)),
            ("UPDATE t SET a = 1", primary(Reason::Write)),
            ("CREATE TABLE t (a int)", primary(Reason::Ddl)),
            ("SET search_path = app", primary(Reason::SessionState)),
            ("begin", tx(TxEffect::Begin { read_only: false })),
            (
                "START   TRANSACTION;",
                tx(TxEffect::Begin { read_only: false }),
            ),
            ("commit work", tx(TxEffect::Commit)),
            ("ROLLBACK", tx(TxEffect::Rollback)),
            ("select 1", Some(Decision::replica(Reason::Read))),
            // Left to the parser:
            ("SET TRANSACTION READ ONLY", None),
            ("BEGIN READ ONLY", None),
            ("ROLLBACK TO SAVEPOINT a", None),
            ("SELECT 1, nextval('s')", None),
            ("SELECT a FROM t", None),
            ("INSERT INTO t VALUES (1); BEGIN", None),
            ("INSERT INTO t VALUES (1) /* switchyard: primary */", None),
            ("/* c */ INSERT INTO t VALUES (1)", None),
            ("WITH x AS (DELETE FROM t) SELECT 1", None),
            ("SHOW TIME ZONE", None),
            // Found by the `classify` fuzz target: the pre-check sent these to a replica as
            // `SHOW`s, but they do not parse (the primary answers with the server's error).
            ("SHOW sdaY..Bh", None),
            ("SHOW search_path", None),
            ("INSERTX", None),
        ];
        for (sql, want) in cases {
            assert_eq!(decide(sql), want, "{sql}");
        }
    }
}
