//! Sizes of what an idle transaction-pooled client keeps (printed for BENCHMARKS.md): a
//! sibling of [`super::state`] so that the state does not import the relay.

use super::state::ClientState;

/// What an idle client keeps inline (in its task) and on the heap, printed for
/// BENCHMARKS.md (`cargo test -p switchyard-dbrouter --lib idle_sizes -- --nocapture`).
#[test]
fn idle_sizes() {
    use std::mem::size_of;
    let mut me = ClientState::default();
    // What a PostgreSQL 15 login reports.
    for (n, v) in [
        ("application_name", "pg_conn_memory"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_read_only", "off"),
        ("in_hot_standby", "off"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "off"),
        ("server_encoding", "UTF8"),
        ("server_version", "15.14 (Debian 15.14-0+deb12u1)"),
        ("session_authorization", "bench"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "Etc/UTC"),
    ] {
        me.reported.insert(n.as_bytes(), v.as_bytes());
    }
    let reported = me.reported.heap_bytes();
    eprintln!(
        "ClientState {} B inline, its reported values {reported} B on the heap; TxRelay {} B, Held {} B, PgStream {} B, StartupParams {} B",
        size_of::<ClientState>(),
        size_of::<super::relay::TxRelay<'static>>(),
        size_of::<super::relay::Held>(),
        size_of::<crate::net::stream::PgStream>(),
        size_of::<switchyard_pgwire::startup::StartupParams>(),
    );
    assert!(reported < 400, "{reported} B for 13 reported values");
}

/// The size of the future `f` returns, without calling it.
fn future_size<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// What an idle client's futures take below its task (whose size `client/sizes_tests.rs`
/// checks): the boxed transaction-pooled session (`serve`) and, inside it, the relay's
/// wait between turns. Bounds with some room over a debug build's sizes (in bytes: session
/// 872, relay run 224, idle wait 128): a future that grows past them (something
/// large awaited inline, or an argument held twice by an `async fn`) fails here. Printed for
/// BENCHMARKS.md (`cargo test -p switchyard-dbrouter --lib future_sizes -- --nocapture`).
#[test]
fn future_sizes() {
    use super::relay::TxRelay;
    use crate::cancel::CancelKey;
    use crate::net::stream::PgStream;
    use crate::server::upstream::Upstream;
    use switchyard_pgwire::startup::StartupParams;
    type R = &'static mut TxRelay<'static>;
    let session = future_size(
        |a: (
            &'static Upstream<'static>,
            super::Shared<'static>,
            &'static mut PgStream,
            bytes::BytesMut,
            &'static StartupParams,
            bytes::BytesMut,
            &'static CancelKey,
        )| super::serve(a.0, a.1, a.2, a.3, a.4, a.5, a.6),
    );
    let resumed = future_size(
        |a: (
            &'static Upstream<'static>,
            super::Shared<'static>,
            &'static mut PgStream,
            super::handoff::Handoff,
            &'static CancelKey,
        )| super::resume(a.0, a.1, a.2, a.3, a.4),
    );
    let run = future_size(|r: R| r.run());
    let idle = future_size(|r: R| r.idle());
    eprintln!(
        "transaction-pooled session {session} B (handed over: {resumed} B), of which TxRelay {} B and its run {run} B; the idle wait {idle} B; busy: io {} B, client_messages {} B (boxed)",
        std::mem::size_of::<TxRelay<'static>>(),
        future_size(|r: R| r.io()),
        future_size(|r: R| r.client_messages()),
    );
    assert!(
        session <= 1280,
        "transaction-pooled session future: {session} B"
    );
    assert!(resumed <= 1536, "handed-over session future: {resumed} B");
    assert!(run <= 320, "relay run future: {run} B");
    assert!(idle <= 192, "idle wait future: {idle} B");
}
