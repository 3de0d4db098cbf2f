//! Read/write classification cost: what a statement pays on each path of
//! `Classifier::classify`.
//! - `precheck/*`: the first word decides (`INSERT …`, `BEGIN`, `SELECT 1`); no parse, no hash;
//! - `hit/*`: the text is in the cache (prepared statements, ORM queries);
//! - `miss/*`: `analyse`, the full parse and tree walk a cache miss pays;
//! - `miss+insert`: a new text each time (literals inlined), parsed then cached with eviction;
//! - `large/*`: texts at the default `max_parse_len` (64 KiB), the most a miss can cost.
//!
//! Before Criterion's estimates, a plain loop prints cache hits per second across threads.
//! Run: `cargo bench --bench classify`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use switchyard_config::{ReplicaFallback, RoutingSettings};
use switchyard_dbrouter::classify::{Classifier, Target};

const JOIN_READ: &str = "SELECT u.id, u.name, lower(u.email), count(o.id) AS orders, \
    coalesce(sum(o.total), 0) AS spent FROM users u LEFT JOIN orders o ON o.user_id = u.id \
    WHERE u.created_at > now() - interval '30 days' AND u.id = $1 \
    GROUP BY u.id, u.name, u.email ORDER BY spent DESC LIMIT 20";
const POINT_READ: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const WRITING_CTE: &str =
    "WITH moved AS (DELETE FROM queue WHERE id = $1 RETURNING *) SELECT * FROM moved";

fn settings() -> RoutingSettings {
    RoutingSettings {
        read_write_split: true,
        max_replica_lag_bytes: None,
        max_replica_lag: None,
        fallback: ReplicaFallback::Primary,
        read_your_writes: false,
        read_only_functions: vec!["app.price_of".into()],
        write_functions: vec!["audit_event".into()],
    }
}

/// Cache hits per second from `threads` threads sharing one classifier.
fn hit_throughput(classifier: &Arc<Classifier>, threads: usize, per_thread: usize) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let c = classifier.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    black_box(c.classify(black_box(JOIN_READ)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("bench thread");
    }
    (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo test --all-targets` runs this file too (without `--bench`): keep that run short.
    let full = std::env::args().any(|a| a == "--bench");
    let classifier = Arc::new(Classifier::new(&settings()));
    assert_eq!(classifier.classify(JOIN_READ).target, Target::Replica);
    if !full {
        println!("(short run under cargo test: the figures below mean nothing)");
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for threads in [1, cores] {
        let rate = hit_throughput(&classifier, threads, if full { 2_000_000 } else { 1_000 });
        println!(
            "hit/join-read  threads={threads}  {:.1} M hits/s ({:.0} ns per hit per thread)",
            rate / 1e6,
            threads as f64 * 1e9 / rate
        );
    }

    let mut c = Criterion::default().configure_from_args().sample_size(50);
    for (name, sql) in [
        (
            "precheck/insert",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, now())",
        ),
        ("precheck/begin", "BEGIN"),
        ("precheck/select-1", "SELECT 1"),
    ] {
        c.bench_function(name, |b| b.iter(|| classifier.classify(black_box(sql))));
    }
    for (name, sql) in [("hit/point-read", POINT_READ), ("hit/join-read", JOIN_READ)] {
        classifier.classify(sql);
        c.bench_function(name, |b| b.iter(|| classifier.classify(black_box(sql))));
    }
    for (name, sql) in [
        ("miss/point-read", POINT_READ),
        ("miss/join-read", JOIN_READ),
        ("miss/writing-cte", WRITING_CTE),
    ] {
        c.bench_function(name, |b| b.iter(|| classifier.analyse(black_box(sql))));
    }
    let mut n = 0u64;
    c.bench_function("miss+insert/point-read-literal", |b| {
        b.iter(|| {
            n += 1;
            classifier.classify(&format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {n}"
            ))
        })
    });
    let in_list = {
        let mut s = String::from("SELECT * FROM t WHERE id IN (0");
        let mut i = 1;
        while s.len() < (64 << 10) - 8 {
            s.push_str(&format!(", {i}"));
            i += 1;
        }
        s + ")"
    };
    let dense = "SELECT a FROM t;".repeat(4096);
    for (name, sql) in [
        ("large/in-list-64k", &in_list),
        ("large/4096-statements-64k", &dense),
    ] {
        assert_eq!(classifier.analyse(sql).target, Target::Replica);
        c.bench_function(name, |b| b.iter(|| classifier.analyse(black_box(sql))));
    }
    c.final_summary();
    let stats = classifier.cache_stats();
    println!(
        "cache: {} hits, {} misses, {} entries",
        stats.hits, stats.misses, stats.entries
    );
}
