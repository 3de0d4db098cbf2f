//! Tests of the expectation queue against the message sequences real servers send.

use super::*;
use crate::pooling::transaction::prepared::StatementRegistry;

fn stmt(text: &str) -> Arc<StatementDef> {
    StatementRegistry::default().get(text.as_bytes(), &[0, 0])
}

fn parse(swallow: bool, stmt: &Arc<StatementDef>, client: Option<&[u8]>) -> Entry {
    Entry::Parse {
        swallow,
        stmt: Some(stmt.clone()),
        client: client.map(Into::into),
    }
}

/// Feed server messages (`'E'` and `'Z'` included) and collect what each was.
fn feed(e: &mut Expect, tags: &[u8]) -> Vec<Seen> {
    tags.iter()
        .map(|&t| match t {
            b'Z' => {
                e.on_ready().expect("a ReadyForQuery was due");
                Seen::Forward
            }
            b'E' => {
                e.on_error();
                Seen::Forward
            }
            _ => e.on_message(t).expect("in sync"),
        })
        .collect()
}

#[test]
fn an_injected_parse_is_swallowed_and_the_batch_ends_at_sync() {
    let mut e = Expect::default();
    let s7 = stmt("select 7");
    assert!(e.push(parse(true, &s7, None)));
    assert!(e.preparing(s7.id));
    e.push(Entry::Bind(None));
    e.push(Entry::Execute);
    e.push(Entry::Sync);
    let seen = feed(&mut e, b"12DDCZ");
    assert!(matches!(
        &seen[0],
        Seen::Prepared { stmt: Some(s), swallow: true } if s.id == s7.id
    ));
    assert!(seen[1..].iter().all(|s| matches!(s, Seen::Forward)));
    assert!(e.is_empty() && !e.preparing(s7.id));
}

#[test]
fn synthetic_answers_wait_their_turn() {
    let mut e = Expect::default();
    e.push(Entry::Bind(None));
    e.push(Entry::Synthetic(b'3'));
    e.push(Entry::Sync);
    assert_eq!(e.take_synthetic(), None, "the BindComplete comes first");
    feed(&mut e, b"2");
    assert_eq!(e.take_synthetic(), Some(b'3'));
    feed(&mut e, b"Z");
    assert!(e.is_empty());
}

#[test]
fn an_extended_error_skips_to_sync_and_forgets_client_statements() {
    let mut e = Expect::default();
    e.push(Entry::Bind(None));
    let s3 = stmt("select 3");
    e.push(parse(false, &s3, Some(b"s1")));
    e.push(Entry::Execute);
    e.push(Entry::Sync);
    e.push(Entry::Simple);
    let (forget, internal) = e.on_error();
    assert_eq!(forget, vec![Box::from(&b"s1"[..])]);
    assert!(!internal);
    assert!(!e.preparing(s3.id));
    feed(&mut e, b"ZCZ");
    assert!(e.is_empty());

    // The error came before the client sent its Sync: what follows expects nothing.
    e.push(Entry::Execute);
    e.on_error();
    assert!(e.skipping());
    assert!(!e.push(Entry::Bind(None)));
    assert!(!e.push(Entry::Synthetic(b'1')));
    assert!(e.push(Entry::Sync));
    assert!(!e.skipping());
    feed(&mut e, b"Z");
    assert!(e.is_empty());
}

#[test]
fn a_simple_query_error_does_not_skip() {
    let mut e = Expect::default();
    e.push(Entry::Simple);
    e.push(Entry::Bind(None));
    e.push(Entry::Sync);
    assert_eq!(feed(&mut e, b"TDEZ2Z").len(), 6);
    assert!(e.is_empty());
}

#[test]
fn syncs_sent_into_copy_in_get_no_answer() {
    // tokio-postgres: Bind, Execute, Sync, CopyData…, CopyDone, Sync.
    let mut e = Expect::default();
    e.push(Entry::Bind(None));
    e.push(Entry::Execute);
    e.push(Entry::Sync);
    feed(&mut e, b"2G");
    assert!(!e.push(Entry::CopyEnd));
    assert!(e.push(Entry::Sync));
    feed(&mut e, b"CZ");
    assert!(e.is_empty());

    // The same with the CopyDone already sent when the CopyInResponse arrives.
    e.push(Entry::Bind(None));
    e.push(Entry::Execute);
    e.push(Entry::Sync);
    e.push(Entry::CopyEnd);
    e.push(Entry::Sync);
    feed(&mut e, b"2GCZ");
    assert!(e.is_empty());

    // psql: a simple COPY FROM STDIN, then CopyDone.
    e.push(Entry::Simple);
    feed(&mut e, b"G");
    assert!(!e.push(Entry::CopyEnd));
    feed(&mut e, b"CZ");
    assert!(e.is_empty());
}

#[test]
fn a_failed_copy_leaves_the_client_sync_answered() {
    let mut e = Expect::default();
    e.push(Entry::Bind(None));
    e.push(Entry::Execute);
    e.push(Entry::Sync);
    feed(&mut e, b"2G");
    e.on_error();
    assert!(e.skipping());
    assert!(!e.push(Entry::CopyEnd));
    assert!(e.push(Entry::Sync));
    feed(&mut e, b"Z");
    assert!(e.is_empty());
}

#[test]
fn internal_queries_are_recognised_and_mismatches_reported() {
    let mut e = Expect::default();
    e.push(Entry::Internal(Internal::Replay));
    e.push(Entry::Simple);
    assert!(matches!(e.on_message(b'T'), Ok(Seen::Internal)));
    assert!(e.on_error().1);
    assert!(matches!(e.on_ready(), Ok(Some(Internal::Replay))));
    assert!(matches!(e.on_ready(), Ok(None)));
    assert!(e.on_ready().is_err(), "a ReadyForQuery nobody asked for");

    e.push(Entry::Bind(None));
    assert!(e.on_message(b'1').is_err());
    e.push(Entry::Close { swallow: true });
    assert!(e.on_message(b'2').is_ok());
    assert!(matches!(e.on_message(b'3'), Ok(Seen::Swallow)));
}
