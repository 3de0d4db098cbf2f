//! Unit tests of the monitor's bookkeeping: failure counting, the primary's WAL history, lag,
//! and how a check's answer and errors are read.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use switchyard_config::Cluster;

use super::*;
use crate::ha::monitor::check::{io_kind, observe, sqlstate_kind};
use crate::ha::monitor::Lag;

const P: &str = "10.0.0.1:5432";
const R1: &str = "10.0.0.2:5432";
const R2: &str = "10.0.0.3:5432";

/// Primary P, replicas R1 and R2 (`r2` is more of R2's inline table).
fn cluster(r2: &str) -> Cluster {
    let text = format!(
        r#"
[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:0"
nodes = [{{ addr = "{P}", role = "primary" }}, {{ addr = "{R1}", role = "replica" }}, {{ addr = "{R2}", role = "replica" {r2} }}]
users = [{{ name = "app", password = "pw" }}]
"#
    );
    switchyard_config::parse(&text)
        .unwrap()
        .postgres
        .clusters
        .remove(0)
}

pub(crate) fn primary(lsn: u64) -> Observed {
    Observed {
        in_recovery: false,
        current_lsn: Some(Lsn(lsn)),
        ..Default::default()
    }
}

pub(crate) fn replica(receive: u64, replay: u64) -> Observed {
    Observed {
        in_recovery: true,
        receive_lsn: Some(Lsn(receive)),
        replay_lsn: Some(Lsn(replay)),
        wal_receiver: Some("streaming".into()),
        ..Default::default()
    }
}

fn refused() -> Result<Observed, CheckError> {
    Err(CheckError::new(ErrorKind::Refused, "connection refused"))
}

#[test]
fn threshold_failures_in_a_row_mark_a_node_down_and_one_success_brings_it_back() {
    let m = NodeMonitor::default();
    let t = Instant::now();
    assert!(m.view(R1).is_none(), "known before any check");
    assert_eq!(m.record(R1, t, Ok(replica(10, 10)), 3), None);
    assert_eq!(m.record(R1, t, refused(), 3), None);
    assert_eq!(m.record(R1, t, refused(), 3), None);
    let v = m.view(R1).unwrap();
    assert!(!v.reachable && !v.down && v.consecutive_failures == 2);
    assert_eq!(m.record(R1, t, refused(), 3), Some(Transition::Down));
    assert_eq!(m.record(R1, t, refused(), 3), None, "down is reported once");
    let v = m.view(R1).unwrap();
    assert!(v.down && v.consecutive_failures == 4 && v.checks_failed == 4);
    assert_eq!(v.last_error.as_ref().unwrap().kind, ErrorKind::Refused);
    assert_eq!(v.observed, Some(replica(10, 10)), "the last answer is kept");
    assert_eq!(
        m.record(R1, t, Ok(replica(20, 20)), 3),
        Some(Transition::Up)
    );
    let v = m.view(R1).unwrap();
    assert!(v.reachable && !v.down && v.consecutive_failures == 0 && v.checks_ok == 2);
    m.forget(R1);
    assert!(m.view(R1).is_none());
}

#[test]
fn the_primary_history_keeps_each_new_position_once_and_is_bounded() {
    let m = NodeMonitor::default();
    let t = Instant::now();
    for i in 0..(2 * HISTORY_LEN as u64 + 200) {
        m.record(P, t + Duration::from_millis(i), Ok(primary(100 + i / 2)), 3);
    }
    let entry = m.nodes.get(P).unwrap().clone();
    let history = lock(&entry.wal_history);
    assert_eq!(history.len(), HISTORY_LEN);
    assert!(history
        .iter()
        .zip(history.iter().skip(1))
        .all(|(a, b)| a.1 < b.1 && a.0 < b.0));
}

#[test]
fn lag_in_bytes_is_against_the_highest_known_position() {
    let c = cluster("");
    let m = NodeMonitor::default();
    let t = Instant::now();
    assert_eq!(m.lag(&c, R1, t), Lag::default(), "nothing known yet");
    m.record(R1, t, Ok(replica(1000, 400)), 3);
    assert_eq!(
        m.lag(&c, R1, t).bytes,
        Some(600),
        "the replica's own receive position"
    );
    m.record(R2, t, Ok(replica(1500, 1500)), 3);
    assert_eq!(
        m.lag(&c, R1, t).bytes,
        Some(1100),
        "another replica received more"
    );
    m.record(P, t, Ok(primary(2000)), 3);
    assert_eq!(m.lag(&c, R1, t).bytes, Some(1600));
    assert_eq!(m.lag(&c, R2, t).bytes, Some(500));
    assert_eq!(m.lag(&c, P, t), Lag::default(), "a primary has no lag");
    assert_eq!(m.cluster_wal_position(&c), Some(Lsn(2000)));

    // A fenced node's position does not count: it may hold WAL no one else has.
    let fenced = cluster(r#", fenced = "failed over""#);
    m.record(R2, t, Ok(replica(9000, 9000)), 3);
    assert_eq!(m.lag(&c, R1, t).bytes, Some(8600));
    assert_eq!(m.lag(&fenced, R1, t).bytes, Some(1600));
}

#[test]
fn a_caught_up_replica_of_an_idle_primary_has_no_lag_in_seconds() {
    let c = cluster("");
    let m = NodeMonitor::default();
    let t = Instant::now();
    m.record(P, t, Ok(primary(500)), 3);
    let idle = Observed {
        replay_age: Some(Duration::from_secs(3600)),
        ..replica(500, 500)
    };
    m.record(R1, t, Ok(idle), 3);
    let lag = m.lag(&c, R1, t + Duration::from_secs(5));
    assert_eq!(lag.bytes, Some(0));
    assert_eq!(lag.seconds, Some(0.0), "an idle primary is not lag");
}

#[test]
fn lag_in_seconds_dates_the_first_position_the_replica_has_not_replayed() {
    let c = cluster("");
    let m = NodeMonitor::default();
    let t = Instant::now();
    let s = Duration::from_secs;
    m.record(P, t, Ok(primary(100)), 3);
    m.record(P, t + s(10), Ok(primary(200)), 3);
    m.record(P, t + s(20), Ok(primary(300)), 3);
    m.record(R1, t + s(20), Ok(replica(300, 150)), 3);
    // First seen past 150 at t+10; asked at t+25.
    let lag = m.lag(&c, R1, t + s(25));
    assert_eq!((lag.bytes, lag.seconds), (Some(150), Some(15.0)));
    assert_eq!(lag.duration(), Some(s(15)));

    // Behind the start of the history: the replica's own replay timestamp is all there is,
    // aged by the time since its check.
    let behind = Observed {
        replay_age: Some(s(40)),
        ..replica(300, 50)
    };
    m.record(R2, t + s(20), Ok(behind), 3);
    assert_eq!(m.lag(&c, R2, t + s(22)).seconds, Some(42.0));
    m.record(R2, t + s(20), Ok(replica(300, 50)), 3);
    assert_eq!(
        m.lag(&c, R2, t + s(22)).seconds,
        None,
        "nothing to date it by"
    );
}

#[test]
fn wal_position_since_waits_for_a_check_that_started_after_the_moment() {
    let c = cluster("");
    let m = NodeMonitor::default();
    let t = Instant::now();
    let commit = t + Duration::from_millis(5);
    m.record(P, t, Ok(primary(100)), 3);
    assert_eq!(
        m.wal_position_since(&c, commit),
        None,
        "that check predates it"
    );
    m.record(P, commit + Duration::from_millis(1), Ok(primary(180)), 3);
    assert_eq!(m.wal_position_since(&c, commit), Some(Lsn(180)));
    m.record(P, commit + Duration::from_millis(2), refused(), 3);
    assert_eq!(
        m.wal_position_since(&c, commit),
        None,
        "primary unreachable"
    );
}

#[test]
fn reads_the_check_answer_of_a_primary_and_of_a_replica() {
    let p = observe(&[Some("f"), Some("16/B374D848"), None, None, None, None]).unwrap();
    assert_eq!(p, primary(0x16_B374_D848));
    let r = observe(&[
        Some("t"),
        None,
        Some("0/3000148"),
        Some("0/3000060"),
        Some("2.5"),
        Some("streaming"),
    ])
    .unwrap();
    assert!(r.in_recovery && r.streaming());
    assert_eq!(r.receive_lsn, Some(Lsn(0x300_0148)));
    assert_eq!(r.replay_lsn, Some(Lsn(0x300_0060)));
    assert_eq!(r.replay_age, Some(Duration::from_millis(2500)));
    let skewed = observe(&[Some("t"), None, None, None, Some("-3"), Some("waiting")]).unwrap();
    assert_eq!(
        skewed.replay_age,
        Some(Duration::ZERO),
        "clock skew is clamped"
    );
    assert!(!skewed.streaming());
    let hidden = observe(&[Some("t"), None, None, None, None, Some("unknown")]).unwrap();
    assert!(
        hidden.streaming(),
        "a receiver whose status we may not read"
    );
    let none = observe(&[Some("t"), None, None, None, None, None]).unwrap();
    assert!(!none.streaming(), "no WAL receiver");
}

#[test]
fn a_nonsensical_answer_is_a_bad_answer_not_a_panic() {
    for fields in [
        [None, None, None, None, None, None],
        [Some("yes"), None, None, None, None, None],
        [Some("f"), Some("not an lsn"), None, None, None, None],
        [Some("t"), None, Some("1/2/3"), None, None, None],
        [Some("t"), None, None, None, Some("soon"), None],
    ] {
        let e = observe(&fields).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAnswer, "{fields:?}");
    }
    let huge = observe(&[Some("t"), None, None, None, Some("1e300"), None]).unwrap();
    assert_eq!(huge.replay_age, None, "out of range is unknown");
}

#[test]
fn failures_are_told_apart() {
    use std::io::ErrorKind as Io;
    assert_eq!(sqlstate_kind("57P01"), ErrorKind::AdminShutdown);
    assert_eq!(sqlstate_kind("57P02"), ErrorKind::AdminShutdown);
    assert_eq!(sqlstate_kind("57P03"), ErrorKind::AdminShutdown);
    assert_eq!(sqlstate_kind("28P01"), ErrorKind::Auth);
    assert_eq!(sqlstate_kind("3D000"), ErrorKind::Server);
    assert_eq!(io_kind(Io::ConnectionRefused), ErrorKind::Refused);
    assert_eq!(io_kind(Io::TimedOut), ErrorKind::TimedOut);
    assert_eq!(io_kind(Io::UnexpectedEof), ErrorKind::ConnectionLost);
    assert_eq!(io_kind(Io::ConnectionReset), ErrorKind::ConnectionLost);
    assert_eq!(io_kind(Io::NotFound), ErrorKind::Io);
    assert_eq!(ErrorKind::AdminShutdown.as_str(), "admin_shutdown");
    assert_eq!(
        serde_json::to_value(CheckError::new(ErrorKind::TimedOut, "x")).unwrap(),
        serde_json::json!({ "kind": "timed_out", "message": "x" })
    );
}
