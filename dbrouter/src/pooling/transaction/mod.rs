//! Transaction pooling (`pool_mode = "transaction"`): a client holds a server connection only
//! for a *turn* — from the first message of a transaction, a single statement or an
//! extended-protocol batch, until the server's `ReadyForQuery` says idle and the client is
//! not between a `Parse` and its `Sync` — and the connection then goes back to the node's
//! pool as it is, for any client of the same user and database.
//!
//! What a session would otherwise lose between turns is carried by the router:
//! - **Parameters** ([`params`]): each client's `SET`s (and startup parameters such as
//!   `application_name`) are tracked and replayed on whichever server connection it gets;
//!   each server connection's known values are kept with it
//!   ([`crate::server::conn::ServerState`]).
//! - **Prepared statements** ([`prepared`]): named statements are renamed to global names
//!   and prepared on each server connection on first use.
//! - **Everything else** (`LISTEN`, session advisory locks, temporary tables, cursors
//!   `WITH HOLD`, SQL `PREPARE`, `SET SESSION AUTHORIZATION`), found by [`sql::inspect`],
//!   *pins* the client: it keeps its server connection to the end, as in session mode, and
//!   the connection is reset with `DISCARD ALL` before reuse.
//!
//! With `routing.read_write_split`, each turn is routed as a whole by its first statement
//! (see `TxRelay::hold`): a read to a replica's pool, anything else to the primary's.
//!
//! The relay (`relay`) reads whole messages both ways on one task, follows what the server
//! owes ([`expect`]) and writes as the sockets allow, so neither direction blocks the other.
//!
//! At login ([`serve`]) the client's startup parameters are split: user, database and any
//! parameter not in [`params::REPLAYED_STARTUP`] key the pool (server connections are
//! opened with them); the rest are the client's own values, replayed. The login checks out a
//! connection, replays, tells the client the server's `ParameterStatus` values, our
//! `BackendKeyData` and `ReadyForQuery`, and gives the connection back at once; when none is
//! free it answers from the latest fresh login instead of waiting. When the client leaves,
//! what it left in flight may finish (within a bound), then the connection it holds goes
//! back only in a state another client can use: idle as it is, in a transaction after a
//! `ROLLBACK`, pinned (or with parameter changes not read back) after `DISCARD ALL`; left
//! mid-batch or mid-`COPY`, it is closed.
//!
//! Gets its server connections through [`crate::server::upstream::Upstream`], its routing
//! from [`crate::route`], and the health verdicts and per-node state through [`Shared`]; must
//! not import the client side, the failover procedures, or session pooling.

pub mod expect;
pub mod handoff;
pub mod nodes;
pub mod params;
pub mod prepared;
pub mod report;
pub mod sql;

mod client;
mod held;
mod io;
mod relay;
mod server;
#[cfg(test)]
mod sizes_tests;
mod state;

pub use nodes::{Shared, TxNode, TxNodes};

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use self::params::{replay_sql, Params, REPLAYED_STARTUP};
use self::relay::{Held, TxEnd, TxRelay};
use self::report::TxMetrics;
use self::state::ClientState;
use crate::cancel::CancelKey;
use crate::net::read::read_frame;
use crate::net::stream::PgStream;
use crate::server::conn::{ClientErrorOrFrame, ServerConn};
use crate::server::pool;
use crate::server::upstream::Upstream;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::backend::{error_message, parameter_status_fields};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, put};
use switchyard_pgwire::frontend::put_query;
use switchyard_pgwire::startup::StartupParams;

// === a session, from login to goodbye ===

