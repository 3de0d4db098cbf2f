//! Session pooling (`pool_mode = "session"`): a logged-in client gets one server connection to
//! the primary for its whole session, told the server's `ParameterStatus`, our own
//! `BackendKeyData` and `ReadyForQuery`, then a byte relay both ways ([`relay`]). A session
//! that ends cleanly and idle gives its connection back to the pool, reset with `DISCARD ALL`;
//! one that leaves mid-transaction or mid-message takes it with it (the server rolls back).
//!
//! Gets its connection through [`crate::server::upstream::Upstream`]; must not import the
//! client side or transaction pooling.

pub mod relay;

use bytes::BytesMut;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::startup::StartupParams;
use tokio::io::AsyncWriteExt;

use crate::cancel;
use crate::net::stream::PgStream;
use crate::server::conn::ClientErrorOrFrame;
use crate::server::pool;
use crate::server::upstream::Upstream;
use relay::RelayEnd;

/// What ended a session that was not refused, for the log.
type End = &'static str;

/// Session pooling: one server connection for the whole session, given back reset when the
/// client leaves cleanly and idle.
pub async fn serve(
    up: &Upstream<'_>,
    client: &mut PgStream,
    pending: BytesMut,
    params: &StartupParams,
    mut out: BytesMut,
    key: &cancel::CancelKey,
    closing: &crate::closing::Closing,
) -> Result<End, ClientError> {
    let borrowed: Vec<(&str, &str)> = params
        .params
        .iter()
        .filter(|(k, _)| !k.starts_with("_pq_.") && k != "replication")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let pool_key = pool::key(&borrowed);
    let mut notices = BytesMut::new();
    let mut server = match up.checkout(&pool_key, &borrowed, &mut notices).await {
        Ok(server) => server,
        Err(ClientErrorOrFrame::Error(e)) => return Err(e),
        Err(ClientErrorOrFrame::Frame(frame)) => {
            out.extend_from_slice(&frame.to_wire());
            let _ = client.write_all(&out).await;
            let _ = client.flush().await;
            return Ok("the server refused the login");
        }
    };
    key.set_server(Some(server.conn.key));
    out.extend_from_slice(&notices);
    for p in &server.conn.parameter_status {
        out.extend_from_slice(&p.to_wire());
    }
    message::backend_key_data(&mut out, key.pid, key.secret);
    message::ready_for_query(&mut out, server.conn.status);
    client.write_all(&out).await.map_err(|_| closed())?;
    client.flush().await.map_err(|_| closed())?;
    drop(out);

    let (end, server_between_messages) =
        relay::relay(client, pending, &mut server.conn, closing).await;
    key.set_server(None);
    let (cluster, node) = (up.cluster, &up.node);
    match end {
        RelayEnd::ClientTerminated
        | RelayEnd::ClientClosed {
            between_messages: true,
        } => {
            // Reuse the connection only when it is idle, between messages, and the cluster
            // still sends this node's clients there; settings as of now.
            match up.current() {
                Some(c) if server_between_messages && server.conn.status == b'I' => {
                    up.pool.release(pool_key, server, &c.pool).await
                }
                _ => server.conn.terminate().await,
            }
            Ok("client left")
        }
        RelayEnd::Closed => {
            // Between transactions: the server connection is idle and can be reused.
            match up.current() {
                Some(c) => up.pool.release(pool_key, server, &c.pool).await,
                None => server.conn.terminate().await,
            }
            let mut bye = BytesMut::new();
            crate::closing::goodbye(&mut bye);
            let _ = client.write_all(&bye).await;
            let _ = client.flush().await;
            let _ = client.shutdown().await;
            Ok("closed between transactions by the drain")
        }
        RelayEnd::ClientClosed { .. } | RelayEnd::ClientIo(_) => Ok("client connection lost"),
        RelayEnd::ServerClosed => Ok("server closed the connection"),
        RelayEnd::ServerIo(e) => {
            tracing::warn!(cluster, node = %node, error = %e, "server connection lost");
            Ok("server connection lost")
        }
        RelayEnd::ServerViolation(e) => {
            tracing::warn!(cluster, node = %node, error = %e, "server broke the protocol");
            Ok("server broke the protocol")
        }
        RelayEnd::ClientViolation { error, can_reply } => {
            let e = ClientError::fatal(SqlState::PROTOCOL_VIOLATION, error.to_string());
            if can_reply {
                Err(e)
            } else {
                Ok("client broke the protocol mid-response")
            }
        }
    }
}

fn closed() -> ClientError {
    ClientError::fatal(SqlState::CONNECTION_FAILURE, "client connection lost")
}
