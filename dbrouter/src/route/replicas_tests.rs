//! Unit tests of replica selection over monitor states set up by hand.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use switchyard_config::{Address, Cluster};

use super::*;
use crate::ha::monitor::{CheckError, ErrorKind, Observed};

const P: &str = "10.0.0.1:5432";
const R1: &str = "10.0.0.2:5432";
const R2: &str = "10.0.0.3:5432";

/// Cluster `main`: primary P, replicas R1 and R2 (`r2` is more of R2's inline table),
/// checked every second with a 1 s timeout and a threshold of 3, and these routing settings.
fn cluster(routing: &str, r2: &str) -> Cluster {
    let text = format!(
        r#"
[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:0"
nodes = [{{ addr = "{P}", role = "primary" }}, {{ addr = "{R1}", role = "replica" }}, {{ addr = "{R2}", role = "replica" {r2} }}]
users = [{{ name = "app", password = "pw" }}]
routing = {{ {routing} }}
failover = {{ check_interval = "1s", check_timeout = "1s", failure_threshold = 3 }}
"#
    );
    switchyard_config::parse(&text)
        .unwrap()
        .postgres
        .clusters
        .remove(0)
}

fn addr(s: &str) -> Address {
    let (host, port) = s.split_once(':').unwrap();
    Address {
        host: host.into(),
        port: port.parse().unwrap(),
    }
}

fn primary(lsn: u64) -> Observed {
    Observed {
        in_recovery: false,
        current_lsn: Some(Lsn(lsn)),
        ..Default::default()
    }
}

fn replica(replay: u64) -> Observed {
    Observed {
        in_recovery: true,
        receive_lsn: Some(Lsn(replay)),
        replay_lsn: Some(Lsn(replay)),
        wal_receiver: Some("streaming".into()),
        ..Default::default()
    }
}

fn refused() -> Result<Observed, CheckError> {
    Err(CheckError::new(ErrorKind::Refused, "connection refused"))
}

/// A monitor that saw the primary at 1000 and both replicas at `r1` and `r2`, all at `t`.
fn monitor(t: Instant, r1: u64, r2: u64) -> NodeMonitor {
    let m = NodeMonitor::default();
    m.record(P, t, Ok(primary(1000)), 3);
    m.record(R1, t, Ok(replica(r1)), 3);
    m.record(R2, t, Ok(replica(r2)), 3);
    m
}

fn idle(_: &Address) -> usize {
    0
}

/// The choice, with no load anywhere.
fn choose(c: &Cluster, m: &NodeMonitor, now: Instant, min_lsn: Option<u64>) -> Choice {
    choose_replica(c, m, now, min_lsn.map(Lsn), &idle)
}

#[test]
fn the_least_loaded_replica_wins_and_ties_are_shared_at_random() {
    let c = cluster("", "");
    let t = Instant::now();
    let m = monitor(t, 1000, 1000);
    let load = |a: &Address| if a.to_string() == R1 { 2 } else { 1 };
    for _ in 0..4 {
        let choice = choose_replica(&c, &m, t, None, &load);
        assert_eq!(choice, Choice::Replica(addr(R2)));
    }
    let picks: Vec<Choice> = (0..400).map(|_| choose(&c, &m, t, None)).collect();
    let r1 = picks
        .iter()
        .filter(|p| **p == Choice::Replica(addr(R1)))
        .count();
    assert!(
        (100..=300).contains(&r1),
        "ties are shared: {r1} of 400 to R1"
    );
}

#[test]
fn a_replica_past_the_byte_limit_gets_no_reads_and_then_the_fallback_decides() {
    let t = Instant::now();
    let c = cluster("max_replica_lag_bytes = 100", "");
    let m = monitor(t, 950, 800);
    for _ in 0..4 {
        assert_eq!(choose(&c, &m, t, None), Choice::Replica(addr(R1)));
    }
    let m = monitor(t, 850, 800);
    assert_eq!(choose(&c, &m, t, None), Choice::Primary(Reason::ReplicaLag));
    let strict = cluster(r#"max_replica_lag_bytes = 100, fallback = "error""#, "");
    assert_eq!(
        choose(&strict, &m, t, None),
        Choice::Error(Reason::ReplicaLag)
    );
}

#[test]
fn a_replica_past_the_time_limit_gets_no_reads() {
    let t = Instant::now();
    let s = Duration::from_secs;
    let c = cluster(r#"max_replica_lag = "5s""#, "");
    let m = NodeMonitor::default();
    m.record(P, t, Ok(primary(100)), 3);
    m.record(P, t + s(4), Ok(primary(200)), 3);
    m.record(R1, t + s(4), Ok(replica(100)), 3);
    m.record(R2, t + s(4), Ok(replica(200)), 3);
    // R1 has not replayed what the primary had at t+4: 2 s behind at t+6, 6 s at t+10.
    assert_eq!(monitor_lag(&c, &m, R1, t + s(6)), (Some(100), Some(2.0)));
    let both: Vec<Choice> = (0..64).map(|_| choose(&c, &m, t + s(6), None)).collect();
    assert!(both.contains(&Choice::Replica(addr(R1))), "{both:?}");
    m.record(R2, t + s(9), Ok(replica(200)), 3);
    m.record(R1, t + s(9), Ok(replica(100)), 3);
    for _ in 0..4 {
        assert_eq!(choose(&c, &m, t + s(10), None), Choice::Replica(addr(R2)));
    }
    // A lag that cannot be dated is over any time limit.
    let undated = NodeMonitor::default();
    undated.record(P, t, Ok(primary(500)), 3);
    undated.record(R1, t, Ok(replica(100)), 3);
    assert_eq!(
        choose(&c, &undated, t, None),
        Choice::Primary(Reason::ReplicaLag)
    );
}

fn monitor_lag(
    c: &Cluster,
    m: &NodeMonitor,
    node: &str,
    now: Instant,
) -> (Option<u64>, Option<f64>) {
    let lag = m.lag(c, node, now);
    (lag.bytes, lag.seconds)
}

#[test]
fn read_your_writes_reads_only_replicas_past_the_position_or_the_primary() {
    let t = Instant::now();
    // Even with fallback = "error": the primary has the client's write.
    let c = cluster(r#"fallback = "error""#, "");
    let m = monitor(t, 900, 1000);
    for _ in 0..4 {
        assert_eq!(choose(&c, &m, t, Some(950)), Choice::Replica(addr(R2)));
        assert_eq!(choose(&c, &m, t, Some(1000)), Choice::Replica(addr(R2)));
    }
    assert_eq!(
        choose(&c, &m, t, Some(1001)),
        Choice::Primary(Reason::ReadYourWrites)
    );
}

#[test]
fn fenced_down_and_unreachable_replicas_get_no_reads() {
    let t = Instant::now();
    let fenced = cluster("", r#", fenced = "failed over""#);
    let m = monitor(t, 1000, 1000);
    for _ in 0..4 {
        assert_eq!(choose(&fenced, &m, t, None), Choice::Replica(addr(R1)));
    }
    // One failed check takes R1 out at once; the threshold marks it down.
    m.record(R1, t, refused(), 3);
    assert_eq!(
        choose(&fenced, &m, t, None),
        Choice::Primary(Reason::NoHealthyReplica)
    );
    m.record(R1, t, refused(), 3);
    m.record(R1, t, refused(), 3);
    assert!(m.view(R1).unwrap().down);
    let c = cluster("", "");
    for _ in 0..4 {
        assert_eq!(choose(&c, &m, t, None), Choice::Replica(addr(R2)));
    }
    // It answers again: back in rotation.
    m.record(R1, t, Ok(replica(1000)), 3);
    let picks: Vec<Choice> = (0..64).map(|_| choose(&c, &m, t, None)).collect();
    assert!(picks.contains(&Choice::Replica(addr(R1))), "{picks:?}");
}

#[test]
fn a_replica_must_be_in_recovery_and_streaming_or_caught_up() {
    let t = Instant::now();
    let c = cluster(r#"fallback = "error""#, "");
    let m = monitor(t, 1000, 900);
    let detached = |replay| Observed {
        wal_receiver: None,
        ..replica(replay)
    };
    m.record(R1, t, Ok(detached(1000)), 3);
    m.record(R2, t, Ok(detached(900)), 3);
    for _ in 0..4 {
        assert_eq!(choose(&c, &m, t, None), Choice::Replica(addr(R1)));
    }
    m.record(R1, t, Ok(primary(1000)), 3);
    assert_eq!(
        choose(&c, &m, t, None),
        Choice::Error(Reason::NoHealthyReplica),
        "a promoted replica is not a replica"
    );
}

#[test]
fn stale_or_missing_monitor_state_is_not_trusted() {
    let t = Instant::now();
    let c = cluster("", "");
    let m = monitor(t, 1000, 1000);
    // Fresh for failure_threshold × (check_interval + check_timeout) = 6 s.
    assert!(matches!(
        choose(&c, &m, t + Duration::from_secs(6), None),
        Choice::Replica(_)
    ));
    assert_eq!(
        choose(&c, &m, t + Duration::from_secs(7), None),
        Choice::Primary(Reason::NoHealthyReplica)
    );
    let empty = NodeMonitor::default();
    assert_eq!(
        choose(&c, &empty, t, None),
        Choice::Primary(Reason::NoHealthyReplica)
    );
    let strict = cluster(r#"fallback = "error""#, "");
    assert_eq!(
        choose(&strict, &empty, t, None),
        Choice::Error(Reason::NoHealthyReplica)
    );
}

#[test]
fn a_cluster_without_replicas_reads_from_the_primary_whatever_the_fallback() {
    let t = Instant::now();
    let both_fenced = cluster(r#"fallback = "error""#, r#", fenced = "x""#);
    let mut c = both_fenced.clone();
    c.nodes
        .retain(|n| n.role == switchyard_config::NodeRole::Primary);
    let m = monitor(t, 1000, 1000);
    assert_eq!(choose(&c, &m, t, None), Choice::Primary(Reason::NoReplicas));
    assert_eq!(Reason::NoReplicas.as_str(), "no_replicas");
    assert!(Reason::ReplicaLag.to_string().contains("lag limit"));
}
