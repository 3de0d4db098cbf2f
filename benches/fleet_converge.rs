//! Fleet convergence: how long after a change is sent to node A of three Switchyards sharing
//! a document in a real 3-member etcd on loopback, nodes B and C both run it.
//!
//! 100 changes, one at a time, each a `PUT /v1/config` on A moving the `api` upstream's blue
//! backend; the clock runs from sending the PUT until `/v1/status` of both B and C shows the
//! new version (polled every millisecond). Prints p50, p99 and max.
//!
//! Run: `cargo bench --bench fleet_converge` (needs Debian's `etcd-server`).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::etcd_cluster::EtcdCluster;
use support::fleet::{node, put_ok, shared};

/// Changes measured by `cargo bench`; `cargo test --all-targets` runs the bench as a smoke
/// test with a few.
const CHANGES: usize = 100;
const SMOKE: usize = 5;

fn main() -> anyhow::Result<()> {
    let changes = if std::env::args().any(|a| a == "--bench") {
        CHANGES
    } else {
        SMOKE
    };
    let Some(etcd) = EtcdCluster::start(3)? else {
        return Ok(());
    };
    let a = node(&etcd, "a", Some(&shared("127.0.0.1:9001")))?;
    let b = node(&etcd, "b", None)?;
    let c = node(&etcd, "c", None)?;
    let mut took = Vec::with_capacity(changes);
    for i in 0..changes {
        let started = Instant::now();
        let version = put_ok(&a, &shared(&format!("127.0.0.1:{}", 10_000 + i)), None)?;
        for n in [&b, &c] {
            let deadline = started + Duration::from_secs(10);
            while n.version()? < version {
                anyhow::ensure!(Instant::now() < deadline, "no convergence within 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        took.push(started.elapsed());
    }
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "fleet convergence over {changes} changes (PUT on A until B and C run it): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
