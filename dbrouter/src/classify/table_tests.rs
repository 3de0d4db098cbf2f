//! The routing table: statements as applications send them, each with the target, reason and
//! transaction effect the classifier must give. The settings list `app.price_of` and
//! `safe_fn` as read-only and `audit_event` as a write function.

use switchyard_config::{ReplicaFallback, RoutingSettings};

use super::{Classifier, Decision, Reason, Target, TxEffect};

const P: Target = Target::Primary;
const R: Target = Target::Replica;
const NONE: TxEffect = TxEffect::None;
const BEGIN_RW: TxEffect = TxEffect::Begin { read_only: false };
const BEGIN_RO: TxEffect = TxEffect::Begin { read_only: true };

/// Settings with a few user functions listed.
pub(super) fn settings(read_only: &[&str], write: &[&str]) -> RoutingSettings {
    RoutingSettings {
        read_write_split: true,
        max_replica_lag_bytes: None,
        max_replica_lag: None,
        fallback: ReplicaFallback::Primary,
        read_your_writes: false,
        read_only_functions: read_only.iter().map(|s| s.to_string()).collect(),
        write_functions: write.iter().map(|s| s.to_string()).collect(),
    }
}

pub(super) fn table_classifier() -> Classifier {
    Classifier::new(&settings(&["app.price_of", "safe_fn"], &["audit_event"]))
}

fn unknown(name: &str) -> Reason {
    Reason::UnknownFunction(name.into())
}

fn writes(name: &str) -> Reason {
    Reason::WriteFunction(name.into())
}

fn multi(first: Reason) -> Reason {
    Reason::MultiStatement(Box::new(first))
}

