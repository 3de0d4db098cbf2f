//! Tests of the prepared-statement registry: sharing, retiring after DDL, what may be closed.

use super::*;

#[test]
fn same_text_and_types_share_a_global_name() {
    let reg = StatementRegistry::default();
    let a = reg.get(b"select $1", &[0, 1, 0, 0, 0, 23]);
    let b = reg.get(b"select $1", &[0, 1, 0, 0, 0, 23]);
    let c = reg.get(b"select $1", &[0, 0]);
    let d = reg.get(b"select $2", &[0, 1, 0, 0, 0, 23]);
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id);
    assert_ne!(a.id, d.id);
    assert_eq!(&*a.name, format!("sy_{}", a.id).as_bytes());
    assert_eq!(reg.len(), 3);
}

#[test]
fn retired_statements_are_registered_anew_and_closable_once_dropped() {
    let reg = StatementRegistry::default();
    let old = reg.get(b"select * from t", &[0, 0]);
    let other = reg.get(b"select 1", &[0, 0]);
    let on_server: HashSet<u64> = [old.id, other.id].into();
    let other_id = other.id;
    drop(other);
    reg.retire_all();
    let new = reg.get(b"select * from t", &[0, 0]);
    assert_ne!(old.id, new.id);
    assert_eq!(reg.len(), 1);
    // `old` is still held by a client: only the other one may be closed.
    assert_eq!(closable(&on_server), vec![other_id]);
    let before = dropped();
    drop(old);
    assert!(dropped() > before);
    assert_eq!(closable(&on_server).len(), 2);
    assert!(closable(&[new.id].into()).is_empty());
    assert!(is_stale("0A000", "cached plan must not change result type"));
    assert!(is_stale("XX000", "cache lookup failed for type 30866"));
    assert!(!is_stale("0A000", "cannot insert into view"));
    assert!(!is_stale("22P02", "invalid input syntax for type integer"));
}

#[test]
fn ddl_tags_are_recognised_and_resolved_types_are_kept() {
    for tag in [
        &b"ALTER TABLE\0"[..],
        b"CREATE TYPE\0",
        b"DROP TYPE\0",
        b"CREATE INDEX\0",
    ] {
        assert!(is_ddl(tag), "{}", String::from_utf8_lossy(tag));
    }
    for tag in [
        &b"SELECT 1\0"[..],
        b"DELETE 3\0",
        b"COPY 2\0",
        b"COMMIT\0",
        b"DISCARD ALL\0",
    ] {
        assert!(!is_ddl(tag), "{}", String::from_utf8_lossy(tag));
    }
    let reg = StatementRegistry::default();
    let def = reg.get(b"insert into t values ($1)", &[0, 0]);
    assert_eq!(def.types_to_send(), &[0, 0]);
    def.resolve(&[0, 1, 0, 0, 4, 58]);
    def.resolve(&[0, 1, 0, 0, 0, 23]);
    assert_eq!(def.types_to_send(), &[0, 1, 0, 0, 4, 58]);
}

#[test]
fn client_names_map_to_statements() {
    let reg = StatementRegistry::default();
    let mut mine = ClientStatements::default();
    mine.insert(b"s0", reg.get(b"listen x", &[0, 0]));
    assert_eq!(mine.get(b"s0").map(|d| d.effects.pin), Some(Some("LISTEN")));
    assert!(mine.get(b"").is_none());
    mine.remove(b"s0");
    assert!(mine.is_empty());
}
