//! One client connection from accept to close: negotiation (`SSLRequest` answered `S` and a
//! TLS handshake when the cluster has `tls`, else `N`; `GSSENCRequest` answered `N`), a
//! `CancelRequest` forwarded to the right server, or a `StartupMessage`; then client
//! authentication, and the client served in its cluster's pool mode: session mode here (a
//! server connection to the primary for the whole session, the client's own
//! `BackendKeyData`, the byte relay of [`crate::pooling::session::relay`]), transaction mode in
//! [`crate::pooling::transaction`].
//!
//! A client past the cluster's `max_client_conn` ([`crate::client::admission`]) is still
//! negotiated with (so that it can read the error, over TLS if it asked), then told 53300
//! and closed, as PostgreSQL does with `max_connections`; its cancel requests still work.
//!
//! Every refusal is a [`ClientError`] written to that client alone before its connection is
//! closed; nothing here can end the listener or touch another client. Startup and
//! authentication together are bounded by [`STARTUP_TIMEOUT`], the server login by the
//! cluster's `pool.checkout_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use switchyard_config::PoolMode;

use super::services::Services;
use crate::cancel;
use crate::client::auth::{self, AuthError};
use crate::net::read::read_startup;
use crate::net::stream::PgStream;
use crate::net::tls::ClientTls;
use crate::pooling::{self, transaction};
use crate::server::upstream::Upstream;
use crate::stats::ClusterStats;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::startup::{Packet, StartupError, StartupParams};

/// Longest time from accept to a logged-in client (PostgreSQL's `authentication_timeout` is
/// 60 s; clients that are slower than this are not logging in).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `SSLRequest`/`GSSENCRequest` packets accepted before the `StartupMessage`.
const MAX_NEGOTIATIONS: usize = 2;

/// Serve one client of `cluster` to the end.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` keeps
/// a second copy of each argument it takes by value (the socket, the peer's address) in the
/// client's task for its whole life.
pub fn run(
    svc: Arc<Services>,
    cluster: Arc<str>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send {
    let _ = tcp.set_nodelay(true);
    let client = PgStream::plain(tcp);
    run_client(svc, cluster, client, peer)
}

/// [`run`], past the socket's setup (an `async move` block, as `run` says).
// By hand, not `async fn`: see above.
#[allow(clippy::manual_async_fn)]
fn run_client(
    svc: Arc<Services>,
    cluster: Arc<str>,
    mut client: PgStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let stats = svc.stats.get(&cluster);
        let _counted = stats.client();
        let rt = svc.live.cluster(&cluster);
        let max = rt.as_ref().map(|c| c.config.max_client_conn);
        let admitted = svc.admission.admit(&cluster, max);
        let tls = rt.and_then(|c| c.tls.clone());
        let outcome = serve(
            &svc,
            &cluster,
            &stats,
            &mut client,
            tls.as_deref(),
            admitted.is_some(),
        )
        .await;
        drop(admitted);
        match outcome {
            Ok(end) => {
                tracing::debug!(cluster = %cluster, client = %peer, end, "client session ended")
            }
            Err(e) => {
                stats.client_error(e.code.0);
                if e.code == SqlState::INVALID_PASSWORD {
                    stats.auth_failed();
                }
                tracing::info!(cluster = %cluster, client = %peer, sqlstate = e.code.0, error = %e.message, "client refused");
                let mut out = BytesMut::new();
                e.write(&mut out);
                let _ = client.write_all(&out).await;
                let _ = client.flush().await;
                let _ = client.shutdown().await;
            }
        }
    }
}

/// Serve a session another process handed over at a binary upgrade
/// ([`transaction::handoff`]): no negotiation, no login; it goes on in transaction pooling
/// with the state it had. A state this process cannot take (another format version, a
/// cluster or user no longer configured, no longer transaction pooling, a cancel key in use)
/// closes the client with 57P01, as a drain would have.
pub async fn resume(svc: Arc<Services>, tcp: TcpStream, state: transaction::handoff::Handoff) {
    let cluster: Arc<str> = state.cluster.as_str().into();
    let stats = svc.stats.get(&cluster);
    let _counted = stats.client();
    let _ = tcp.set_nodelay(true);
    let mut client = PgStream::plain(tcp);
    let rt = svc.live.cluster(&cluster);
    let _admitted = svc
        .admission
        .admit(&cluster, rt.as_ref().map(|c| c.config.max_client_conn));
    let taken = rt.and_then(|cluster_rt| {
        let fits = state.version == transaction::handoff::VERSION
            && cluster_rt.pool_mode == PoolMode::Transaction;
        let user = cluster_rt
            .users
            .get(&state.user)
            .cloned()
            .filter(|_| fits)?;
        let key = svc
            .cancel
            .adopt(cluster.clone(), state.cancel_pid, state.cancel_secret)?;
        Some((cluster_rt, user, key))
    });
    let Some((cluster_rt, user, key)) = taken else {
        tracing::warn!(cluster = %cluster, "a handed-over session could not be taken: closed");
        let mut bye = BytesMut::new();
        crate::closing::goodbye(&mut bye);
        let _ = client.write_all(&bye).await;
        let _ = client.shutdown().await;
        return;
    };
    let server_tls = cluster_rt.server_tls.clone();
    let up = Upstream::primary(
        &svc.live,
        &svc.pools,
        &cluster,
        cluster_rt,
        user,
        stats.clone(),
    );
    let session = transaction::resume(&up, svc.shared(), &mut client, state, &key);
    match crate::net::tls::scope(server_tls, session).await {
        Ok(end) => tracing::debug!(cluster = %cluster, end, "handed-over session ended"),
        Err(e) => {
            stats.client_error(e.code.0);
            let mut out = BytesMut::new();
            e.write(&mut out);
            let _ = client.write_all(&out).await;
            let _ = client.flush().await;
            let _ = client.shutdown().await;
        }
    }
}