/// Longest the router's own queries at login and logout may take.
const OWN_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the last bytes due to a client that is being closed may take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve a logged-in client in transaction pooling. `out` holds what is already due to it
/// (`AuthenticationOk`); `pending`, what it sent past its login.
pub async fn serve(
    up: &Upstream<'_>,
    shared: Shared<'_>,
    client: &mut PgStream,
    pending: BytesMut,
    params: &StartupParams,
    mut out: BytesMut,
    cancel: &CancelKey,
) -> Result<&'static str, ClientError> {
    let mut server_params: Vec<(&str, &str)> = Vec::new();
    let mut startup = Params::new();
    for (k, v) in &params.params {
        let lower = k.to_ascii_lowercase();
        if k.starts_with("_pq_.") || k == "replication" {
            continue;
        } else if REPLAYED_STARTUP.contains(&lower.as_str()) {
            startup.insert(lower, v.clone());
        } else {
            server_params.push((k, v));
        }
    }
    let key = format!("tx\0{}", pool::key(&server_params));

    // Boxed, as the client's login: the server checkout's futures do not stay in the
    // session's task for its whole life.
    let me = match Box::pin(login(up, &key, &server_params, startup, &mut out)).await? {
        Some(me) => me,
        None => {
            let _ = client.write_all(&out).await;
            return Ok("the server refused the login");
        }
    };
    message::backend_key_data(&mut out, cancel.pid, cancel.secret);
    message::ready_for_query(&mut out, b'I');
    client
        .write_all(&out)
        .await
        .map_err(|_| ClientError::fatal(SqlState::CONNECTION_FAILURE, "client connection lost"))?;
    drop(out);
    let session = LoggedIn {
        pending,
        me,
        key: &key,
        server_params: &server_params,
    };
    relay_session(up, shared, client, session, cancel).await
}

/// Go on with a session another process handed over ([`handoff`]): no login, its state as
/// it was between two transactions.
pub async fn resume(
    up: &Upstream<'_>,
    shared: Shared<'_>,
    client: &mut PgStream,
    handoff: handoff::Handoff,
    cancel: &CancelKey,
) -> Result<&'static str, ClientError> {
    let server_params: Vec<(&str, &str)> = handoff
        .server_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let key = format!("tx\0{}", pool::key(&server_params));
    let me = handoff.client_state(&shared.nodes.get(up.cluster, &up.node));
    let pending = BytesMut::from(&handoff.pending[..]);
    let session = LoggedIn {
        pending,
        me,
        key: &key,
        server_params: &server_params,
    };
    relay_session(up, shared, client, session, cancel).await
}

/// A session past its login (or handed over): what the relay starts from.
struct LoggedIn<'a> {
    /// What the client sent that is not handled yet.
    pending: BytesMut,
    me: ClientState,
    /// Pool key and startup parameters of its server connections.
    key: &'a str,
    server_params: &'a [(&'a str, &'a str)],
}

