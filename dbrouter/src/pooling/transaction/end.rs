//! How a transaction-pooled session ends ([`finish`]), once its relay has stopped: what the
//! client left in flight may finish (within a bound), the connection it held goes back only
//! in a state another client can use ([`give_back`]), a session between transactions is
//! handed to the new process or closed with a goodbye, and the client is told why when the
//! server side failed.
//!
//! Runs once per session, in a future of its own that the session boxes: none of its room
//! (timeouts, the hand-over's state, a `ROLLBACK`) stays in an idle client's task.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::handoff::Handoff;
use super::own::{own_query, OWN_QUERY_TIMEOUT};
use super::relay::{Held, TxEnd, TxRelay};
use crate::server::conn::ClientErrorOrFrame;
use crate::server::upstream::Upstream;
use switchyard_pgwire::backend::SqlState;
use switchyard_pgwire::error::ClientError;

/// Longest the last bytes due to a client that is being closed may take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// End the session of `relay`, whose run ended with `end`.
pub(super) async fn finish(
    mut relay: TxRelay<'_>,
    end: TxEnd,
) -> Result<&'static str, ClientError> {
    if matches!(
        end,
        TxEnd::Terminated | TxEnd::ClientClosed { .. } | TxEnd::ClientIo(_)
    ) {
        relay.settle(OWN_QUERY_TIMEOUT).await;
    }
    let (up, cancel, key, server_params) = (relay.up, relay.cancel, relay.key, relay.server_params);
    let closing = relay.closing;
    cancel.set_server(None);
    let (held, pinned, unsent) = (relay.held.take(), relay.pinned, relay.to_client.split());
    let (me, unread) = (std::mem::take(&mut relay.me), relay.cbuf.split());
    let client = relay.client;
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
                give_back(up, key.to_string(), h, pinned.is_some()).await;
            }
            Ok(if matches!(end, TxEnd::Terminated) {
                "client left"
            } else {
                "client connection lost"
            })
        }
        TxEnd::HandOver => {
            let state = Handoff::of(
                cluster,
                &up.user.name,
                server_params,
                &me,
                (cancel.pid, cancel.secret),
                &unread,
            );
            let handed = match (serde_json::to_vec(&state), client.tcp_fd()) {
                (Ok(json), Ok(fd)) => closing.hand(json, fd),
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
                give_back(up, key.to_string(), h, pinned.is_some()).await;
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

/// The client left while holding `h`: reuse it if it can be made clean, else close it.
async fn give_back(up: &Upstream<'_>, key: String, mut h: Box<Held>, pinned: bool) {
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
