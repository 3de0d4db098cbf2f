use super::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn max_fails_within_fail_timeout_ejects_for_fail_timeout() {
    let b = BackendState::new("127.0.0.1:1");
    let t0 = Instant::now();
    assert!(!b.record_failure(t0, 3, T, || true));
    assert!(!b.record_failure(t0 + Duration::from_secs(1), 3, T, || true));
    assert_eq!(b.health(t0 + Duration::from_secs(1)), Health::Up);
    assert!(b.record_failure(t0 + Duration::from_secs(2), 3, T, || true));
    let until = t0 + Duration::from_secs(12);
    assert_eq!(
        b.health(t0 + Duration::from_secs(3)),
        Health::Ejected(until)
    );
    assert_eq!(b.health(until), Health::Up);
}

#[test]
fn failures_older_than_the_window_do_not_count() {
    let b = BackendState::new("127.0.0.1:1");
    let t0 = Instant::now();
    b.record_failure(t0, 2, T, || true);
    assert!(
        !b.record_failure(t0 + T, 2, T, || true),
        "first failure has left the window"
    );
    assert!(b.record_failure(t0 + T + Duration::from_secs(1), 2, T, || true));
}

#[test]
fn a_backend_on_probation_is_ejected_by_one_failure_until_it_succeeds() {
    let b = BackendState::new("127.0.0.1:1");
    let t0 = Instant::now();
    assert!(b.record_failure(t0, 1, T, || true));
    // Back after fail_timeout: one failure sends it out again even with max_fails = 3.
    assert!(b.record_failure(t0 + T, 3, T, || true));
    let t1 = t0 + T + T;
    b.record_success(t1);
    assert!(!b.record_failure(t1, 3, T, || true));
}

#[test]
fn max_ejected_percent_can_veto_and_zero_max_fails_disables() {
    let b = BackendState::new("127.0.0.1:1");
    let t0 = Instant::now();
    assert!(!b.record_failure(t0, 1, T, || false));
    assert_eq!(b.health(t0), Health::Up);
    assert!(!b.record_failure(t0, 0, T, || true));
    assert_eq!(b.failures.load(Ordering::Relaxed), 2);
}

#[test]
fn active_checks_use_rise_and_fall() {
    let b = BackendState::new("127.0.0.1:1");
    assert_eq!(b.record_check(false, 2, 2), None);
    assert_eq!(b.record_check(false, 2, 2), Some(false));
    assert_eq!(b.health(Instant::now()), Health::Down);
    assert_eq!(b.record_check(true, 2, 2), None);
    assert_eq!(b.record_check(true, 2, 2), Some(true));
    assert_eq!(b.health(Instant::now()), Health::Up);
}

#[test]
fn slow_start_ramps_from_a_tenth_to_full() {
    let b = BackendState::new("127.0.0.1:1");
    let t0 = Instant::now();
    assert_eq!(b.ramp(t0, Some(T)), 1.0, "no ramp until one starts");
    b.start_ramp(t0);
    assert_eq!(b.ramp(t0, Some(T)), 0.1);
    assert!((b.ramp(t0 + Duration::from_secs(5), Some(T)) - 0.5).abs() < 1e-9);
    assert_eq!(b.ramp(t0 + T, Some(T)), 1.0);
    assert_eq!(b.ramp(t0, None), 1.0);
}

#[test]
fn in_flight_guard_counts_and_releases() {
    let b = Arc::new(BackendState::new("127.0.0.1:1"));
    let g1 = b.acquire();
    let g2 = b.acquire();
    assert_eq!(b.in_flight(), 2);
    drop(g1);
    drop(g2);
    assert_eq!(b.in_flight(), 0);
}

#[test]
fn retry_budget_allows_a_share_with_a_floor() {
    let budget = RetryBudget::default();
    for _ in 0..100 {
        budget.record_request(5);
    }
    let granted = (0..50).filter(|_| budget.try_retry(5, 0.2)).count();
    assert_eq!(granted, 20);
    // Ten seconds later the window is empty again: only the floor remains.
    let granted = (0..10).filter(|_| budget.try_retry(16, 0.2)).count();
    assert_eq!(granted, BUDGET_FLOOR as usize);
}

#[test]
fn registry_keeps_state_by_address() {
    let r = Registry::default();
    let a = r.backend("127.0.0.1:1");
    let _g = a.acquire();
    assert_eq!(r.backend("127.0.0.1:1").in_flight(), 1);
    assert!(Arc::ptr_eq(&r.pool("u", "blue"), &r.pool("u", "blue")));
    assert!(r.existing_pool("u", "green").is_none());
}
