//! Lending a node's connections: [`NodePool::checkout`] (an idle one, a new login while
//! under `max_size`, or a wait in line within `checkout_timeout`), and taking them back,
//! reset ([`NodePool::release`], session pooling) or as they are ([`NodePool::put_back`],
//! transaction pooling).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchyard_config::PoolSettings;
use switchyard_pgwire::backend::SqlState;
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, Frame};
use tokio::io::AsyncWriteExt;

use super::idle::alive;
use super::node::{lock, NodePool, PooledConn, Queued, Slot};
use crate::net::read::read_frame;
use crate::server::conn::{ServerConn, ServerState};
use crate::stats::ServerGuard;

/// Longest a reset (`DISCARD ALL`) may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// What a checkout found.
#[allow(clippy::large_enum_variant)] // short-lived, on the stack of one checkout
enum Got {
    Conn(PooledConn),
    /// Room for a new connection, reserved.
    Room(Slot),
    TimedOut,
}

impl NodePool {
    /// A connection for `key`: an idle one, or a new one from `connect` while under
    /// `max_size`, or the first one to come free within `checkout_timeout`.
    pub async fn checkout<F, Fut, E>(
        self: &Arc<Self>,
        key: &str,
        settings: &PoolSettings,
        counted: impl Fn() -> ServerGuard,
        connect: F,
    ) -> Result<Result<PooledConn, E>, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<ServerConn, E>>,
    {
        let deadline = Instant::now() + settings.checkout_timeout;
        let max = settings.max_size as usize;
        let mut queued: Option<Queued> = None;
        let got = loop {
            if let Some(conn) = queued.as_mut().and_then(|q| q.rx.try_recv().ok()) {
                break Got::Conn(conn);
            }
            if let Some(conn) = self.take_idle(key, settings) {
                break Got::Conn(conn);
            }
            let reserved = self
                .open
                .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
                .is_ok();
            if reserved {
                break Got::Room(Slot(self.clone()));
            }
            // Full: make room by closing an idle connection of other parameters.
            let evicted = {
                let mut idle = lock(&self.idle);
                (!idle.is_empty()).then(|| idle.remove(0))
            };
            if evicted.is_some() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Got::TimedOut;
            }
            // Wait in line for a connection of this key to be handed over, or for room (a
            // connection closed, or an idle one of other parameters to evict). A wake-up
            // can be missed when several come free at once; the short bound makes that cost
            // a few milliseconds, never the whole timeout.
            let q = queued.get_or_insert_with(|| self.enqueue(key));
            let wait = tokio::time::timeout(
                left.min(Duration::from_millis(50)),
                self.released.notified(),
            );
            tokio::select! {
                handed = &mut q.rx => match handed {
                    Ok(conn) => break Got::Conn(conn),
                    // Dropped unsent (cannot happen while queued): queue again.
                    Err(_) => queued = None,
                },
                _ = wait => {}
            }
        };
        // Leave the line; a connection handed over meanwhile is ours, or someone else's.
        let handed = queued.and_then(|q| self.dequeue(q));
        match (got, handed) {
            (Got::Conn(conn), extra) => {
                if let Some(extra) = extra {
                    self.hand_over(key.to_string(), extra);
                }
                Ok(Ok(conn))
            }
            // The reservation (if any) is given back as the slot drops.
            (_, Some(conn)) => Ok(Ok(conn)),
            (Got::Room(slot), None) => Ok(connect().await.map(|conn| PooledConn {
                conn,
                born: Instant::now(),
                _slot: slot,
                _counted: counted(),
            })),
            (Got::TimedOut, None) => Err(ClientError::fatal(
                SqlState::TOO_MANY_CONNECTIONS,
                format!(
                    "no server connection came free within {:?} (pool.max_size = {max})",
                    settings.checkout_timeout
                ),
            )),
        }
    }

    /// Whether a checkout for `key` would be served without waiting for another client (an
    /// idle connection, or room for a new one).
    pub fn can_serve_now(&self, key: &str, settings: &PoolSettings) -> bool {
        let idle = lock(&self.idle);
        idle.iter().any(|i| i.key == key)
            || !idle.is_empty()
            || self.open.load(SeqCst) < settings.max_size as usize
    }

    /// Remember the `ParameterStatus` messages of a fresh login for `key`.
    pub fn remember_login(&self, key: &str, status: &[Frame]) {
        lock(&self.login_status).insert(key.to_string(), status.to_vec());
        self.note_warm_key(key);
    }

    /// The `ParameterStatus` messages of the latest fresh login for `key`.
    pub fn login_status(&self, key: &str) -> Option<Vec<Frame>> {
        lock(&self.login_status).get(key).cloned()
    }

    /// Take back a connection whose client left cleanly: reset it and keep it idle, or close
    /// it when it cannot be reused.
    pub async fn release(&self, key: String, mut conn: PooledConn, settings: &PoolSettings) {
        if conn.born.elapsed() >= settings.max_lifetime {
            conn.conn.terminate().await;
            return;
        }
        match tokio::time::timeout(RESET_TIMEOUT, reset(&mut conn.conn)).await {
            Ok(Ok(())) => self.hand_over(key, conn),
            Ok(Err(why)) => tracing::debug!(why, "server connection not reused"),
            Err(_) => tracing::debug!("server connection reset timed out"),
        }
    }

    /// Take back a connection as it is, between two transactions: idle (`ReadyForQuery`
    /// `I`), nothing owed either way. Closed instead when past `max_lifetime`.
    pub fn put_back(&self, key: String, conn: PooledConn, settings: &PoolSettings) {
        if conn.born.elapsed() >= settings.max_lifetime {
            tokio::spawn(conn.close());
            return;
        }
        self.hand_over(key, conn);
    }
}

/// `DISCARD ALL`, then read up to its `ReadyForQuery`. Replies to anything the client sent
/// before leaving come first and are skipped; an error or a `COPY` on the way means the
/// connection is not reused. `ParameterStatus` changes are kept for the next client.
async fn reset(conn: &mut ServerConn) -> Result<(), &'static str> {
    if !alive(conn) {
        return Err("closed by the server");
    }
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::query("DISCARD ALL", &mut out)
        .map_err(|_| "cannot write DISCARD ALL")?;
    conn.stream
        .write_all(&out)
        .await
        .map_err(|_| "write failed")?;
    let mut buf = BytesMut::new();
    let mut discarded = false;
    loop {
        let f = read_frame(&mut conn.stream, &mut buf, frame::backend_limit)
            .await
            .map_err(|_| "read failed")?;
        match f.tag {
            b'C' if &f.body[..] == b"DISCARD ALL\0" => discarded = true,
            b'E' => return Err("error during reset"),
            b'G' | b'H' | b'W' => return Err("COPY in progress"),
            b'S' => conn.set_parameter_status(f),
            b'Z' if discarded => {
                // DISCARD ALL took every setting and prepared statement with it.
                conn.state = ServerState::default();
                conn.status = f.body.first().copied().unwrap_or(0);
                return if conn.status == b'I' && buf.is_empty() {
                    Ok(())
                } else {
                    Err("not idle after reset")
                };
            }
            _ => {}
        }
    }
}
