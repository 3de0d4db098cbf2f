//! Planned and refused role changes end to end, against a real primary and two streaming
//! replicas and the `switchyard` binary:
//!
//! - A planned switchover (`POST /v1/clusters/main/switchover`) under a steady write load:
//!   zero client errors, zero lost rows, the old primary fenced, the other replica following.
//! - Only the link between Switchyard and the primary is cut (a TCP relay that stops
//!   forwarding) while the replicas still stream from it: no promotion, and `/v1/status`
//!   says why.
//! - Config reloads while a failover runs: the end state has one primary and the running
//!   config, the file and `/v1/status` agree.
//! - Rejoin is refused for a node that is not a replica; bad requests get 4xx.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use support::http::Request;
use support::pg::client::Router;
use support::pg::ha::{
    all_healthy, operator_post, rows, status, superuser, wait_until, Relay, Writers,
};
use support::pg::{PgCluster, SUPERUSER, SUPERUSER_PASSWORD};

const TABLE: &str = "create table ha (writer int, seq int, primary key (writer, seq))";
const SETTINGS: &str = r#"failover = { check_interval = "100ms", failure_threshold = 3 }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_switchover_loses_nothing_and_fails_no_client() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    pg.psql(0, TABLE)?;
    let router = Router::start(&pg, SETTINGS, &[&superuser()])?;
    all_healthy(&router).await?;
    let writers = Writers::start(&router.config(SUPERUSER, SUPERUSER_PASSWORD), 8).await?;
    writers.wait_acked(200, Duration::from_secs(10)).await?;

    let target = format!("127.0.0.1:{}", pg.node(1).port);
    // A viewer may not, and the refusal is audited.
    let r = tokio::task::block_in_place(|| {
        router.sy.send(
            Request::post(
                "/v1/clusters/main/switchover",
                format!(r#"{{"to": "{target}"}}"#),
            )
            .bearer(support::config::VIEWER),
        )
    })?;
    ensure!(
        r.status == 403,
        "a viewer's switchover answered {}",
        r.status
    );
    let started = Instant::now();
    let (code, body) = operator_post(
        &router,
        "/v1/clusters/main/switchover",
        &format!(r#"{{"to": "{target}"}}"#),
    )?;
    ensure!(code == 200, "switchover answered {code}: {body}");
    eprintln!(
        "switchover took {:?}: {}",
        started.elapsed(),
        body["attempt"]
    );
    let n = writers.acked();
    // Writes keep going.
    writers.wait_acked(n + 200, Duration::from_secs(10)).await?;
    let seen = writers.finish().await;
    ensure!(
        seen.errors.is_empty() && seen.closed == 0,
        "client errors during a switchover: {:?}",
        &seen.errors[..seen.errors.len().min(5)]
    );
    let on_new = rows(&pg, 1)?;
    let lost = seen.acked.iter().filter(|r| !on_new.contains(r)).count();
    ensure!(
        lost == 0,
        "{lost} acknowledged inserts are not on the new primary"
    );

    let s = status(&router)?;
    ensure!(s["nodes"][1]["role"] == "primary", "{s}");
    ensure!(
        s["nodes"][0]["fenced"].is_string(),
        "old primary not fenced: {}",
        s["nodes"][0]
    );
    ensure!(
        s["failover"]["history"][0]["kind"] == "switchover",
        "{}",
        s["failover"]
    );
    let audit = tokio::task::block_in_place(|| router.sy.audit())?;
    for result in ["denied", "applied"] {
        ensure!(
            audit
                .iter()
                .any(|l| l["action"] == "postgres.switchover" && l["result"] == result),
            "no {result} switchover in the audit log: {audit:?}"
        );
    }
    // The old primary took no write after the switchover; the other replica follows.
    let client =
        support::pg::client::connect(&router.config(SUPERUSER, SUPERUSER_PASSWORD)).await?;
    client
        .execute("insert into ha values (100, 1)", &[])
        .await?;
    wait_until(Duration::from_secs(10), || async {
        ensure!(pg.psql(2, "select count(*) from ha where writer = 100")? == "1");
        Ok(())
    })
    .await?;
    ensure!(pg.psql(0, "select count(*) from ha where writer = 100")? == "0");

    // A second switchover to a fenced node, and bad requests, are refused.
    let old = format!("127.0.0.1:{}", pg.node(0).port);
    let (code, body) = operator_post(
        &router,
        "/v1/clusters/main/switchover",
        &format!(r#"{{"to": "{old}"}}"#),
    )?;
    ensure!(
        code == 409,
        "switchover to the fenced node answered {code}: {body}"
    );
    let (code, _) = operator_post(&router, "/v1/clusters/main/switchover", "{}")?;
    ensure!(code == 400, "an empty switchover request answered {code}");
    let (code, _) = operator_post(
        &router,
        "/v1/clusters/nope/promote",
        r#"{"node": "127.0.0.1:1"}"#,
    )?;
    ensure!(code == 404, "an unknown cluster answered {code}");
    let rejoin = format!("/v1/clusters/main/nodes/{old}/rejoin");
    let (code, body) = operator_post(&router, &rejoin, "")?;
    ensure!(
        code == 409
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("not in recovery")),
        "rejoining a node that is still a primary answered {code}: {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_to_the_primary_does_not_promote() -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    let relay = Relay::start(pg.node(0).port).await?;
    let nodes = vec![
        format!(
            r#"{{ addr = "127.0.0.1:{}", role = "primary" }}"#,
            relay.port
        ),
        format!(
            r#"{{ addr = "127.0.0.1:{}", role = "replica" }}"#,
            pg.node(1).port
        ),
        format!(
            r#"{{ addr = "127.0.0.1:{}", role = "replica" }}"#,
            pg.node(2).port
        ),
    ];
    let router = Router::start_nodes(&nodes, SETTINGS, &[&superuser()])?;
    all_healthy(&router).await?;
    relay.cut();
    let s = wait_until(Duration::from_secs(10), || async {
        let s = status(&router)?;
        let held = s["failover"]["held_back"]["reason"].as_str().unwrap_or("");
        ensure!(
            s["nodes"][0]["down"] == true && held.contains("still streams"),
            "{}",
            s["failover"]
        );
        Ok(s)
    })
    .await?;
    eprintln!("held back: {}", s["failover"]["held_back"]);
    // Several more rounds of the watcher: still no promotion.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let s = status(&router)?;
        ensure!(
            s["nodes"][0]["role"] == "primary",
            "promoted after a cut link: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(pg.psql(1, "select pg_is_in_recovery()")? == "t");
    ensure!(pg.psql(2, "select pg_is_in_recovery()")? == "t");
    relay.restore();
    wait_until(Duration::from_secs(10), || async {
        let s = status(&router)?;
        ensure!(
            s["nodes"][0]["reachable"] == true && s["failover"]["held_back"].is_null(),
            "{}",
            s["failover"]
        );
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_during_a_failover_leave_one_primary_and_one_config() -> anyhow::Result<()> {
    let Some(mut pg) = PgCluster::start(2)? else {
        return Ok(());
    };
    let router = Router::start(&pg, SETTINGS, &[&superuser()])?;
    all_healthy(&router).await?;
    let path = router.sy.config_path().to_path_buf();
    let original = std::fs::read_to_string(&path)?;
    pg.kill(0);
    // The operator's stale file (old roles), rewritten with a changing pool size while the
    // failover runs and after it.
    for i in 0..30 {
        let text = original.replace(
            "[[postgres.clusters]]",
            &format!("[[postgres.clusters]]\npool = {{ max_size = {} }}", 10 + i),
        );
        std::fs::write(&path, text)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = wait_until(Duration::from_secs(15), || async {
        let s = status(&router)?;
        ensure!(
            s["failover"]["history"][0]["outcome"] == "ok",
            "{}",
            s["failover"]
        );
        Ok(s)
    })
    .await?;
    let primaries: Vec<_> = s["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["role"] == "primary")
        .collect();
    ensure!(
        primaries.len() == 1 && primaries[0]["addr"] != s["nodes"][0]["addr"],
        "{s}"
    );
    // The running config (GET /v1/config) says the same as the router, and a stale file
    // written now is refused with the reason.
    let running = tokio::task::block_in_place(|| {
        router
            .sy
            .send(Request::get("/v1/config?format=json").bearer(support::config::VIEWER))
    })?
    .json()?;
    let nodes = &running["postgres"]["clusters"][0]["nodes"];
    let configured: Vec<_> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["role"] == "primary")
        .collect();
    ensure!(
        configured.len() == 1 && configured[0]["addr"] == primaries[0]["addr"],
        "config and router disagree: {nodes}"
    );
    ensure!(
        nodes[0]["fenced"].is_string(),
        "the old primary is not fenced in the running config: {nodes}"
    );
    std::fs::write(&path, &original)?;
    wait_until(Duration::from_secs(10), || async {
        let top = tokio::task::block_in_place(|| router.sy.status())?;
        let e = top["last_reload_error"].to_string();
        ensure!(e.contains("fenced"), "no refusal of the stale file: {e}");
        Ok(())
    })
    .await?;
    Ok(())
}