/// The relay of a logged-in session, to its end.
async fn relay_session(
    up: &Upstream<'_>,
    shared: Shared<'_>,
    client: &mut PgStream,
    session: LoggedIn<'_>,
    cancel: &CancelKey,
) -> Result<&'static str, ClientError> {
    let LoggedIn {
        pending,
        me,
        key,
        server_params,
    } = session;
    let key = key.to_string();
    let mut relay = TxRelay {
        up,
        verdicts: shared.verdicts,
        node: shared.nodes.get(up.cluster, &up.node),
        key: &key,
        server_params,
        cancel,
        metrics: TxMetrics::new(up.cluster, &up.node),
        client,
        cbuf: pending,
        to_client: BytesMut::new(),
        held: None,
        me,
        pinned: None,
        skip_to_sync: false,
        route_override: None,
        lost: None,
        turn_writes: false,
        min_lsn: None,
        gate: None,
        resume: false,
        spare: Default::default(),
        pools: Vec::new(),
        closing: shared.closing,
        close_seen: crate::closing::Mode::Open,
    };
    let end = relay.run().await;
    if matches!(
        end,
        TxEnd::Terminated | TxEnd::ClientClosed { .. } | TxEnd::ClientIo(_)
    ) {
        // Boxed (as `give_back` below): what runs once at the end does not size the
        // session's task while it is idle.
        Box::pin(relay.settle(OWN_QUERY_TIMEOUT)).await;
    }
    cancel.set_server(None);
    let (held, pinned, unsent) = (relay.held.take(), relay.pinned, relay.to_client.split());
    let (me, unread) = (std::mem::take(&mut relay.me), relay.cbuf.split());
    drop(relay);
    let cluster = up.cluster;
    match end {
        TxEnd::Terminated | TxEnd::ClientClosed { .. } | TxEnd::ClientIo(_) => {
            match &end {
                TxEnd::ClientClosed { between_messages } => {
                    tracing::debug!(cluster, between_messages, "client closed its connection")
                }
                TxEnd::ClientIo(e) => {
                    tracing::debug!(cluster, error = %e, "client connection lost")
                }
                _ => {}
            }
            if let Some(h) = held {
                Box::pin(give_back(up, key, h, pinned.is_some())).await;
            }
            Ok(if matches!(end, TxEnd::Terminated) {
                "client left"
            } else {
                "client connection lost"
            })
        }
        TxEnd::HandOver => {
            let state = handoff::Handoff::of(
                cluster,
                &up.user.name,
                server_params,
                &me,
                (cancel.pid, cancel.secret),
                &unread,
            );
            let handed = match (serde_json::to_vec(&state), client.tcp_fd()) {
                (Ok(json), Ok(fd)) => shared.closing.hand(json, fd),
                _ => false,
            };
            if handed {
                // Its socket lives on in the new process: closed here without a shutdown.
                tracing::debug!(
                    cluster,
                    client = cancel.pid,
                    "session handed to the new process"
                );
                return Ok("handed to the new process");
            }
            let mut bye = BytesMut::new();
            crate::closing::goodbye(&mut bye);
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.write_all(&bye)).await;
            let _ = client.shutdown().await;
            Ok("closed between transactions by the drain")
        }
        TxEnd::Closed => {
            if let Some(h) = held {
                Box::pin(give_back(up, key, h, pinned.is_some())).await;
            }
            let mut bye = BytesMut::new();
            crate::closing::goodbye(&mut bye);
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.write_all(&bye)).await;
            let _ = client.shutdown().await;
            Ok("closed between transactions by the drain")
        }
        other => {
            if !unsent.is_empty() {
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.write_all(&unsent)).await;
            }
            match other {
                TxEnd::ServerClosed => Ok("server closed the connection"),
                TxEnd::ServerIo(e) => {
                    tracing::warn!(cluster, node = %up.node, error = %e, "server connection lost");
                    Ok("server connection lost")
                }
                TxEnd::ServerViolation(e) => {
                    tracing::warn!(cluster, node = %up.node, error = %e, "server connection out of step");
                    Err(ClientError::fatal(
                        SqlState::CONNECTION_FAILURE,
                        format!("lost step with the server connection: {e}"),
                    ))
                }
                TxEnd::ClientViolation(e) => {
                    Err(ClientError::fatal(SqlState::PROTOCOL_VIOLATION, e))
                }
                TxEnd::Refused(ClientErrorOrFrame::Error(e)) => Err(e),
                TxEnd::Refused(ClientErrorOrFrame::Frame(f)) => {
                    let _ = client.write_all(&f.to_wire()).await;
                    Ok("the server refused a login")
                }
                _ => Ok("client left"),
            }
        }
    }
}

/// Log the client in: the `ParameterStatus` messages it is told go to `out`, and its state
/// comes back (`None`: the server refused the login, its error is in `out`).
///
/// With a server connection to be had at once, its parameters are set to the client's and
/// the client is told the server's values. When every connection is busy, the client is
/// not kept waiting: it is told the values of the latest fresh login with its own startup
/// values in place, and its first turn sets them (a value the server refuses then ends the
/// session instead of the login).
async fn login(
    up: &Upstream<'_>,
    key: &str,
    server_params: &[(&str, &str)],
    startup: Params,
    out: &mut BytesMut,
) -> Result<Option<ClientState>, ClientError> {
    let mut me = ClientState {
        params: startup.clone(),
        startup,
        ..ClientState::default()
    };
    let cached = up.pool.login_status(key);
    if let (Some(frames), false) = (&cached, up.pool.can_serve_now(key, &up.settings())) {
        for f in frames {
            let Some((name, value)) = parameter_status_fields(&f.body) else {
                continue;
            };
            let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = me.startup.get(&lower).map_or(value, |v| v.as_bytes());
            me.reported.insert(name, value);
            put(out, b'S', &[name, b"\0", value, b"\0"]);
        }
        return Ok(Some(me));
    }
    let mut notices = BytesMut::new();
    let mut conn = match up.checkout(key, server_params, &mut notices).await {
        Ok(conn) => conn,
        Err(ClientErrorOrFrame::Error(e)) => return Err(e),
        Err(ClientErrorOrFrame::Frame(f)) => {
            out.extend_from_slice(&f.to_wire());
            return Ok(None);
        }
    };
    let replayed = tokio::time::timeout(OWN_QUERY_TIMEOUT, set_params(&mut conn.conn, &me.params));
    // The replay's notices (a value the server adjusted, such as a truncated
    // `application_name`) are the client's, as they would be from its own startup.
    let replay_notices = match replayed.await {
        Ok(Ok(n)) => n,
        Ok(Err(Some(e))) => {
            // The replay was one implicit transaction: it left nothing behind.
            up.pool.put_back(key.to_string(), conn, &up.settings());
            return Err(ClientError::fatal(SqlState::CONNECTION_REJECTED, e));
        }
        Ok(Err(None)) | Err(_) => {
            return Err(ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                "lost the server connection while setting this session's parameters",
            ))
        }
    };
    out.extend_from_slice(&notices);
    out.extend_from_slice(&replay_notices);
    for p in &conn.conn.parameter_status {
        out.extend_from_slice(&p.to_wire());
        if let Some((name, value)) = parameter_status_fields(&p.body) {
            me.reported.insert(name, value);
        }
    }
    up.pool.put_back(key.to_string(), conn, &up.settings());
    Ok(Some(me))
}

