//! Tests of blue/green flips: a real [`Applier`] over a temporary config file, and a fake
//! [`TrafficStats`] whose counters the test sets.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::applier::testing::{audit_lines, start, BLUE_GREEN};
use crate::applier::{Applier, ApplyOutcome};
use crate::history::{Actor, Origin};
use crate::plane::{PoolCounts, TrafficStats};

/// Counters the test sets by hand.
#[derive(Default)]
struct FakeTraffic {
    counts: Mutex<HashMap<(String, String), PoolCounts>>,
}

impl FakeTraffic {
    fn set(&self, pool: &str, requests: u64, errors: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.insert(("api".into(), pool.into()), PoolCounts { requests, errors });
    }

    fn forget(&self, pool: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.remove(&("api".to_string(), pool.to_string()));
    }
}

impl TrafficStats for FakeTraffic {
    fn pool_counts(&self, upstream: &str, pool: &str) -> Option<PoolCounts> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .get(&(upstream.to_string(), pool.to_string()))
            .copied()
    }
}

fn to_green(window: Duration) -> FlipRequest {
    FlipRequest {
        to: "green".into(),
        verify: Verify {
            window,
            ..Verify::default()
        },
    }
}

fn weights(blue: u32, green: u32) -> BTreeMap<String, u32> {
    BTreeMap::from([("blue".into(), blue), ("green".into(), green)])
}

fn live_weights(applier: &Applier) -> BTreeMap<String, u32> {
    let current = applier.current();
    let pools = &current.snapshot.config.http.upstreams["api"].pools;
    pools.iter().map(|(n, p)| (n.clone(), p.weight)).collect()
}

/// Start a flip to green, expecting it to be applied.
async fn flip(
    flips: &Flips,
    applier: &Arc<Applier>,
    traffic: Option<Arc<FakeTraffic>>,
    window: Duration,
) -> FlipStatus {
    let traffic = traffic.map(|t| t as Arc<dyn TrafficStats>);
    let started = flips
        .start(
            applier.clone(),
            traffic,
            Actor::system("ops"),
            "api",
            to_green(window),
        )
        .await;
    match started {
        Ok(FlipStarted {
            outcome: ApplyOutcome::Applied { .. },
            status: Some(status),
        }) => status,
        other => panic!("flip not applied: {other:?}"),
    }
}

