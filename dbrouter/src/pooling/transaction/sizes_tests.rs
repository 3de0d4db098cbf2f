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
        "ClientState {} B inline, its reported values {reported} B on the heap; TxRelay {} B, Held {} B, Spare {} B, PgStream {} B, StartupParams {} B",
        size_of::<ClientState>(),
        size_of::<super::relay::TxRelay<'static>>(),
        size_of::<super::relay::Held>(),
        size_of::<super::held::Spare>(),
        size_of::<crate::net::stream::PgStream>(),
        size_of::<switchyard_pgwire::startup::StartupParams>(),
    );
    assert!(reported < 400, "{reported} B for 13 reported values");
}
