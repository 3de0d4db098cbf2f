//! pgbench through the router: run it against a [`Router`] (as user `app`, password
//! `app-pw`, or as another user), database `postgres`, and read its summary.

use std::process::Command;

use anyhow::{anyhow, Context};

use super::client::Router;
use super::PgCluster;

/// What a pgbench run printed that this test checks.
#[derive(Debug)]
pub struct Run {
    pub processed: u64,
    pub failed: u64,
    pub tps: f64,
    pub latency_ms: f64,
}

/// Read pgbench's summary.
pub fn summary(out: &str) -> anyhow::Result<Run> {
    let value = |prefix: &str| -> anyhow::Result<&str> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| anyhow!("no {prefix:?} line in:\n{out}"))
    };
    let first_word = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
    Ok(Run {
        processed: first_word(value("number of transactions actually processed:")?).parse()?,
        failed: first_word(value("number of failed transactions:")?).parse()?,
        tps: first_word(value("tps =")?).parse()?,
        latency_ms: first_word(value("latency average =")?).parse()?,
    })
}

/// pgbench as `app`; its output, or its error with the output.
pub fn pgbench(pg: &PgCluster, router: &Router, args: &[&str]) -> anyhow::Result<String> {
    pgbench_as(pg, router, ("app", "app-pw"), args)
}

/// pgbench as `(user, password)`.
pub fn pgbench_as(
    pg: &PgCluster,
    router: &Router,
    (user, password): (&str, &str),
    args: &[&str],
) -> anyhow::Result<String> {
    let out = Command::new(pg.bin("pgbench"))
        .args(args)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", router.port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .env("PGDATABASE", "postgres")
        .output()
        .context("running pgbench")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        out.status.success(),
        "pgbench {args:?} failed ({}):\n{text}",
        out.status
    );
    Ok(text)
}
