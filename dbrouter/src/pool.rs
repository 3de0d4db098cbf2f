//! Server connection pools, one per cluster node, for session pooling: a client whose session
//! ends cleanly gives its server connection back, reset with `DISCARD ALL`, and the next
//! client with the same startup parameters (user, database, options, …) gets it without a
//! new login.
//!
//! - `pool.max_size` caps the server connections a node has open through Switchyard (in use
//!   and idle). At the cap, an idle connection of other parameters is closed to make room,
//!   or the checkout waits up to `pool.checkout_timeout` and fails with SQLSTATE 53300.
//! - A connection is reused only when it is idle (`ReadyForQuery` `I`), its reset saw
//!   `DISCARD ALL` complete without error, it is younger than `pool.max_lifetime`, it was
//!   idle less than `pool.idle_timeout`, and the server has not closed it.
//! - Pools are kept by `(cluster, node)` in the plane, so a reload that changes the settings
//!   keeps their connections; the settings are read from the live runtime at each use.
//!
//! TODO: `min_size` (pre-opened connections need startup parameters nobody has sent yet).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchyard_config::PoolSettings;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::backend::ServerConn;
use crate::frame;
use crate::message::{ClientError, SqlState};
use crate::status::ServerGuard;

/// Longest a reset (`DISCARD ALL`) may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// The server connections of one node of one cluster.
#[derive(Debug, Default)]
pub struct NodePool {
    /// Open connections, in use or idle.
    open: AtomicUsize,
    idle: Mutex<Vec<Idle>>,
    released: Notify,
}

#[derive(Debug)]
struct Idle {
    key: String,
    conn: PooledConn,
    since: Instant,
}

/// A server connection that counts against its pool until dropped.
#[derive(Debug)]
pub struct PooledConn {
    pub conn: ServerConn,
    born: Instant,
    _slot: Slot,
    _counted: ServerGuard,
}

#[derive(Debug)]
struct Slot(Arc<NodePool>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, SeqCst);
        self.0.released.notify_one();
    }
}

/// The pool key of a client: its startup parameters, in a canonical order.
pub fn key(params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    sorted.iter().fold(String::new(), |mut k, (n, v)| {
        k.push_str(n);
        k.push('\0');
        k.push_str(v);
        k.push('\0');
        k
    })
}

impl NodePool {
    /// Connections open (in use and idle) and idle.
    pub fn counts(&self) -> (usize, usize) {
        (self.open.load(SeqCst), lock(&self.idle).len())
    }

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
        loop {
            if let Some(conn) = self.take_idle(key, settings) {
                return Ok(Ok(conn));
            }
            let max = settings.max_size as usize;
            let reserved = self
                .open
                .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
                .is_ok();
            if reserved {
                let slot = Slot(self.clone());
                return Ok(connect().await.map(|conn| PooledConn {
                    conn,
                    born: Instant::now(),
                    _slot: slot,
                    _counted: counted(),
                }));
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
                return Err(ClientError::fatal(
                    SqlState::TOO_MANY_CONNECTIONS,
                    format!(
                        "no server connection came free within {:?} (pool.max_size = {max})",
                        settings.checkout_timeout
                    ),
                ));
            }
            // A wake-up can be missed when several connections come free at once; the short
            // bound makes that cost a few milliseconds, never the whole timeout.
            let _ = tokio::time::timeout(
                left.min(Duration::from_millis(50)),
                self.released.notified(),
            )
            .await;
        }
    }

    /// The most recently used live idle connection for `key`; expired or dead ones met on the
    /// way are closed.
    fn take_idle(&self, key: &str, settings: &PoolSettings) -> Option<PooledConn> {
        let mut idle = lock(&self.idle);
        self.reap(&mut idle, settings);
        let at = idle.iter().rposition(|i| i.key == key)?;
        Some(idle.remove(at).conn)
    }

    /// Close idle connections past `idle_timeout` or `max_lifetime`, or closed by the server.
    pub fn reap_now(&self, settings: &PoolSettings) {
        self.reap(&mut lock(&self.idle), settings);
    }

    fn reap(&self, idle: &mut Vec<Idle>, settings: &PoolSettings) {
        idle.retain(|i| {
            i.since.elapsed() < settings.idle_timeout
                && i.conn.born.elapsed() < settings.max_lifetime
                && alive(&i.conn.conn)
        });
    }

    /// Close every idle connection (the cluster or node left the config).
    pub fn clear(&self) {
        lock(&self.idle).clear();
    }

    /// Take back a connection whose client left cleanly: reset it and keep it idle, or close
    /// it when it cannot be reused.
    pub async fn release(&self, key: String, mut conn: PooledConn, settings: &PoolSettings) {
        if conn.born.elapsed() >= settings.max_lifetime {
            conn.conn.terminate().await;
            return;
        }
        match tokio::time::timeout(RESET_TIMEOUT, reset(&mut conn.conn)).await {
            Ok(Ok(())) => {
                lock(&self.idle).push(Idle {
                    key,
                    conn,
                    since: Instant::now(),
                });
                self.released.notify_one();
            }
            Ok(Err(why)) => tracing::debug!(why, "server connection not reused"),
            Err(_) => tracing::debug!("server connection reset timed out"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the server has neither closed the connection nor sent anything (an idle server
/// sends nothing; a `FATAL` before closing counts as dead).
fn alive(conn: &ServerConn) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
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
        let f = frame::read_frame(&mut conn.stream, &mut buf, frame::backend_limit)
            .await
            .map_err(|_| "read failed")?;
        match f.tag {
            b'C' if &f.body[..] == b"DISCARD ALL\0" => discarded = true,
            b'E' => return Err("error during reset"),
            b'G' | b'H' | b'W' => return Err("COPY in progress"),
            b'S' => {
                let name_len = f.body.iter().position(|&b| b == 0).unwrap_or(0) + 1;
                let name = f.body.get(..name_len).unwrap_or_default().to_vec();
                conn.parameter_status
                    .retain(|p| p.body.get(..name_len) != Some(&name[..]));
                conn.parameter_status.push(f);
            }
            b'Z' if discarded => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_depend_on_parameter_order() {
        let a = key(&[("user", "app"), ("database", "jobs")]);
        let b = key(&[("database", "jobs"), ("user", "app")]);
        assert_eq!(a, b);
        assert_ne!(a, key(&[("user", "app"), ("database", "jobs2")]));
        // No ambiguity from concatenation.
        assert_ne!(key(&[("ab", "c")]), key(&[("a", "bc")]));
    }
}
