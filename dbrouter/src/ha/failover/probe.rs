//! The failover's own conversations with nodes, each on a short tokio-postgres connection of
//! its own, within a time limit: a replica's report (second opinion and WAL position), the
//! primary's synchronous standbys, promotion, re-pointing a replica, draining an old primary.
//!
//! They log in as the cluster's first user, like the monitor; promoting and re-pointing need
//! a superuser (or the grants for `pg_promote`, `ALTER SYSTEM` and `pg_reload_conf`).

use std::time::Duration;

use switchyard_config::Address;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::conninfo;
use crate::ha::monitor::Lsn;
use crate::runtime::ClusterRuntime;

/// Where and as whom to log in.
#[derive(Clone)]
pub struct NodeLogin {
    pub addr: Address,
    user: String,
    password: Option<String>,
    tls: std::sync::Arc<crate::net::tls::ServerTls>,
}

impl std::fmt::Debug for NodeLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeLogin({} as {})", self.addr, self.user)
    }
}

impl NodeLogin {
    /// Log in to `addr` as the first user of `rt`.
    pub fn new(rt: &ClusterRuntime, addr: &Address) -> Option<Self> {
        let first = rt.config.users.first()?;
        let user = rt.users.get(&first.name)?;
        Some(NodeLogin {
            addr: addr.clone(),
            user: user.name.clone(),
            password: user.password.clone(),
            tls: rt.server_tls.clone(),
        })
    }

