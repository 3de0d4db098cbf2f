//! A schema migration while application clients run prepared queries through the router in
//! transaction pooling (issue 16): the clients must see no error that the same clients
//! going straight to PostgreSQL do not see.
//!
//! Each run (direct, the control; then through the router) starts [`CLIENTS`] clients that
//! loop over prepared statements the way drivers with a statement cache do (asyncpg,
//! pgjdbc): prepare once, reuse, and on a server error drop the statement and retry once
//! with a fresh one. Each iteration also prepares one statement afresh. Meanwhile a
//! migration (through the same endpoint) adds a column, changes a column's type, and drops
//! and re-creates an enum type, waiting between steps until every client has run its
//! statements again, so that each client meets each change with its cached statements in
//! both runs. A client records the SQLSTATE of each server error it got, and as "bad"
//! anything a direct connection would never give: a retry with a fresh statement that
//! fails, rows it cannot decode or that hold wrong values.
//!
//! Skips (with a message) only when no PostgreSQL server binaries are installed.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use support::pg::client::{self as pg, Router};
use support::pg::PgCluster;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, Statement};

const CLIENTS: usize = 4;
const JOBS: i32 = 8;

/// The migration, step by step (each one string, one transaction).
const STEPS: &[&str] = &[
    "ALTER TABLE jobs ADD COLUMN note text",
    "ALTER TABLE jobs ALTER COLUMN n TYPE bigint",
    "BEGIN; ALTER TABLE jobs DROP COLUMN prio; DROP TYPE prio; \
     CREATE TYPE prio AS ENUM ('low', 'high', 'urgent'); \
     ALTER TABLE jobs ADD COLUMN prio prio NOT NULL DEFAULT 'low'; COMMIT",
];

const SCHEMA: &str = "DROP TABLE IF EXISTS jobs; DROP TYPE IF EXISTS prio; \
    CREATE TYPE prio AS ENUM ('low', 'high'); \
    CREATE TABLE jobs (id int PRIMARY KEY, n int NOT NULL, prio prio NOT NULL); \
    INSERT INTO jobs SELECT g, 0, 'low' FROM generate_series(1, 8) g";

const BY_ID: &str = "SELECT * FROM jobs WHERE id = $1";
const BUMP: &str = "UPDATE jobs SET n = n + 1 WHERE id = $1";
const BY_PRIO: &str = "SELECT id, prio FROM jobs WHERE prio = $1 ORDER BY id";

/// An enum value, as a parameter or a column (tokio-postgres has no impl for enums).
#[derive(Debug)]
struct Enum(String);

impl ToSql for Enum {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_))
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Enum {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Enum(std::str::from_utf8(raw)?.to_string()))
    }
    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_))
    }
}

/// What one run's clients saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Server errors by SQLSTATE, with one message each.
    errors: BTreeMap<String, String>,
    /// What no direct connection gives.
    bad: Vec<String>,
    iterations: usize,
}

/// One application client: a statement cache and its loop.
struct App {
    client: Client,
    cache: HashMap<&'static str, Statement>,
    out: Outcome,
}

