//! Apply latency: how long the single writer takes to parse, validate, build every plane and
//! swap in a config of 50 upstreams × 20 backends and 5 Postgres clusters.
//!
//! Two figures per path, p50 and p99 over many applies that each change one weight (so every
//! apply is a real change, never the no-op fast path):
//! - `file`: a reload from the config file (no write-back);
//! - `api`: an API change, which also writes the file atomically (temp file, fsync, rename).
//!
//! Run: `cargo bench --bench apply`. Criterion's own estimate follows the percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use switchyard_control::{Actor, Applier, ApplyRequest, Origin};

/// A config of `upstreams` × `backends` and `clusters` Postgres clusters; `salt` changes one
/// pool weight so consecutive configs differ.
fn config_text(upstreams: usize, backends: usize, clusters: usize, salt: u32) -> String {
    let mut s =
        String::from("[control]\nlisten = \"127.0.0.1:0\"\naudit_log = \"audit.jsonl\"\n\n");
    for u in 0..upstreams {
        s.push_str(&format!(
            "[[http.routes]]\nhost = \"u{u}.example.com\"\nupstream = \"u{u}\"\n\n"
        ));
    }
    for u in 0..upstreams {
        s.push_str(&format!(
            "[http.upstreams.u{u}]\nmax_fails = 3\nfail_timeout = \"10s\"\n"
        ));
        for (pool, octet) in [("blue", 1), ("green", 2)] {
            let weight = if u == 0 && pool == "blue" {
                100 + salt
            } else {
                50
            };
            let list: Vec<String> = (0..backends / 2)
                .map(|b| format!("\"10.{octet}.{u}.{b}:8080\""))
                .collect();
            s.push_str(&format!(
                "[http.upstreams.u{u}.pools.{pool}]\nweight = {weight}\nbackends = [{}]\n",
                list.join(", ")
            ));
        }
        s.push('\n');
    }
    for c in 0..clusters {
        s.push_str(&format!(
            "[[postgres.clusters]]\nname = \"c{c}\"\nlisten = \"127.0.0.1:{}\"\nnodes = [{{ addr = \"10.9.{c}.1:5432\", role = \"primary\" }}, {{ addr = \"10.9.{c}.2:5432\", role = \"replica\" }}, {{ addr = \"10.9.{c}.3:5432\", role = \"replica\" }}]\nusers = [{{ name = \"app\", password = \"pw\" }}]\n\n",
            16000 + c
        ));
    }
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn request(text: Arc<str>, origin: Origin) -> ApplyRequest {
    ApplyRequest {
        text,
        origin,
        actor: Actor::system("bench"),
        action: "bench",
        expect_version: None,
        dry_run: false,
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchyard.toml");
    let texts: Vec<Arc<str>> = (0..2)
        .map(|i| Arc::from(config_text(50, 20, 5, i)))
        .collect();
    std::fs::write(&path, &*texts[0]).expect("write config");
    let applier = Applier::start(&path, switchyard::planes()).expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    println!(
        "config: 50 upstreams x 20 backends, 5 Postgres clusters ({} bytes)",
        texts[0].len()
    );
    // `cargo test --all-targets` runs this file too (without `--bench`): keep that run short.
    let full = std::env::args().any(|a| a == "--bench");
    let runs = |n: usize| if full { n } else { 5 };
    for (name, origin, n) in [
        ("file", Origin::File, runs(2000)),
        ("api", Origin::Api, runs(500)),
    ] {
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let req = request(texts[(i + 1) % 2].clone(), origin);
            let started = Instant::now();
            let outcome = rt.block_on(applier.apply(req));
            samples.push(started.elapsed());
            assert!(outcome.is_ok(), "apply failed: {outcome:?}");
        }
        samples.sort();
        println!(
            "apply/{name:<4}  n={n:<5} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
            percentile(&samples, 0.50).as_secs_f64() * 1e3,
            percentile(&samples, 0.99).as_secs_f64() * 1e3,
            samples[samples.len() - 1].as_secs_f64() * 1e3,
        );
    }
    let mut c = Criterion::default().configure_from_args().sample_size(50);
    let mut i = 0usize;
    c.bench_function("apply/file 50x20+5", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(applier.apply(request(texts[i % 2].clone(), Origin::File)))
        })
    });
    c.final_summary();
}