    async fn connect(&self, limit: Duration) -> Result<Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.addr.host)
            .port(self.addr.port)
            .user(&self.user)
            .dbname("postgres")
            .application_name("switchyard-failover")
            .connect_timeout(limit);
        if let Some(p) = &self.password {
            config.password(p);
        }
        let (client, connection) =
            tokio::time::timeout(limit, self.tls.connect_postgres(&mut config))
                .await
                .map_err(|_| format!("no answer within {limit:?}"))?
                .map_err(|e| describe(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Run `sql` and return the first row's columns as text.
    async fn row(&self, sql: &str, limit: Duration) -> Result<Vec<Option<String>>, String> {
        let client = self.connect(limit).await?;
        first_row(&client, sql, limit).await
    }
}

async fn first_row(
    client: &Client,
    sql: &str,
    limit: Duration,
) -> Result<Vec<Option<String>>, String> {
    let messages = tokio::time::timeout(limit, client.simple_query(sql))
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
        .map_err(|e| describe(&e))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .ok_or_else(|| "the query returned no row".to_string())
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn lsn(v: &Option<String>) -> Option<Lsn> {
    v.as_deref().and_then(|s| s.parse().ok())
}

/// What a replica says at failover time.
#[derive(Debug, Clone)]
pub struct ReplicaReport {
    pub in_recovery: bool,
    /// Its WAL receiver streams from a primary right now.
    pub streaming: bool,
    /// `host:port` its WAL receiver streams from, when it streams.
    pub sender: Option<String>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// The name it streams under (`application_name` of `primary_conninfo`, else
    /// `cluster_name`, else `walreceiver`), to match `synchronous_standby_names`.
    pub standby_name: String,
}

impl ReplicaReport {
    /// How far its WAL goes: received, or replayed when nothing was received.
    pub fn position(&self) -> Lsn {
        self.receive_lsn.max(self.replay_lsn).unwrap_or(Lsn(0))
    }
}

const REPORT: &str = "select pg_is_in_recovery(), \
    exists (select 1 from pg_stat_wal_receiver where status = 'streaming'), \
    pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
    coalesce(substring(current_setting('primary_conninfo') from 'application_name=''?([^ '']+)'), \
             nullif(current_setting('cluster_name'), ''), 'walreceiver'), \
    (select sender_host || ':' || sender_port from pg_stat_wal_receiver where status = 'streaming' limit 1)";

/// Ask a replica how it stands.
pub async fn report(login: &NodeLogin, limit: Duration) -> Result<ReplicaReport, String> {
    let row = login.row(REPORT, limit).await?;
    let flag = |i: usize| row.get(i).and_then(|v| v.as_deref()) == Some("t");
    Ok(ReplicaReport {
        in_recovery: flag(0),
        streaming: flag(1),
        receive_lsn: row.get(2).and_then(lsn),
        replay_lsn: row.get(3).and_then(lsn),
        standby_name: row
            .get(4)
            .cloned()
            .flatten()
            .unwrap_or_else(|| "walreceiver".into()),
        sender: row.get(5).cloned().flatten(),
    })
}

/// The primary's synchronous replication: `synchronous_standby_names` is set, and the
/// standbys it counts as synchronous (or quorum) right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    pub synchronous: bool,
    pub standbys: Vec<String>,
}

const SYNC: &str = "select current_setting('synchronous_standby_names') <> '', \
    coalesce((select string_agg(application_name, ',') from pg_stat_replication \
              where sync_state in ('sync', 'quorum')), '')";

/// Ask a primary about its synchronous standbys, on `client` (kept by the caller).
pub async fn sync_state(client: &Client, limit: Duration) -> Result<SyncState, String> {
    let row = first_row(client, SYNC, limit).await?;
    Ok(SyncState {
        synchronous: row.first().and_then(|v| v.as_deref()) == Some("t"),
        standbys: row
            .get(1)
            .and_then(|v| v.as_deref())
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Open a connection to keep (the primary's, for [`sync_state`]).
pub async fn open(login: &NodeLogin, limit: Duration) -> Result<Client, String> {
    login.connect(limit).await
}

/// Promote a replica and wait (polling every 10 ms, faster than `pg_promote(wait => true)`
/// does) until it has left recovery.
pub async fn promote(login: &NodeLogin, limit: Duration) -> Result<(), String> {
    let client = login.connect(limit).await?;
    let row = first_row(&client, "select pg_promote(wait => false)", limit).await?;
    if row.first().and_then(|v| v.as_deref()) != Some("t") {
        return Err("pg_promote refused".into());
    }
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let row = first_row(&client, "select pg_is_in_recovery()", limit).await?;
        if row.first().and_then(|v| v.as_deref()) == Some("f") {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("still in recovery {limit:?} after pg_promote"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Point a replica at `primary`: its `primary_conninfo` keeps every other setting (user,
/// password, application name) with the new host and port.
pub async fn repoint(login: &NodeLogin, primary: &Address, limit: Duration) -> Result<(), String> {
    let client = login.connect(limit).await?;
    let row = first_row(&client, "select current_setting('primary_conninfo')", limit).await?;
    let old = row.first().cloned().flatten().unwrap_or_default();
    let new = conninfo::with_host_port(&old, &primary.host, primary.port)?;
    let sql = format!(
        "alter system set primary_conninfo = {}",
        conninfo::quote_literal(&new)
    );
    tokio::time::timeout(limit, client.batch_execute(&sql))
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
        .map_err(|e| describe(&e))?;
    first_row(&client, "select pg_reload_conf()", limit).await?;
    Ok(())
}

/// The primary's WAL position now.
pub async fn current_lsn(login: &NodeLogin, limit: Duration) -> Result<Lsn, String> {
    let row = login.row("select pg_current_wal_lsn()", limit).await?;
    row.first()
        .and_then(lsn)
        .ok_or_else(|| "no WAL position".to_string())
}

/// End every other client session on an old primary (a switchover's last step before
/// promotion): nothing can write to it through a connection opened before it was fenced.
pub async fn end_sessions(login: &NodeLogin, limit: Duration) -> Result<u64, String> {
    let row = login
        .row(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where backend_type = 'client backend' and pid <> pg_backend_pid()",
            limit,
        )
        .await?;
    Ok(row
        .first()
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}