/// The client left while holding `h`: reuse it if it can be made clean, else close it.
async fn give_back(up: &Upstream<'_>, key: String, mut h: Held, pinned: bool) {
    if !h.quiet() || h.dirty.is_some() {
        // A request in flight (its answer would reach the next client): close.
        return;
    }
    if h.conn.conn.status != b'I' {
        let rolled_back =
            tokio::time::timeout(OWN_QUERY_TIMEOUT, own_query(&mut h.conn.conn, "ROLLBACK"));
        if !matches!(rolled_back.await, Ok(Ok(_))) || h.conn.conn.status != b'I' {
            return;
        }
        tracing::debug!(cluster = %up.cluster, "rolled back the transaction of a client that left");
    }
    let settings = up.settings();
    if pinned || !h.ops.is_empty() {
        // Session state the router does not know (it pinned, or changed parameters that
        // were not read back yet) must not reach the next client: DISCARD ALL.
        h.pool.clone().release(key, h.conn, &settings).await;
    } else {
        h.pool.put_back(key, h.conn, &settings);
    }
}

/// Make `conn`'s parameters `want` (the login replay); the server's notices come back, as
/// messages. `Err(Some(message))`: the server refused a value; `Err(None)`: the connection
/// failed.
async fn set_params(conn: &mut ServerConn, want: &Params) -> Result<BytesMut, Option<String>> {
    let Some(sql) = replay_sql(want, &conn.state.params) else {
        return Ok(BytesMut::new());
    };
    let notices = own_query(conn, &sql).await?;
    conn.state.params = want.clone();
    Ok(notices)
}

/// Run `sql` on an idle `conn` and read to its `ReadyForQuery`, keeping `ParameterStatus`
/// news. Returns the `NoticeResponse`s it got, as messages (the caller decides whether they
/// are the client's). `Err(Some(message))` if it failed.
async fn own_query(conn: &mut ServerConn, sql: &str) -> Result<BytesMut, Option<String>> {
    let mut out = BytesMut::new();
    put_query(&mut out, sql);
    conn.stream.write_all(&out).await.map_err(|_| None)?;
    let mut buf = BytesMut::new();
    let mut error = None;
    let mut notices = BytesMut::new();
    loop {
        let f = read_frame(&mut conn.stream, &mut buf, frame::backend_limit)
            .await
            .map_err(|_| None)?;
        match f.tag {
            b'E' => error = Some(error_message(&f.body)),
            b'N' => notices.extend_from_slice(&f.to_wire()),
            b'S' => conn.set_parameter_status(f),
            b'G' | b'H' | b'W' => return Err(None),
            b'Z' => {
                conn.status = f.body.first().copied().unwrap_or(0);
                if !buf.is_empty() {
                    return Err(None);
                }
                return error.map_or(Ok(notices), |e| Err(Some(e)));
            }
            _ => {}
        }
    }
}