impl App {
    async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.cache.insert(sql, s.clone());
        Ok(s)
    }

    /// Run `sql` from the cache; on a server error, record it, drop the statement and retry
    /// once with a fresh one (which must succeed).
    async fn run(&mut self, sql: &'static str, id: i32) {
        for attempt in 0..2 {
            let result = match self.statement(sql).await {
                Ok(stmt) => self.execute(sql, &stmt, id).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    self.cache.remove(sql);
                    match e.as_db_error() {
                        Some(db) if attempt == 0 => {
                            self.out
                                .errors
                                .entry(db.code().code().to_string())
                                .or_insert_with(|| format!("{sql}: {}", db.message()));
                        }
                        _ => {
                            self.out
                                .bad
                                .push(format!("{sql} (attempt {attempt}): {e:?}"));
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A server error (by SQLSTATE, after `what`), or a bad outcome.
    fn note(&mut self, what: &str, e: &tokio_postgres::Error) {
        match e.as_db_error() {
            Some(db) => {
                self.out
                    .errors
                    .entry(format!("{what}{}", db.code().code()))
                    .or_insert_with(|| db.message().to_string());
            }
            None => self.out.bad.push(format!("{what} {e:?}")),
        }
    }

    async fn execute(
        &mut self,
        sql: &str,
        stmt: &Statement,
        id: i32,
    ) -> Result<(), tokio_postgres::Error> {
        match sql {
            BY_ID => {
                let row = self.client.query_one(stmt, &[&id]).await?;
                let got: i32 = row.try_get("id")?;
                let col = row
                    .columns()
                    .iter()
                    .position(|c| c.name() == "n")
                    .unwrap_or(usize::MAX);
                let n = match row.columns().get(col).map(|c| c.type_().clone()) {
                    Some(Type::INT4) => i64::from(row.try_get::<_, i32>(col)?),
                    Some(Type::INT8) => row.try_get::<_, i64>(col)?,
                    other => {
                        self.out.bad.push(format!("column n of type {other:?}"));
                        return Ok(());
                    }
                };
                let prio: Enum = row.try_get("prio")?;
                if got != id || n < 0 || !["low", "high", "urgent"].contains(&prio.0.as_str()) {
                    self.out
                        .bad
                        .push(format!("wrong row for {id}: {got}, {n}, {prio:?}"));
                }
            }
            BUMP => {
                let n = self.client.execute(stmt, &[&id]).await?;
                if n != 1 {
                    self.out.bad.push(format!("{n} rows updated for {id}"));
                }
            }
            _ => {
                let rows = self.client.query(stmt, &[&Enum("low".into())]).await?;
                for row in &rows {
                    let prio: Enum = row.try_get(1)?;
                    if prio.0 != "low" {
                        self.out.bad.push(format!("prio {prio:?} for 'low'"));
                    }
                }
            }
        }
        Ok(())
    }

    /// One iteration: the cached statements, then one prepared afresh (a fresh statement
    /// sees the schema as it is now: any error on it is bad).
    async fn iteration(&mut self, i: usize) {
        let id = (i as i32 % JOBS) + 1;
        for sql in [BY_ID, BUMP, BY_PRIO] {
            self.run(sql, id).await;
        }
        // Executing it may meet a change made since it was prepared, as on a direct
        // connection (recorded by SQLSTATE); preparing it must not fail ("prepare:" errors).
        match self.client.prepare(BY_ID).await {
            Ok(fresh) => {
                if let Err(e) = self.execute(BY_ID, &fresh, id).await {
                    self.note("", &e);
                }
            }
            Err(e) => self.note("prepare:", &e),
        }
        self.out.iterations += 1;
    }
}

/// Run the clients and the migration through `config`; `admin` sets up the schema.
async fn scenario(config: &tokio_postgres::Config) -> anyhow::Result<Vec<Outcome>> {
    let admin = pg::connect(config).await?;
    admin.batch_execute(SCHEMA).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut app = App {
            client: pg::connect(config).await?,
            cache: HashMap::new(),
            out: Outcome::default(),
        };
        let (stop, progress) = (stop.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(SeqCst) {
                app.iteration(i).await;
                progress[c].fetch_add(1, SeqCst);
                i += 1;
            }
            app.out
        }));
    }
    // Before each step and at the end: every client has run its statements twice more.
    let wait_round = || async {
        let seen: Vec<usize> = progress.iter().map(|p| p.load(SeqCst)).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress
            .iter()
            .zip(&seen)
            .any(|(p, s)| p.load(SeqCst) < s + 2)
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the clients stopped making progress"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    };
    for step in STEPS {
        wait_round().await?;
        admin.batch_execute(step).await?;
    }
    wait_round().await?;
    stop.store(true, SeqCst);
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await?);
    }
    Ok(outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_under_load_gives_clients_no_error_a_direct_connection_does_not(
) -> anyhow::Result<()> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(());
    };
    pg.psql(0, "create role app login password 'app-pw' superuser;")?;
    let router = Router::start(
        &pg,
        "pool_mode = \"transaction\"\npool = { max_size = 3, checkout_timeout = \"10s\" }",
        &[r#"{ name = "app", password = "app-pw" }"#],
    )?;
    let direct_config = {
        let mut c = pg.config(0);
        c.user("app").password("app-pw");
        c
    };
    let direct = scenario(&direct_config).await?;
    let routed = scenario(&router.config("app", "app-pw")).await?;

    let codes = |o: &[Outcome]| -> BTreeSet<String> {
        o.iter().flat_map(|o| o.errors.keys().cloned()).collect()
    };
    let (direct_codes, routed_codes) = (codes(&direct), codes(&routed));
    let report = |o: &[Outcome]| -> String {
        o.iter()
            .map(|o| {
                format!(
                    "{} iterations, errors {:?}, bad {:?}",
                    o.iterations, o.errors, o.bad
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    let (direct_report, routed_report) = (report(&direct), report(&routed));
    eprintln!("direct:\n  {direct_report}\nthrough the router:\n  {routed_report}");
    for (name, o) in [("direct", &direct), ("routed", &routed)] {
        for o in o.iter() {
            anyhow::ensure!(o.bad.is_empty(), "{name} client saw: {:?}", o.bad);
        }
    }
    // The cached statements meet each change in both runs: the direct run sees the errors
    // a migration gives (0A000 at least), and the router adds none.
    anyhow::ensure!(
        direct_codes.contains("0A000"),
        "the control run saw no 0A000: {direct_report}"
    );
    // A `Parse` the router answered from a shared statement just before it saw the DDL
    // is checked at its first use (`TxRelay::probe`): no prepare-time 0A000 either.
    anyhow::ensure!(
        routed_codes.is_subset(&direct_codes),
        "through the router: {routed_codes:?}, direct: {direct_codes:?}\n{routed_report}"
    );
    Ok(())
}
