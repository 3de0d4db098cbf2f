//! The cache key's scan: literals out, everything else as it was, and the text kept whole
//! wherever the scan could cut it otherwise than PostgreSQL's lexer.

#![allow(clippy::unwrap_used)]

use super::{cache_key, with_other_literals};
use crate::classify::table_tests::table_classifier;

fn key(sql: &str) -> String {
    cache_key(sql).into_owned()
}

#[test]
fn literals_are_taken_out() {
    assert_eq!(
        key("SELECT abalance FROM pgbench_accounts WHERE aid = 4711"),
        "SELECT abalance FROM pgbench_accounts WHERE aid = 0"
    );
    assert_eq!(
        key("select * from t where a = 'x''y' and b in (1.5, .25, 3e-7, 0x1F, 1.)"),
        "select * from t where a = '' and b in (0, .0, 0, 0, 0)"
    );
    assert_eq!(
        key("SELECT E'abc', B'0101', X'1F', N'n', date '2020-01-01'"),
        "SELECT E'', B'', X'', N'', date ''"
    );
    assert_eq!(
        key("SELECT -1, t1.c2, \"col 1\" FROM t1"),
        "SELECT -0, t1.c2, \"col 1\" FROM t1"
    );
    // One statement or several, the literals of each.
    assert_eq!(
        key("BEGIN READ ONLY; SELECT 1 FROM t WHERE id = 9; COMMIT"),
        "BEGIN READ ONLY; SELECT 0 FROM t WHERE id = 0; COMMIT"
    );
}

#[test]
fn what_is_not_a_literal_stays() {
    for sql in [
        "SELECT $1::int, a$b FROM t WHERE x = $2",
        "SELECT 1 -- it's a comment with 'quotes' and 42\n",
        "SELECT /* nested /* 'x' */ 7 */ a FROM t",
        "SELECT $$it's 5$$, $tag$ 'x' $$ $tag$",
        "SELECT \"it's\" FROM \"t\"\"2\"",
        "SELECT a FROM t /* switchyard: replica */",
    ] {
        let k = key(sql);
        // Comments, parameters, identifiers and dollar quotes are copied as they are.
        for part in [
            "-- it's a comment with 'quotes' and 42",
            "/* nested /* 'x' */ 7 */",
            "$$it's 5$$",
            "$tag$ 'x' $$ $tag$",
            "\"it's\"",
            "\"t\"\"2\"",
            "/* switchyard: replica */",
            "$1::int",
            "a$b",
        ] {
            if sql.contains(part) {
                assert!(k.contains(part), "{sql:?} -> {k:?} lost {part:?}");
            }
        }
    }
}

#[test]
fn unsure_texts_are_their_own_key() {
    for sql in [
        "SELECT 1a",
        "SELECT 1..2",
        "SELECT 1_000",
        "SELECT 0x",
        "SELECT 1e",
        "SELECT $1a",
        "SELECT 'open",
        "SELECT \"open",
        "SELECT /* open",
        "SELECT $x$ open",
        "SELECT $ 1",
        "SELECT E'\\u00' ",
        "SELECT U&'d\\0061t'",
        "COPY t TO '/tmp/x'",
        "SELECT 1; copy t to ''",
        "SELECT 'a\0b'",
    ] {
        assert_eq!(key(sql), sql, "{sql:?}");
        assert_eq!(with_other_literals(sql), None, "{sql:?}");
    }
}

#[test]
fn texts_that_share_a_key_share_a_decision() {
    let c = table_classifier();
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4711",
        "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 3",
        "SELECT nextval('s')",
        "SELECT * FROM t WHERE a = 'q' FOR UPDATE",
        "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; SELECT 1 FROM t WHERE x = 2",
        "SELECT 'a' /* switchyard: primary */",
        "EXPLAIN (ANALYZE true) SELECT 1 FROM t WHERE a > 0.5",
    ] {
        let other = with_other_literals(sql).unwrap_or_else(|| panic!("{sql:?}"));
        assert_ne!(other, sql);
        assert_eq!(key(&other), key(sql));
        let (a, b) = (c.analyse(sql), c.analyse(&other));
        assert_eq!((a.target, a.tx), (b.target, b.tx), "{sql:?} vs {other:?}");
    }
}

#[test]
fn the_cache_serves_every_value_of_a_statement() {
    let c = table_classifier();
    for aid in 0..100 {
        c.classify(&format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {aid}"
        ));
    }
    let stats = c.cache_stats();
    assert_eq!((stats.misses, stats.hits, stats.entries), (1, 99, 1));
}

#[test]
fn a_key_is_its_own_key() {
    for sql in [
        "SELECT a FROM t WHERE b = 'x' AND c > 1.5e3 AND d = E'y' AND e = .5",
        "SELECT $1, 0, ''",
        "SELECT 1a",
    ] {
        let k = key(sql);
        assert_eq!(key(&k), k, "{sql:?}");
    }
}
