//! Classifier behaviour beyond the routing table: user function lists, the pre-check agreeing
//! with the parser, the cache, concurrency, and hostile input sizes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::table_tests::{settings, table, table_classifier};
use super::{precheck, Classifier, Decision, Limits, Reason, Target, TxEffect};

fn classifier(read_only: &[&str], write: &[&str]) -> Classifier {
    Classifier::new(&settings(read_only, write))
}

fn target(c: &Classifier, sql: &str) -> Target {
    c.classify(sql).target
}

#[test]
fn user_function_goes_to_the_primary_until_listed_read_only() {
    let sql = "SELECT price_of(id) FROM items";
    let plain = classifier(&[], &[]);
    assert_eq!(
        plain.classify(sql).reason,
        Reason::UnknownFunction("price_of".into())
    );
    assert_eq!(
        target(&classifier(&["price_of"], &[]), sql),
        Target::Replica
    );
    // An unqualified entry covers every schema; a qualified one only that schema.
    assert_eq!(
        target(&classifier(&["price_of"], &[]), "SELECT shop.price_of(1)"),
        Target::Replica
    );
    assert_eq!(
        target(
            &classifier(&["shop.price_of"], &[]),
            "SELECT shop.price_of(1)"
        ),
        Target::Replica
    );
    assert_eq!(
        target(
            &classifier(&["shop.price_of"], &[]),
            "SELECT other.price_of(1)"
        ),
        Target::Primary
    );
    assert_eq!(
        target(&classifier(&["shop.price_of"], &[]), sql),
        Target::Primary
    );
}

#[test]
fn user_lists_ignore_case_and_quotes() {
    let c = classifier(&[" Shop.Price_Of "], &["\"Audit\""]);
    assert_eq!(target(&c, "SELECT SHOP.PRICE_OF(1)"), Target::Replica);
    assert_eq!(
        target(&c, "SELECT \"Shop\".\"Price_Of\"(1)"),
        Target::Replica
    );
    assert_eq!(
        c.classify("SELECT Audit()").reason,
        Reason::WriteFunction("audit".into())
    );
}

#[test]
fn write_functions_win_over_read_lists_and_built_ins() {
    let c = classifier(&["audit"], &["audit", "lower", "shop.log_event"]);
    assert_eq!(
        c.classify("SELECT audit()").reason,
        Reason::WriteFunction("audit".into())
    );
    assert_eq!(
        c.classify("SELECT lower('A')").reason,
        Reason::WriteFunction("lower".into())
    );
    // A qualified write entry also catches the unqualified call (search_path may find it).
    assert_eq!(
        c.classify("SELECT log_event(1)").reason,
        Reason::WriteFunction("log_event".into())
    );
    assert_eq!(
        c.classify("SELECT shop.log_event(1)").reason,
        Reason::WriteFunction("shop.log_event".into())
    );
}

#[test]
fn a_read_only_entry_cannot_make_a_primary_only_built_in_a_read() {
    let c = classifier(&["nextval", "pg_advisory_lock"], &[]);
    assert_eq!(c.classify("SELECT nextval('s')").reason, Reason::Sequence);
    assert_eq!(
        c.classify("SELECT pg_advisory_lock(1)").reason,
        Reason::AdvisoryLock
    );
    // A user's own function that shares a built-in's name in another schema is theirs.
    assert_eq!(
        target(&classifier(&["app.nextval"], &[]), "SELECT app.nextval()"),
        Target::Replica
    );
}

#[test]
fn functions_hidden_anywhere_in_a_select_are_found() {
    let c = classifier(&[], &[]);
    for sql in [
        "SELECT * FROM t ORDER BY f(a)",
        "SELECT a FROM t GROUP BY f(a)",
        "SELECT * FROM t OFFSET f(1)",
        "SELECT count(*) FILTER (WHERE f(a)) FROM t",
        "SELECT sum(a) OVER (ORDER BY f(a)) FROM t",
        "SELECT * FROM t JOIN u ON f(t.a) = u.a",
        "SELECT * FROM f()",
        "SELECT * FROM ROWS FROM (f(), g())",
        "SELECT * FROM t, LATERAL (SELECT f(t.a)) x",
        "VALUES (1), (f(2))",
        "SELECT ARRAY[f(1)]",
        "SELECT (SELECT f(1))",
        "SELECT 1 WHERE 1 IN (SELECT f(1))",
        "SELECT f(1)::text COLLATE \"C\"",
        "SELECT * FROM t WHERE a BETWEEN f(1) AND 2",
        "SELECT DISTINCT ON (f(a)) a FROM t",
    ] {
        assert_eq!(
            c.classify(sql).reason,
            Reason::UnknownFunction("f".into()),
            "{sql}"
        );
    }
}

/// Every statement the pre-check decides, the parser decides the same way.
#[test]
fn the_pre_check_agrees_with_the_parser() {
    let c = table_classifier();
    let mut decided = 0;
    let extra = [
        "DELETE FROM t",
        "alter table t drop column a",
        "Set  x  =  1",
        "DISCARD PLANS",
    ];
    let texts = table().into_iter().map(|row| row.0).chain(extra);
    for sql in texts {
        if let Some(quick) = precheck::decide(sql) {
            decided += 1;
            assert_eq!(quick, c.analyse(sql), "{sql}");
        }
    }
    assert!(
        decided >= 30,
        "the pre-check decided only {decided} statements"
    );
}

#[test]
fn cache_counts_hits_and_misses_but_not_pre_checked_statements() {
    let c = table_classifier();
    let sql = "SELECT * FROM users WHERE id = $1";
    assert_eq!(c.classify(sql), Decision::replica(Reason::Read));
    assert_eq!(c.classify(sql), Decision::replica(Reason::Read));
    assert_eq!(c.classify(sql), Decision::replica(Reason::Read));
    c.classify("INSERT INTO t VALUES (1)");
    c.classify("SELECT 1");
    let stats = c.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 1, 1));
}