/// Wait (at most 5 s) until the flip of `api` is no longer verifying.
async fn outcome(flips: &Flips) -> FlipStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match flips.latest("api") {
            Some(s) if s.state != FlipState::Verifying => return s,
            s if tokio::time::Instant::now() > deadline => panic!("still verifying: {s:?}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[tokio::test]
async fn a_breach_rolls_back_to_the_previous_weights() {
    let (dir, applier) = start(BLUE_GREEN);
    let flips = Flips::with_poll_interval(Duration::from_millis(10));
    let traffic = Arc::new(FakeTraffic::default());
    traffic.set("green", 100, 50); // before the flip: not counted
    let status = flip(
        &flips,
        &applier,
        Some(traffic.clone()),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status.state, FlipState::Verifying);
    assert_eq!(status.previous_weights, weights(100, 0));
    assert_eq!(status.weights, weights(0, 100));
    assert_eq!(status.flip_version, 2);
    assert_eq!(live_weights(&applier), weights(0, 100));

    traffic.set("green", 120, 59);
    let done = outcome(&flips).await;
    assert_eq!(done.state, FlipState::RolledBack, "{done:?}");
    assert_eq!(
        done.reason.as_deref(),
        Some("green error ratio 0.45 (9/20) > 0.01")
    );
    assert_eq!((done.requests, done.errors), (20, 9));
    assert_eq!(done.rollback_version, Some(3));
    assert!(done.finished_at.is_some());

    let current = applier.current();
    assert_eq!(current.snapshot.version, 3);
    assert_eq!(current.origin, Origin::Rollback);
    assert_eq!(current.actor.name, "flip-verifier");
    assert_eq!(live_weights(&applier), weights(100, 0));
    let on_disk = std::fs::read_to_string(applier.config_path()).unwrap_or_default();
    assert_eq!(
        on_disk, BLUE_GREEN,
        "the file is back as it was, comments and all"
    );
    let line = audit_lines(&dir).pop().unwrap_or_default();
    assert_eq!(line["action"], "upstream.flip.rollback");
    assert_eq!(line["actor"], "flip-verifier");
    assert_eq!(line["version_after"], 3);
    assert_eq!(
        line["detail"]["reason"],
        "green error ratio 0.45 (9/20) > 0.01"
    );
    assert_eq!(line["detail"]["flip_version"], 2);

    // The upstream is free again.
    let again = flip(&flips, &applier, None, Duration::from_secs(1)).await;
    assert_eq!(again.flip_version, 4);
}

#[tokio::test]
async fn a_clean_window_with_enough_traffic_is_verified() {
    let (_dir, applier) = start(BLUE_GREEN);
    let flips = Flips::with_poll_interval(Duration::from_millis(10));
    let traffic = Arc::new(FakeTraffic::default());
    traffic.set("green", 100, 50);
    flip(
        &flips,
        &applier,
        Some(traffic.clone()),
        Duration::from_millis(500),
    )
    .await;
    traffic.set("green", 150, 50);
    let done = outcome(&flips).await;
    assert_eq!(done.state, FlipState::Verified, "{done:?}");
    assert_eq!((done.requests, done.errors), (50, 0));
    assert_eq!(done.rollback_version, None);
    assert_eq!(live_weights(&applier), weights(0, 100));
    assert_eq!(applier.current().snapshot.version, 2);
}

#[tokio::test]
async fn too_little_traffic_is_unverified_and_keeps_the_weights() {
    let (_dir, applier) = start(BLUE_GREEN);
    let flips = Flips::with_poll_interval(Duration::from_millis(10));
    let traffic = Arc::new(FakeTraffic::default());
    traffic.set("green", 0, 0);
    flip(
        &flips,
        &applier,
        Some(traffic.clone()),
        Duration::from_millis(400),
    )
    .await;
    traffic.set("green", 5, 5); // every request failed, but 5 < min_requests
    let done = outcome(&flips).await;
    assert_eq!(done.state, FlipState::Unverified, "{done:?}");
    let reason = done.reason.unwrap_or_default();
    assert!(reason.starts_with("only 5 request(s) to green"), "{reason}");
    assert_eq!(live_weights(&applier), weights(0, 100));
}

#[tokio::test]
async fn a_second_flip_while_verifying_is_refused() {
    let (_dir, applier) = start(BLUE_GREEN);
    let flips = Flips::with_poll_interval(Duration::from_millis(10));
    let traffic = Arc::new(FakeTraffic::default());
    traffic.set("green", 0, 0);
    flip(
        &flips,
        &applier,
        Some(traffic.clone()),
        Duration::from_secs(30),
    )
    .await;
    let second = flips
        .start(
            applier.clone(),
            None,
            Actor::system("ops"),
            "api",
            to_green(Duration::from_secs(1)),
        )
        .await;
    match &second {
        Err(e @ FlipError::Busy { .. }) => {
            assert_eq!(e.current().map(|s| s.state), Some(FlipState::Verifying));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        applier.current().snapshot.version,
        2,
        "the refused flip changed nothing"
    );
}

#[tokio::test]
async fn without_counters_a_flip_applies_unverified() {
    let (_dir, applier) = start(BLUE_GREEN);
    let flips = Flips::default();
    let status = flip(&flips, &applier, None, Duration::from_secs(30)).await;
    assert_eq!(status.state, FlipState::Unverified);
    assert!(status
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("no HTTP plane")));
    assert_eq!(flips.latest("api"), Some(status));
    assert_eq!(live_weights(&applier), weights(0, 100));
    // Flipping to where the traffic already is changes nothing and starts no verification.
    let started = flips
        .start(
            applier.clone(),
            None,
            Actor::system("ops"),
            "api",
            to_green(Duration::from_secs(1)),
        )
        .await;
    assert!(
        matches!(
            started,
            Ok(FlipStarted {
                outcome: ApplyOutcome::Unchanged { .. },
                status: None
            })
        ),
        "{started:?}"
    );
}

#[tokio::test]
async fn a_vanished_pool_fails_the_flip_and_unknown_names_are_refused() {
    let (_dir, applier) = start(BLUE_GREEN);
    let flips = Flips::with_poll_interval(Duration::from_millis(10));
    let traffic = Arc::new(FakeTraffic::default());
    traffic.set("green", 0, 0);
    flip(
        &flips,
        &applier,
        Some(traffic.clone()),
        Duration::from_secs(30),
    )
    .await;
    traffic.forget("green");
    assert_eq!(outcome(&flips).await.state, FlipState::Failed);

    let mut to_red = to_green(Duration::from_secs(1));
    to_red.to = "red".into();
    let refused = flips
        .start(applier.clone(), None, Actor::system("ops"), "api", to_red)
        .await;
    assert!(matches!(refused, Err(FlipError::Apply(_))), "{refused:?}");
    let missing = flips
        .start(
            applier.clone(),
            None,
            Actor::system("ops"),
            "web",
            to_green(Duration::from_secs(1)),
        )
        .await;
    assert!(matches!(missing, Err(FlipError::Apply(_))), "{missing:?}");
}

#[test]
fn status_json_has_the_documented_shape() {
    let status = FlipStatus {
        upstream: "api".into(),
        to: "green".into(),
        state: FlipState::RolledBack,
        actor: "ops".into(),
        started_at: time::OffsetDateTime::UNIX_EPOCH,
        finished_at: None,
        verify: Verify::default(),
        previous_weights: weights(100, 0),
        weights: weights(0, 100),
        requests: 20,
        errors: 9,
        reason: Some("why".into()),
        flip_version: 2,
        rollback_version: Some(3),
        verifier: None,
    };
    let v = serde_json::to_value(&status).unwrap_or_default();
    assert_eq!(v["state"], "rolled_back");
    assert_eq!(v["window"], "30s");
    assert_eq!(v["max_error_ratio"], 0.01);
    assert_eq!(v["min_requests"], 20);
    assert_eq!(v["started_at"], "1970-01-01T00:00:00Z");
    assert_eq!(v["finished_at"], serde_json::Value::Null);
    assert_eq!(v["previous_weights"]["blue"], 100);
    assert_eq!(v["rollback_version"], 3);
    let back: FlipStatus = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        back, status,
        "a record read back from the store is the status written"
    );
}