/// `(sql, target, reason, tx)`.
pub(super) fn table() -> Vec<(&'static str, Target, Reason, TxEffect)> {
    use Reason::*;
    vec![
        // === reads ===
        ("SELECT * FROM users WHERE id = $1", R, Read, NONE),
        ("select id, name from users order by name limit 10 offset 20", R, Read, NONE),
        ("SELECT status, count(*), max(created_at) FROM orders GROUP BY status HAVING count(*) > 1", R, Read, NONE),
        ("SELECT u.*, o.total FROM users u JOIN orders o ON o.user_id = u.id", R, Read, NONE),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM s WHERE at > now() - interval '1 day')", R, Read, NONE),
        ("WITH recent AS (SELECT * FROM orders WHERE at > now()) SELECT * FROM recent", R, Read, NONE),
        ("WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM r WHERE n < 9) SELECT * FROM r", R, Read, NONE),
        ("SELECT lower(email), upper(name), length(bio), substr(bio, 1, 10) FROM users", R, Read, NONE),
        ("SELECT coalesce(a, b), greatest(a, b), least(a, b), nullif(a, 0) FROM t", R, Read, NONE),
        ("SELECT date_trunc('day', at), to_char(now(), 'YYYY'), abs(x), round(y, 2) FROM t", R, Read, NONE),
        ("SELECT jsonb_build_object('a', 1), data->>'x', jsonb_agg(data) FROM t GROUP BY 2", R, Read, NONE),
        ("SELECT extract(epoch FROM now()), current_timestamp, current_user, x::text", R, Read, NONE),
        ("SELECT pg_is_in_recovery(), version(), current_setting('server_version')", R, Read, NONE),
        ("SELECT * FROM generate_series(1, 10) AS g(i)", R, Read, NONE),
        ("SELECT string_agg(name, ',') FILTER (WHERE active), array_agg(id) FROM users", R, Read, NONE),
        ("SELECT row_number() OVER (PARTITION BY a ORDER BY b), sum(c) OVER w FROM t WINDOW w AS ()", R, Read, NONE),
        ("SELECT random(), gen_random_uuid()", R, Read, NONE),
        ("VALUES (1, 'a'), (2, 'b')", R, Read, NONE),
        ("TABLE users", R, Read, NONE),
        ("SELECT 1 UNION SELECT 2 EXCEPT SELECT 3", R, Read, NONE),
        ("SELECT EXISTS (SELECT 1 FROM users WHERE id = 1)", R, Read, NONE),
        ("SELECT CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END FROM t WHERE tags @> ARRAY['a']", R, Read, NONE),
        ("SELECT 1", R, Read, NONE),
        ("  select   42 ;", R, Read, NONE),
        ("SELECT app.price_of(1)", R, Read, NONE),
        ("SELECT safe_fn(x) FROM t", R, Read, NONE),
        ("SELECT pg_catalog.now(), pg_sleep(0)", R, Read, NONE),
        ("/* app:web */ SELECT * FROM t", R, Read, NONE),
        ("-- leading comment\nSELECT * FROM t", R, Read, NONE),
        ("SELECT '/* switchyard: primary */' AS s", R, Read, NONE),
        // === writes ===
        ("INSERT INTO t (a) VALUES (1)", P, Write, NONE),
        ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a RETURNING id", P, Write, NONE),
        ("UPDATE t SET a = a + 1 WHERE id = $1", P, Write, NONE),
        ("DELETE FROM t WHERE id = 1", P, Write, NONE),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", P, Write, NONE),
        ("TRUNCATE t", P, Write, NONE),
        ("WITH moved AS (DELETE FROM queue WHERE id = 1 RETURNING *) SELECT * FROM moved", P, WritingCte, NONE),
        ("WITH ins AS (INSERT INTO t (a) VALUES (1) RETURNING id) SELECT id FROM ins", P, WritingCte, NONE),
        ("WITH r AS (SELECT 1), u AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM u", P, WritingCte, NONE),
        ("SELECT * FROM t WHERE id = 1 FOR UPDATE", P, LockingClause, NONE),
        ("SELECT * FROM t FOR SHARE", P, LockingClause, NONE),
        ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", P, LockingClause, NONE),
        ("SELECT * FROM t FOR KEY SHARE NOWAIT", P, LockingClause, NONE),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", P, LockingClause, NONE),
        ("SELECT * INTO new_t FROM t", P, SelectInto, NONE),
        ("CREATE TABLE t2 AS SELECT * FROM t", P, Ddl, NONE),
        // === functions ===
        ("SELECT nextval('s')", P, Sequence, NONE),
        ("SELECT setval('s', 10)", P, Sequence, NONE),
        ("SELECT currval('s')", P, Sequence, NONE),
        ("SELECT id, nextval('s') FROM t", P, Sequence, NONE),
        ("SELECT CASE WHEN x THEN nextval('s') END FROM t", P, Sequence, NONE),
        ("SELECT * FROM t LIMIT (SELECT nextval('s'))", P, Sequence, NONE),
        ("VALUES (pg_catalog.nextval('s'))", P, Sequence, NONE),
        ("SELECT my_func(1)", P, unknown("my_func"), NONE),
        ("SELECT other.price_of(1)", P, unknown("other.price_of"), NONE),
        ("SELECT price_of(1)", P, unknown("price_of"), NONE),
        ("SELECT * FROM t WHERE lower(a) = my_func(b)", P, unknown("my_func"), NONE),
        ("SELECT audit_event('login')", P, writes("audit_event"), NONE),
        ("SELECT pg_advisory_lock(1)", P, AdvisoryLock, NONE),
        ("SELECT pg_try_advisory_xact_lock(1)", P, AdvisoryLock, NONE),
        ("SELECT set_config('a.b', 'c', false)", P, writes("set_config"), NONE),
        ("SELECT pg_notify('jobs', 'x')", P, writes("pg_notify"), NONE),
        ("SELECT txid_current()", P, writes("txid_current"), NONE),
        ("SELECT pg_current_wal_lsn()", P, writes("pg_current_wal_lsn"), NONE),
        ("SELECT lo_import('/tmp/x')", P, writes("lo_import"), NONE),
        // === DDL ===
        ("CREATE TABLE t (id int)", P, Ddl, NONE),
        ("ALTER TABLE t ADD COLUMN b int", P, Ddl, NONE),
        ("DROP TABLE t", P, Ddl, NONE),
        ("CREATE INDEX CONCURRENTLY i ON t (a)", P, Ddl, NONE),
        ("GRANT SELECT ON t TO app", P, Ddl, NONE),
        ("CREATE MATERIALIZED VIEW mv AS SELECT 1", P, Ddl, NONE),
        ("REFRESH MATERIALIZED VIEW mv", P, Ddl, NONE),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$", P, Ddl, NONE),
        // === transactions ===
        ("BEGIN", P, TransactionControl, BEGIN_RW),
        ("BEGIN READ WRITE", P, TransactionControl, BEGIN_RW),
        ("BEGIN READ ONLY", R, ReadOnlyTransaction, BEGIN_RO),
        ("START TRANSACTION READ ONLY", R, ReadOnlyTransaction, BEGIN_RO),
        ("begin isolation level repeatable read, read only", R, ReadOnlyTransaction, BEGIN_RO),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY", P, Serializable, BEGIN_RO),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", P, TransactionControl, BEGIN_RW),
        ("SET TRANSACTION READ ONLY", R, ReadOnlyTransaction, TxEffect::SetReadOnly),
        ("COMMIT", P, TransactionControl, TxEffect::Commit),
        ("END", P, TransactionControl, TxEffect::Commit),
        ("ROLLBACK", P, TransactionControl, TxEffect::Rollback),
        ("SAVEPOINT a", P, TransactionControl, NONE),
        ("ROLLBACK TO SAVEPOINT a", P, TransactionControl, NONE),
        ("PREPARE TRANSACTION 'x'", P, TransactionControl, TxEffect::Commit),
        // === session state and SHOW ===
        ("SET search_path TO app", P, SessionState, NONE),
        ("SET LOCAL statement_timeout = '5s'", P, SessionState, NONE),
        ("SET switchyard.route = replica", P, SessionState, NONE),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", P, SessionState, NONE),
        ("RESET ALL", P, SessionState, NONE),
        ("DISCARD ALL", P, SessionState, NONE),
        ("SHOW search_path", R, Show, NONE),
        ("SHOW TRANSACTION ISOLATION LEVEL", R, Show, NONE),
        // Found by the `classify` fuzz target: no setting names, so parse errors.
        ("SHOW sdaY..Bh", P, ParseError, NONE),
        ("SHOW a.", P, ParseError, NONE),
        ("SHOW select", P, ParseError, NONE),
        // === EXPLAIN ===
        ("EXPLAIN SELECT * FROM t", R, Read, NONE),
        ("EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t", R, Read, NONE),
        ("EXPLAIN ANALYZE DELETE FROM t WHERE id = 1", P, Write, NONE),
        ("EXPLAIN UPDATE t SET a = 1", P, Write, NONE),
        ("EXPLAIN ANALYZE SELECT nextval('s')", P, Sequence, NONE),
        // === COPY ===
        ("COPY t TO STDOUT", R, CopyTo, NONE),
        ("COPY (SELECT a, b FROM t WHERE x) TO STDOUT WITH (FORMAT csv)", R, CopyTo, NONE),
        ("COPY (SELECT nextval('s')) TO STDOUT", P, Sequence, NONE),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", P, Write, NONE),
        ("COPY t FROM STDIN", P, CopyFrom, NONE),
        ("COPY t TO '/tmp/t.csv'", P, CopyToFile, NONE),
        ("COPY t TO PROGRAM 'gzip > /tmp/t.gz'", P, CopyToFile, NONE),
        // === other utility statements ===
        ("LISTEN jobs", P, Listen, NONE),
        ("UNLISTEN *", P, Listen, NONE),
        ("NOTIFY jobs, 'x'", P, Notify, NONE),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", P, Lock, NONE),
        ("CALL do_work(1)", P, Procedure, NONE),
        ("DO $$ BEGIN PERFORM 1; END $$", P, Procedure, NONE),
        ("PREPARE q AS SELECT * FROM t WHERE id = $1", P, Prepared, NONE),
        ("EXECUTE q(1)", P, Prepared, NONE),
        ("DEALLOCATE q", P, Prepared, NONE),
        ("DECLARE c CURSOR FOR SELECT * FROM t", P, Cursor, NONE),
        ("FETCH 10 FROM c", P, Cursor, NONE),
        ("VACUUM ANALYZE t", P, Maintenance, NONE),
        ("ANALYZE t", P, Maintenance, NONE),
        ("CHECKPOINT", P, Maintenance, NONE),
        // === several statements ===
        ("SELECT 1; SELECT 2", R, Read, NONE),
        ("SHOW work_mem; SELECT * FROM t;", R, Show, NONE),
        ("SELECT * FROM t; INSERT INTO t VALUES (1)", P, multi(Write), NONE),
        ("INSERT INTO t VALUES (1); SELECT * FROM t", P, multi(Write), NONE),
        ("SELECT 1; SELECT nextval('s')", P, multi(Sequence), NONE),
        ("BEGIN READ ONLY; SELECT * FROM t; COMMIT", R, ReadOnlyTransaction, TxEffect::Commit),
        ("BEGIN; INSERT INTO t VALUES (1); COMMIT;", P, multi(TransactionControl), TxEffect::Commit),
        ("SELECT 1; BEGIN", P, multi(TransactionControl), BEGIN_RW),
        ("COMMIT; ROLLBACK", P, TransactionControl, TxEffect::Rollback),
        // === overrides ===
        ("SELECT * FROM t /* switchyard: primary */", P, Override, NONE),
        ("/* switchyard:replica */ SELECT my_func(1)", R, Override, NONE),
        ("SELECT my_func(1) -- Switchyard : Replica", R, Override, NONE),
        ("SELECT 1; SELECT my_func(2) /* switchyard: replica */", R, Override, NONE),
        ("/* switchyard: replica */ BEGIN", R, Override, BEGIN_RW),
        ("/* switchyard: primary */ BEGIN READ ONLY", P, Override, BEGIN_RO),
        ("INSERT INTO t VALUES (1) /* switchyard: replica */", P, Write, NONE),
        ("SELECT * FROM t FOR UPDATE /* switchyard: replica */", P, LockingClause, NONE),
        ("/* switchyard: replica */ SELECT nextval('s')", P, Sequence, NONE),
        ("SELECT 1; DELETE FROM t /* switchyard: replica */", P, multi(Write), NONE),
        // === not SQL ===
        ("SELEKT * FROM t", P, ParseError, NONE),
        ("SELECT * FROM", P, ParseError, NONE),
        ("SELECT 1\0", P, ParseError, NONE),
        ("SELECT 'unterminated", P, ParseError, NONE),
        ("", P, Empty, NONE),
        ("   \n\t", P, Empty, NONE),
        ("-- only a comment", P, Empty, NONE),
        (";", P, Empty, NONE),
    ]
}

#[test]
fn routing_table() {
    let classifier = table_classifier();
    let rows = table();
    assert!(rows.len() >= 70, "only {} statements", rows.len());
    let mut wrong = Vec::new();
    for (sql, target, reason, tx) in rows {
        let want = Decision { target, reason, tx };
        let got = classifier.classify(sql);
        if got != want {
            wrong.push(format!("{sql:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} misrouted:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