#[test]
fn a_bounded_cache_still_answers_correctly() {
    let limits = Limits {
        cache_entries: 40,
        cache_bytes: 1 << 20,
        ..Limits::default()
    };
    let c = Classifier::with_limits(&settings(&[], &[]), limits);
    for round in 0..3 {
        for i in 0..500 {
            let sql = format!("SELECT a FROM t WHERE id = {i} AND f({round})");
            assert_eq!(c.classify(&sql).reason, Reason::UnknownFunction("f".into()));
        }
    }
    assert!(c.cache_stats().entries <= 64, "{:?}", c.cache_stats());
}

#[test]
fn concurrent_sessions_get_the_same_answers() {
    let c = Arc::new(table_classifier());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    for (sql, target, reason, tx) in table() {
                        assert_eq!(c.classify(sql), Decision { target, reason, tx }, "{sql}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(c.cache_stats().hits > 1000);
}

/// Generous for an unoptimised build; the bench measures the real cost. It bounds the CPU
/// time of the classifying thread, not wall time, so a loaded machine does not fail it: what
/// it catches is work that grows much faster than the input (a quadratic scan, a deep parse).
const LARGE_INPUT_BUDGET: Duration = Duration::from_secs(10);

fn timed(c: &Classifier, sql: &str) -> Decision {
    let started = thread_cpu_time();
    let decision = c.classify(sql);
    let took = thread_cpu_time().saturating_sub(started);
    assert!(
        took < LARGE_INPUT_BUDGET,
        "{} bytes took {took:?} of CPU",
        sql.len()
    );
    decision
}

/// This thread's user + system time, from `/proc/thread-self/stat` (fields 14 and 15, in
/// clock ticks of 10 ms on Linux).
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn one_megabyte_in_list() -> String {
    let mut sql = String::from("SELECT * FROM t WHERE id IN (0");
    let mut i = 1;
    while sql.len() < 1 << 20 {
        sql.push_str(&format!(", {i}"));
        i += 1;
    }
    sql.push(')');
    sql
}

#[test]
fn a_one_megabyte_query_is_decided_without_parsing_and_not_cached() {
    let c = classifier(&[], &[]);
    let read = one_megabyte_in_list();
    assert_eq!(timed(&c, &read), Decision::primary(Reason::TooLarge));
    let write = format!("INSERT INTO t VALUES ('{}')", "x".repeat(1 << 20));
    assert_eq!(timed(&c, &write), Decision::primary(Reason::Write));
    assert_eq!(timed(&c, &read), Decision::primary(Reason::TooLarge));
    assert_eq!(c.cache_stats(), Default::default());
}

#[test]
fn a_one_megabyte_query_is_classified_correctly_when_the_limit_allows() {
    let limits = Limits {
        max_parse_len: 2 << 20,
        ..Limits::default()
    };
    let c = Classifier::with_limits(&settings(&[], &[]), limits);
    assert_eq!(
        timed(&c, &one_megabyte_in_list()),
        Decision::replica(Reason::Read)
    );
    // Its key, the values taken out, is within a cache shard's share of the 16 MiB
    // (`cache.rs` tests the texts that are not).
    assert_eq!(c.cache_stats().entries, 1);
    // 16 384 statements in 256 KiB: each statement costs more than a long IN list does.
    let many = "SELECT a FROM t;".repeat((256 << 10) / 16);
    assert_eq!(timed(&c, &many), Decision::replica(Reason::Read));
    let with_write = format!("{many} UPDATE t SET a = 1");
    assert_eq!(
        timed(&c, &with_write).reason,
        Reason::MultiStatement(Box::new(Reason::Write))
    );
}

/// Deep nesting must end in a decision for the primary, never a stack overflow.
#[test]
fn deeply_nested_input_goes_to_the_primary_without_overflowing() {
    let limits = Limits {
        max_parse_len: 2 << 20,
        ..Limits::default()
    };
    let c = Classifier::with_limits(&settings(&[], &[]), limits);
    let depth = 200_000;
    let parens = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
    let sums = format!("SELECT 1{}", "+1".repeat(depth));
    let calls = format!("SELECT {}1{}", "abs(".repeat(depth), ")".repeat(depth));
    let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(5_000), ")".repeat(5_000));
    for sql in [parens, sums, calls, subqueries] {
        let decision = timed(&c, &sql);
        assert_eq!(decision.target, Target::Primary, "{}", &sql[..40]);
        assert!(
            matches!(decision.reason, Reason::TooComplex | Reason::ParseError),
            "{:?} for {}",
            decision.reason,
            &sql[..40]
        );
    }
    // Moderate nesting is still classified for what it is.
    let nested = format!("SELECT {}1{}", "abs(".repeat(20), ")".repeat(20));
    assert_eq!(c.classify(&nested), Decision::replica(Reason::Read));
}

#[test]
fn reasons_have_distinct_labels_and_readable_text() {
    let reasons = [
        Reason::Read,
        Reason::Write,
        Reason::UnknownFunction("f".into()),
        Reason::MultiStatement(Box::new(Reason::Sequence)),
    ];
    let labels: std::collections::HashSet<_> = reasons.iter().map(Reason::label).collect();
    assert_eq!(labels.len(), reasons.len());
    assert_eq!(reasons[2].to_string(), "unknown_function f");
    assert_eq!(reasons[3].to_string(), "multi_statement (sequence)");
    let begin = table_classifier().classify("BEGIN READ ONLY");
    assert_eq!(begin.tx, TxEffect::Begin { read_only: true });
}