/// What ended a session that was not refused, for the log.
type End = &'static str;

async fn serve(
    svc: &Services,
    cluster: &Arc<str>,
    stats: &Arc<ClusterStats>,
    client: &mut PgStream,
    tls: Option<&ClientTls>,
    admitted: bool,
) -> Result<End, ClientError> {
    let mut pending = BytesMut::new();
    let login = async {
        let params = match negotiate(client, tls).await {
            Ok(Some(params)) => params,
            Ok(None) => return Ok(None),
            Err(Negotiation::Cancel { pid, secret }) => {
                cancel_request(svc, cluster, stats, pid, secret).await;
                return Ok(None);
            }
            Err(Negotiation::Failed(e)) => return e.to_client().map_or(Ok(None), Err),
            Err(Negotiation::Refused(e)) => return Err(e),
        };
        if !admitted {
            return Err(ClientError::fatal(
                SqlState::TOO_MANY_CONNECTIONS,
                format!(
                    "sorry, too many clients already (max_client_conn of cluster \"{cluster}\")"
                ),
            ));
        }
        login(svc, cluster, client, &mut pending, params).await
    };
    let (cluster_rt, user, params, mut out) =
        // Boxed: the login's futures (TLS handshake, SCRAM) are freed once it is done,
        // instead of sizing the session's task for its whole life (an idle client).
        match tokio::time::timeout(STARTUP_TIMEOUT, Box::pin(login)).await {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) => return Ok("closed or cancel request during startup"),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ClientError::fatal(
                    SqlState::PROTOCOL_VIOLATION,
                    "canceling authentication due to timeout",
                ))
            }
        };

    // The client is in: serve it in its cluster's pool mode.
    message::auth_ok(&mut out);
    let key = svc.cancel.issue(cluster.clone());
    let mode = cluster_rt.pool_mode;
    // The server logins of this session use its cluster's server TLS.
    let server_tls = cluster_rt.server_tls.clone();
    let up = Upstream::primary(
        &svc.live,
        &svc.pools,
        cluster,
        cluster_rt,
        user,
        stats.clone(),
    );
    let session = async {
        match mode {
            // Each mode boxed: a client's task holds the state of its own mode only.
            PoolMode::Transaction => {
                // Boxed at once: an unboxed local would take its room in this task too.
                let serve = Box::pin(transaction::serve(
                    &up,
                    svc.shared(),
                    client,
                    pending,
                    &params,
                    out,
                    &key,
                ));
                size_once(
                    "postgres transaction-pooled session future size",
                    std::mem::size_of_val(&*serve),
                );
                serve.await
            }
            PoolMode::Session => {
                Box::pin(pooling::session::serve(
                    &up,
                    client,
                    pending,
                    &params,
                    out,
                    &key,
                    &svc.closing,
                ))
                .await
            }
        }
    };
    crate::net::tls::scope(server_tls, session).await
}

fn closed() -> ClientError {
    ClientError::fatal(SqlState::CONNECTION_FAILURE, "client connection lost")
}

enum Negotiation {
    Cancel { pid: u32, secret: u32 },
    Failed(StartupError),
    Refused(ClientError),
}

