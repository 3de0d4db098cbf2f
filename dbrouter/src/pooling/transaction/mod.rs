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
mod end;
mod held;
mod io;
mod own;
mod relay;
mod server;
#[cfg(test)]
mod sizes_tests;
mod state;

pub use nodes::{Shared, TxNode, TxNodes};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use self::own::{set_params, OWN_QUERY_TIMEOUT};
use self::params::{Params, REPLAYED_STARTUP};
use self::relay::TxRelay;
use self::report::TxMetrics;
use self::state::ClientState;
use crate::cancel::CancelKey;
use crate::net::stream::PgStream;
use crate::server::conn::ClientErrorOrFrame;
use crate::server::pool;
use crate::server::upstream::Upstream;
use switchyard_pgwire::backend::parameter_status_fields;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::put;
use switchyard_pgwire::startup::StartupParams;

// === a session, from login to goodbye ===

/// Serve a logged-in client in transaction pooling. `out` holds what is already due to it
/// (`AuthenticationOk`); `pending`, what it sent past its login.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` keeps
/// a second copy of each argument it takes by value for the whole session.
// By hand, not `async fn`: see above.
#[allow(clippy::manual_async_fn)]
pub fn serve<'a>(
    up: &'a Upstream<'a>,
    shared: Shared<'a>,
    client: &'a mut PgStream,
    pending: BytesMut,
    params: &'a StartupParams,
    out: BytesMut,
    cancel: &'a CancelKey,
) -> impl std::future::Future<Output = Result<&'static str, ClientError>> + Send + 'a {
    async move {
        let (server_params, startup) = split_startup(params);
        let key = format!("tx\0{}", pool::key(&server_params));
        // Boxed, as the client's login: the server checkout's futures do not stay in the
        // session's task for its whole life.
        let welcomed = Box::pin(welcome(
            up,
            &key,
            &server_params,
            startup,
            client,
            out,
            cancel,
        ));
        let Some(me) = welcomed.await? else {
            return Ok("the server refused the login");
        };
        let session = LoggedIn::new(pending, me, &key, &server_params);
        to_end(session, up, shared, client, cancel).await
    }
}

/// The client's startup parameters split: those that key the pool (its server connections
/// are opened with them), and those that are the client's own values, replayed.
fn split_startup(params: &StartupParams) -> (Vec<(&str, &str)>, Params) {
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
    (server_params, startup)
}

/// Log the client in ([`login`]) and tell it so: its `ParameterStatus` values, our
/// `BackendKeyData` and `ReadyForQuery` after what `out` holds. `None`: the server refused
/// the login, and the client was told why.
async fn welcome(
    up: &Upstream<'_>,
    key: &str,
    server_params: &[(&str, &str)],
    startup: Params,
    client: &mut PgStream,
    mut out: BytesMut,
    cancel: &CancelKey,
) -> Result<Option<ClientState>, ClientError> {
    let Some(me) = login(up, key, server_params, startup, &mut out).await? else {
        let _ = client.write_all(&out).await;
        return Ok(None);
    };
    message::backend_key_data(&mut out, cancel.pid, cancel.secret);
    message::ready_for_query(&mut out, b'I');
    client
        .write_all(&out)
        .await
        .map_err(|_| ClientError::fatal(SqlState::CONNECTION_FAILURE, "client connection lost"))?;
    Ok(Some(me))
}

/// Go on with a session another process handed over ([`handoff`]): no login, its state as
/// it was between two transactions.
// By hand, not `async fn`, as `serve`.
#[allow(clippy::manual_async_fn)]
pub fn resume<'a>(
    up: &'a Upstream<'a>,
    shared: Shared<'a>,
    client: &'a mut PgStream,
    handoff: handoff::Handoff,
    cancel: &'a CancelKey,
) -> impl std::future::Future<Output = Result<&'static str, ClientError>> + Send + 'a {
    async move {
        let server_params: Vec<(&str, &str)> = handoff
            .server_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = format!("tx\0{}", pool::key(&server_params));
        let me = handoff.client_state(&shared.nodes.get(up.cluster, &up.node));
        let pending = BytesMut::from(&handoff.pending[..]);
        let session = LoggedIn::new(pending, me, &key, &server_params);
        to_end(session, up, shared, client, cancel).await
    }
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

impl<'a> LoggedIn<'a> {
    fn new(
        pending: BytesMut,
        me: ClientState,
        key: &'a str,
        server_params: &'a [(&'a str, &'a str)],
    ) -> Self {
        LoggedIn {
            pending,
            me,
            key,
            server_params,
        }
    }
}

/// Relay a logged-in session to its end. The relay is made here, before the future: the
/// future holds it once, not also the `session` it was made from.
fn to_end<'a>(
    session: LoggedIn<'a>,
    up: &'a Upstream<'a>,
    shared: Shared<'a>,
    client: &'a mut PgStream,
    cancel: &'a CancelKey,
) -> impl std::future::Future<Output = Result<&'static str, ClientError>> + Send + 'a {
    let node = shared.nodes.get(up.cluster, &up.node);
    let mut me = session.me;
    me.reported.share(&node.reported);
    let mut relay = TxRelay {
        up,
        verdicts: shared.verdicts,
        node,
        key: session.key,
        server_params: session.server_params,
        cancel,
        metrics: TxMetrics::new(up.cluster, &up.node),
        client,
        cbuf: session.pending,
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
        pools: Vec::new(),
        closing: shared.closing,
        close_seen: crate::closing::Mode::Open,
    };
    async move {
        let end = relay.run().await;
        // Boxed: what runs once at the end does not size the session's task while it is idle.
        Box::pin(end::finish(relay, end)).await
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
