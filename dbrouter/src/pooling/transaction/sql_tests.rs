//! Tests of the SQL inspector: what it must see, and what it must not be fooled by.

use super::*;

fn ops(sql: &str) -> Vec<ParamOp> {
    inspect(sql.as_bytes()).ops
}

fn pin(sql: &str) -> Option<&'static str> {
    inspect(sql.as_bytes()).pin
}

fn set(name: &str) -> ParamOp {
    ParamOp::Set(name.into())
}

#[test]
fn set_forms_name_their_parameter() {
    assert_eq!(ops("SET search_path TO a, b"), [set("search_path")]);
    assert_eq!(ops("set Application_Name = 'x'"), [set("application_name")]);
    assert_eq!(
        ops("SET SESSION statement_timeout = 5"),
        [set("statement_timeout")]
    );
    assert_eq!(ops("SET \"DateStyle\" TO ISO"), [set("datestyle")]);
    assert_eq!(ops("set myapp.user_id = '7'"), [set("myapp.user_id")]);
    assert_eq!(ops("SET TIME ZONE 'UTC'"), [set("timezone")]);
    assert_eq!(ops("SET SESSION TIME ZONE LOCAL"), [set("timezone")]);
    assert_eq!(ops("set schema 'app'"), [set("search_path")]);
    assert_eq!(ops("SET NAMES 'UTF8'"), [set("client_encoding")]);
    assert_eq!(ops("SET ROLE reporting"), [set("role")]);
    assert_eq!(ops("SET XML OPTION DOCUMENT"), [set("xmloption")]);
    assert_eq!(
        ops("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
        [
            set("default_transaction_isolation"),
            set("default_transaction_read_only"),
            set("default_transaction_deferrable")
        ]
    );
    assert_eq!(
        ops("select set_config('search_path', 'x', false), set_config($1, 'y', false)"),
        [set("search_path")]
    );
}

#[test]
fn transaction_scoped_sets_are_not_tracked() {
    for sql in [
        "SET LOCAL search_path TO a",
        "set transaction isolation level serializable",
        "SET CONSTRAINTS ALL DEFERRED",
        "UPDATE t SET x = 1",
        "ALTER ROLE app SET search_path = a",
        "select 'set search_path = a'",
        "-- set search_path = a\nselect 1",
        "/* set /* nested */ search_path = a */ select 1",
    ] {
        assert_eq!(ops(sql), [], "{sql}");
    }
}

#[test]
fn resets_and_discard() {
    assert_eq!(
        ops("RESET search_path"),
        [ParamOp::Reset("search_path".into())]
    );
    assert_eq!(ops("reset time zone"), [ParamOp::Reset("timezone".into())]);
    assert_eq!(ops("RESET ALL"), [ParamOp::ResetAll]);
    assert_eq!(ops("DISCARD ALL"), [ParamOp::ResetAll]);
    assert_eq!(ops("DISCARD PLANS"), []);
    assert_eq!(
        ops("begin; set search_path = a; reset application_name; commit"),
        [
            set("search_path"),
            ParamOp::Reset("application_name".into())
        ]
    );
}

#[test]
fn session_state_pins() {
    assert_eq!(pin("LISTEN jobs"), Some("LISTEN"));
    assert_eq!(pin("  listen \"Jobs\""), Some("LISTEN"));
    assert_eq!(
        pin("select pg_advisory_lock(1)"),
        Some("a session advisory lock")
    );
    assert_eq!(
        pin("SELECT pg_try_advisory_lock_shared(1, 2)"),
        Some("a session advisory lock")
    );
    assert_eq!(
        pin("create temp table t (x int)"),
        Some("a temporary table")
    );
    assert_eq!(
        pin("CREATE GLOBAL TEMPORARY TABLE t (x int)"),
        Some("a temporary table")
    );
    assert_eq!(
        pin("create or replace temp view v as select 1"),
        Some("a temporary table")
    );
    assert_eq!(pin("select 1 into temp t"), Some("a temporary table"));
    // The temporary schema named instead of TEMP (tokio-postgres's `types::domain` test).
    for sql in [
        "CREATE DOMAIN pg_temp.session_id AS bytea; CREATE TABLE pg_temp.foo (id int)",
        "create table \"pg_temp\".t (x int)",
        "CREATE TABLE PG_TEMP.t (x int)",
        "create view pg_temp_3.v as select 1",
        "select 1 into pg_temp.t",
    ] {
        assert_eq!(pin(sql), Some("a temporary table"), "{sql}");
    }
    assert_eq!(
        pin("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
        Some("a cursor WITH HOLD")
    );
    assert_eq!(pin("PREPARE p AS SELECT 1"), Some("PREPARE"));
    assert_eq!(
        pin("SET SESSION AUTHORIZATION bob"),
        Some("SET SESSION AUTHORIZATION")
    );
    assert_eq!(pin("begin; select 1; listen x; commit"), Some("LISTEN"));
}

#[test]
fn look_alikes_do_not_pin() {
    for sql in [
        "select pg_advisory_xact_lock(1)",
        "select 'listen'",
        "select \"listen\" from t",
        "select $$ listen x $$",
        "select $body$ create temp table t $body$",
        "create table temp (x int)",
        "DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
        "select E'\\' listen x'",
        "UNLISTEN *",
        "select $1::text",
        "update t set hold = 1",
        "select * from pg_temp.t",
        "create table pg_temporary.t (x int)",
        "create table t as select 'pg_temp.x'",
    ] {
        assert_eq!(pin(sql), None, "{sql}");
    }
}

#[test]
fn garbage_does_not_panic() {
    for sql in [
        &b"'unterminated"[..],
        b"\"unterminated",
        b"$tag$ unterminated",
        b"/* unterminated",
        b"$",
        b"E'\\",
        b"set",
        b"set session",
        b"reset",
        b"set_config(",
        b"\xff\xfe set \xff = 1",
        b"",
    ] {
        let _ = inspect(sql);
    }
    assert_eq!(ops("set \"\" = 1"), []);
    assert_eq!(ops("set \"a;b\" = 1"), []);
}

#[test]
fn random_text_never_panics() {
    use rand::Rng;
    const ALPHABET: &[u8] = b"$'\"-/*;\\ \nEesStTlLaAxX_.0(";
    let mut rng = rand::rng();
    for _ in 0..20_000 {
        let len = rng.random_range(0..24);
        let sql: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
            .collect();
        let _ = inspect(&sql);
    }
}

#[test]
fn ddl_is_seen_in_any_statement_of_a_string() {
    let ddl = |sql: &str| inspect(sql.as_bytes()).ddl;
    assert!(ddl("ALTER TABLE jobs ADD COLUMN note text"));
    assert!(ddl("BEGIN; drop type prio; COMMIT"));
    assert!(ddl("/* migration */ Create Type prio AS ENUM ('a')"));
    assert!(!ddl("SELECT * FROM jobs WHERE note = 'alter table'"));
    assert!(!ddl("select dropped, created from t"));
    assert!(!ddl("UPDATE t SET altered = true"));
}