/// Answer encryption requests until the `StartupMessage` (`None`: the client left). With
/// `tls`, an `SSLRequest` is answered `S` and the handshake done on `client`.
async fn negotiate(
    client: &mut PgStream,
    tls: Option<&ClientTls>,
) -> Result<Option<StartupParams>, Negotiation> {
    for _ in 0..=MAX_NEGOTIATIONS {
        match read_startup(client).await {
            Ok(Packet::SslRequest) if client.is_tls() => {
                return Err(Negotiation::Failed(StartupError::Layout(
                    "SSLRequest over an encrypted connection",
                )))
            }
            Ok(Packet::SslRequest) => {
                let Some(tls) = tls else {
                    // No TLS configured: "N", then the client goes on in the clear or gives up.
                    if client.write_all(b"N").await.is_err() {
                        return Ok(None);
                    }
                    continue;
                };
                // Nothing the client sent after its SSLRequest was read: the handshake
                // starts at the next byte (no plaintext can be slipped in before it).
                if client.write_all(b"S").await.is_err() {
                    return Ok(None);
                }
                if let Err(e) = client.accept_tls(tls).await {
                    tracing::debug!(error = %e, "client TLS handshake failed");
                    return Ok(None);
                }
            }
            Ok(Packet::GssEncRequest) => {
                // GSSAPI encryption is not offered.
                if client.write_all(b"N").await.is_err() {
                    return Ok(None);
                }
            }
            Ok(Packet::Cancel { pid, secret }) => return Err(Negotiation::Cancel { pid, secret }),
            Ok(Packet::Startup(_)) if tls.is_some_and(|t| t.required()) && !client.is_tls() => {
                return Err(Negotiation::Refused(ClientError::fatal(
                    SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                    "SSL required: this cluster accepts only TLS connections",
                )))
            }
            Ok(Packet::Startup(params)) => return Ok(Some(params)),
            Err(StartupError::Closed) | Err(StartupError::Io(_)) => return Ok(None),
            Err(e) => return Err(Negotiation::Failed(e)),
        }
    }
    Err(Negotiation::Failed(StartupError::Layout(
        "too many encryption requests",
    )))
}

/// What a successful login (`None`: the client left) hands on: the cluster and user as of this moment, the startup
/// parameters, and the messages already due to the client.
type LoggedIn = (
    Arc<crate::runtime::ClusterRuntime>,
    Arc<crate::runtime::UserRuntime>,
    StartupParams,
    BytesMut,
);

async fn login(
    svc: &Services,
    cluster: &str,
    client: &mut PgStream,
    pending: &mut BytesMut,
    params: StartupParams,
) -> Result<Option<LoggedIn>, ClientError> {
    let user_name = params
        .user()
        .map_err(|e| e.to_client().unwrap_or_else(closed))?;
    if params.is_replication() {
        return Err(ClientError::fatal(
            SqlState::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through Switchyard",
        ));
    }
    let mut out = BytesMut::new();
    let options = params.protocol_options();
    if params.minor > 0 || !options.is_empty() {
        message::negotiate_protocol_version(&mut out, 0, &options);
        if client.write_all(&out).await.is_err() {
            return Ok(None);
        }
        out.clear();
    }
    let cluster_rt = svc.live.cluster(cluster).ok_or_else(|| {
        ClientError::fatal(
            SqlState::CONNECTION_REJECTED,
            format!("cluster \"{cluster}\" is no longer configured"),
        )
    })?;
    let user = cluster_rt.users.get(user_name).cloned();
    match auth::authenticate(
        client,
        pending,
        cluster,
        user_name,
        user.as_deref(),
        &svc.scram,
    )
    .await
    {
        Ok(()) => {}
        Err(AuthError::Refused(e)) => return Err(e),
        // psql does this to ask for a password, then connects again.
        Err(AuthError::Closed) | Err(AuthError::Io(_)) => return Ok(None),
    }
    // Authenticated as a configured user (unknown users never pass).
    let user = user.ok_or_else(|| ClientError::auth_failed(user_name))?;
    Ok(Some((cluster_rt, user, params, out)))
}

/// Forward a `CancelRequest` whose key we issued to the server connection in use.
pub(crate) async fn cancel_request(
    svc: &Services,
    cluster: &str,
    stats: &ClusterStats,
    pid: u32,
    secret: u32,
) {
    let Some(target) = svc.cancel.find(cluster, pid, secret) else {
        if svc.cancel.forward(cluster, pid, secret) {
            stats.cancel_request("forwarded");
            return;
        }
        stats.cancel_request("unknown_key");
        tracing::debug!(
            cluster,
            "cancel request with an unknown key (or nothing to cancel)"
        );
        return;
    };
    stats.cancel_request("sent");
    if let Err(e) = cancel::send_cancel(target).await {
        tracing::warn!(cluster, server = %target.addr, error = %e, "forwarding a cancel request failed");
    }
}

/// Log `what` is `bytes`, the first time only (one flag per call site's `what`).
pub(crate) fn size_once(what: &'static str, bytes: usize) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    static LOGGED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    if !logged.contains(&what) {
        logged.push(what);
        tracing::debug!(bytes, "{what}");
    }
}
