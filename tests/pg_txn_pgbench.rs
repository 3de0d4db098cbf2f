//! pgbench through the router in transaction mode: `pgbench -i`, then eight clients on four
//! server connections for five seconds with each query mode (`-M simple`, `-M extended`,
//! `-M prepared`) and with a new connection per transaction (`-C`). Every run must finish
//! with no failed transaction; the figures are printed (`--nocapture` shows them).
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use anyhow::Context;
use support::pg::bench::{pgbench, summary};
use support::pg::client::Router;
use support::pg::PgCluster;

#[test]
fn pgbench_runs_every_query_mode_without_a_failed_transaction() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(());
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; grant create on schema public to app;",
    )?;
    let router = Router::start(
        &pg,
        "pool_mode = \"transaction\"\npool = { max_size = 4, checkout_timeout = \"30s\" }",
        &[r#"{ name = "app", password = "app-pw" }"#],
    )?;
    pgbench(&pg, &router, &["-i", "-s", "1", "-q"])?;
    assert_eq!(
        pg.psql(0, "select count(*) from pgbench_accounts")?,
        "100000"
    );

    let modes: &[(&str, &[&str])] = &[
        ("-M simple", &["-M", "simple"]),
        ("-M extended", &["-M", "extended"]),
        ("-M prepared", &["-M", "prepared"]),
        ("-C", &["-C"]),
    ];
    let mut table = Vec::new();
    for (name, extra) in modes {
        let mut args = vec!["-c", "8", "-j", "2", "-T", "5"];
        args.extend_from_slice(extra);
        let out = pgbench(&pg, &router, &args)?;
        let run = summary(&out).with_context(|| format!("pgbench {name}"))?;
        assert_eq!(run.failed, 0, "pgbench {name}: {run:?}\n{out}");
        assert!(run.processed > 0, "pgbench {name}: {run:?}\n{out}");
        table.push((name, run));
    }
    eprintln!(
        "pgbench through Switchyard, transaction pooling, 8 clients on 4 server connections, 5 s:"
    );
    for (name, run) in &table {
        eprintln!(
            "  {name:<12} {:>7} transactions  {:>9.1} tps  {:>6.2} ms average latency  {} failed",
            run.processed, run.tps, run.latency_ms, run.failed
        );
    }
    // Eight clients never had more than four server connections, and every transaction was
    // a turn on one of them.
    let status = router.cluster_status()?;
    assert!(
        status["nodes"][0]["pool"]["open"].as_u64() <= Some(4),
        "{status}"
    );
    let turns = status["transaction_pooling"]["transactions_total"]
        .as_u64()
        .unwrap_or(0);
    let processed: u64 = table.iter().map(|(_, r)| r.processed).sum();
    assert!(
        turns >= processed,
        "{turns} turns for {processed} transactions: {status}"
    );
    Ok(())
}
