//! One check of one node with tokio-postgres: a single query on a connection the monitor
//! keeps open between checks (reopened after any failure, or when the login changes), all of
//! it within `check_timeout`.
//!
//! Failures are told apart ([`ErrorKind`]) from the error tokio-postgres gives, or, when the
//! connection just broke, from the error its connection task ended with: the server sends
//! 57P01 to every session when it shuts down, which is how an administrator's shutdown is
//! distinguished from a crash or a network cut.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::lsn::Lsn;
use super::state::{lock, CheckError, ErrorKind, Observed};

/// What the check asks: role, WAL positions, replay age, WAL receiver state. One round trip.
/// `pg_current_wal_lsn()` fails on a standby, hence the `case`.
const QUERY: &str = "select pg_is_in_recovery(), \
     case when pg_is_in_recovery() then null else pg_current_wal_lsn() end, \
     pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     extract(epoch from now() - pg_last_xact_replay_timestamp()), \
     (select coalesce(status, 'unknown') from pg_stat_wal_receiver limit 1)";

/// Where and as whom the monitor logs in.
#[derive(Clone)]
pub(super) struct Login {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// The cluster's `server_tls` (compared by mode: a changed CA file applies at the next
    /// reconnection).
    pub tls: Arc<crate::net::tls::ServerTls>,
}

impl PartialEq for Login {
    fn eq(&self, other: &Self) -> bool {
        (&self.host, self.port, &self.user, &self.password)
            == (&other.host, other.port, &other.user, &other.password)
            && (self.tls.mode, self.tls.verified) == (other.tls.mode, other.tls.verified)
    }
}

impl Eq for Login {}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An open monitor connection. Dropping it stops its connection task.
pub(super) struct MonitorConn {
    client: Client,
    login: Login,
    /// The error the connection task ended with, once it has.
    ended: Arc<Mutex<Option<tokio_postgres::Error>>>,
    task: JoinHandle<()>,
}

impl Drop for MonitorConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Check the node `login` points at, reusing `conn` when it is still good.
pub(super) async fn check(
    conn: &mut Option<MonitorConn>,
    login: &Login,
    timeout: Duration,
) -> Result<Observed, CheckError> {
    let outcome = match tokio::time::timeout(timeout, attempt(conn, login)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CheckError::new(
            ErrorKind::TimedOut,
            format!("no answer within {timeout:?} (failover.check_timeout)"),
        )),
    };
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

async fn attempt(slot: &mut Option<MonitorConn>, login: &Login) -> Result<Observed, CheckError> {
    // What ended the previous connection, if something did since the last check.
    let mut ended_by = None;
    if let Some(c) = slot.take() {
        if c.client.is_closed() {
            ended_by = lock(&c.ended).take().map(|e| classify(&e));
        } else if c.login == *login {
            *slot = Some(c);
        }
    }
    let conn = match slot {
        Some(c) => c,
        None => match connect(login).await {
            Ok(c) => slot.insert(c),
            // A refused reconnect right after the server said it was shutting down is
            // reported as that shutdown: the more telling of the two.
            Err(e) => {
                return Err(match ended_by {
                    Some(before) if before.kind == ErrorKind::AdminShutdown => before,
                    _ => e,
                })
            }
        },
    };
    let messages = match conn.client.simple_query(QUERY).await {
        Ok(m) => m,
        Err(e) if e.as_db_error().is_none() && e.is_closed() => {
            // Let the connection task record why it ended.
            tokio::task::yield_now().await;
            return Err(lock(&conn.ended)
                .as_ref()
                .map_or_else(|| classify(&e), classify));
        }
        Err(e) => return Err(classify(&e)),
    };
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| CheckError::new(ErrorKind::BadAnswer, "the check query returned no row"))?;
    let mut fields = [None; 6];
    for (i, f) in fields.iter_mut().enumerate() {
        *f = row
            .try_get(i)
            .map_err(|e| CheckError::new(ErrorKind::BadAnswer, e.to_string()))?;
    }
    observe(&fields)
}

async fn connect(login: &Login) -> Result<MonitorConn, CheckError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&login.host)
        .port(login.port)
        .user(&login.user)
        .dbname("postgres")
        .application_name("switchyard-monitor");
    if let Some(p) = &login.password {
        config.password(p);
    }
    let (client, connection) = login
        .tls
        .connect_postgres(&mut config)
        .await
        .map_err(|e| classify(&e))?;
    let ended = Arc::new(Mutex::new(None));
    let record = ended.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            *lock(&record) = Some(e);
        }
    });
    Ok(MonitorConn {
        client,
        login: login.clone(),
        ended,
        task,
    })
}

/// The check's answer, column by column as text.
pub(super) fn observe(fields: &[Option<&str>; 6]) -> Result<Observed, CheckError> {
    let bad = |what: String| CheckError::new(ErrorKind::BadAnswer, what);
    let lsn = |f: Option<&str>| {
        f.map(str::parse::<Lsn>)
            .transpose()
            .map_err(|e| bad(e.to_string()))
    };
    let in_recovery = match fields[0] {
        Some("t") => true,
        Some("f") => false,
        other => return Err(bad(format!("pg_is_in_recovery() gave {other:?}"))),
    };
    let replay_age = match fields[4] {
        None => None,
        Some(s) => {
            let secs: f64 = s
                .parse()
                .map_err(|_| bad(format!("replay timestamp age {s:?}")))?;
            // Negative when the primary's clock is ahead of the replica's.
            Duration::try_from_secs_f64(secs.max(0.0)).ok()
        }
    };
    Ok(Observed {
        in_recovery,
        current_lsn: lsn(fields[1])?,
        receive_lsn: lsn(fields[2])?,
        replay_lsn: lsn(fields[3])?,
        replay_age,
        wal_receiver: fields[5].map(|s| s.chars().take(32).collect()),
    })
}

/// What kind of failure `e` is.
fn classify(e: &tokio_postgres::Error) -> CheckError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let kind = sqlstate_kind(code);
        return CheckError::new(kind, format!("{code}: {}", db.message()));
    }
    // tokio-postgres' own message is generic ("error connecting to server"): add the causes.
    let mut message = e.to_string();
    let mut kind = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = kind.or(Some(io_kind(io.kind())));
        }
        source = s.source();
    }
    let kind = kind.unwrap_or(if e.is_closed() {
        ErrorKind::ConnectionLost
    } else {
        ErrorKind::Io
    });
    CheckError::new(kind, message)
}

pub(super) fn sqlstate_kind(code: &str) -> ErrorKind {
    match code {
        "57P01" | "57P02" | "57P03" => ErrorKind::AdminShutdown,
        c if c.starts_with("28") => ErrorKind::Auth,
        _ => ErrorKind::Server,
    }
}

pub(super) fn io_kind(kind: std::io::ErrorKind) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match kind {
        Io::ConnectionRefused => ErrorKind::Refused,
        Io::TimedOut => ErrorKind::TimedOut,
        Io::UnexpectedEof | Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe => {
            ErrorKind::ConnectionLost
        }
        _ => ErrorKind::Io,
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
