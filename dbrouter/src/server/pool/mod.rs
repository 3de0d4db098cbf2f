//! Server connection pools, one per cluster node.
//!
//! - Session pooling: a client whose session ends cleanly gives its server connection back,
//!   reset with `DISCARD ALL` ([`NodePool::release`]), and the next client with the same
//!   startup parameters (user, database, options, …) gets it without a new login.
//! - Transaction pooling: a client gives its server connection back at the end of each
//!   transaction as it is ([`NodePool::put_back`]); what the next client needs of it is set
//!   up by [`crate::pooling::transaction`], which keys these connections by user, database and the startup
//!   parameters it does not replay, and keeps the node's prepared statement names
//!   ([`NodePool::statements`]) and counters ([`NodePool::tx`]) here.
//!
//! - `pool.max_size` caps the server connections a node has open through Switchyard (in use
//!   and idle). At the cap, an idle connection of other parameters is closed to make room,
//!   or the checkout waits in line up to `pool.checkout_timeout` and fails with SQLSTATE
//!   53300. A connection given back goes straight to the longest-waiting checkout of its
//!   key, so a client that gives back and asks again at once cannot jump the line.
//! - A connection is reused only when it is idle (`ReadyForQuery` `I`) with nothing in
//!   flight, (in session mode) its reset saw `DISCARD ALL` complete without error, it is
//!   younger than `pool.max_lifetime`, it was idle less than `pool.idle_timeout`, and the
//!   server has not closed it.
//! - Pools are kept by `(cluster, node)` in the plane, so a reload that changes the settings
//!   keeps their connections; the settings are read from the live runtime at each use.
//!
//! - `pool.min_size` connections are pre-opened in the background ([`warm`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchyard_config::PoolSettings;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::net::read::read_frame;
use crate::pooling::transaction::prepared::StatementRegistry;
use crate::pooling::transaction::report::TxCounters;
use crate::pooling::transaction::ServerState;
use crate::server::conn::ServerConn;
use crate::status::ServerGuard;
use switchyard_pgwire::backend::SqlState;
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, Frame};

mod idle;
pub mod warm;

use idle::{alive, Idle, Queued, Waiter};

/// Longest a reset (`DISCARD ALL`) may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// The server connections of one node of one cluster.
#[derive(Debug, Default)]
pub struct NodePool {
    /// Open connections, in use or idle.
    open: AtomicUsize,
    idle: Mutex<Vec<Idle>>,
    released: Notify,
    /// Checkouts waiting for a connection, oldest first.
    waiters: Mutex<VecDeque<Waiter>>,
    next_waiter: AtomicU64,
    /// Global names of the prepared statements of transaction-pooled clients.
    pub statements: StatementRegistry,
    /// Transaction pooling counters.
    pub tx: TxCounters,
    /// The `ParameterStatus` messages of the latest fresh login, by pool key: what a
    /// transaction-pooled client is told at its login when no connection is free.
    login_status: Mutex<HashMap<String, Vec<Frame>>>,
    /// The pool key `min_size` connections are pre-opened for ([`warm`]).
    warm_key: Mutex<Option<String>>,
    /// A `min_size` fill is running.
    filling: AtomicBool,
}

/// What a checkout found.
#[allow(clippy::large_enum_variant)] // short-lived, on the stack of one checkout
enum Got {
    Conn(PooledConn),
    /// Room for a new connection, reserved.
    Room(Slot),
    TimedOut,
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

impl PooledConn {
    /// Say goodbye to the server and close (only between messages).
    pub async fn close(self) {
        self.conn.terminate().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cancel::ServerKey;
    use crate::status::ClusterStats;

    /// A "server connection" to a local listener.
    async fn fake_conn(listener: &tokio::net::TcpListener) -> ServerConn {
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        ServerConn {
            stream: crate::net::stream::PgStream::plain(stream),
            key: ServerKey {
                addr,
                pid: 1,
                secret: 2,
            },
            parameter_status: Vec::new(),
            status: b'I',
            state: ServerState::default(),
        }
    }

    #[tokio::test]
    async fn a_connection_given_back_goes_to_the_longest_waiting_checkout() {
        // Connections wait in the listener's backlog: enough for a pool that never writes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Arc::new(NodePool::default());
        let stats = Arc::new(ClusterStats::new("t"));
        let settings = PoolSettings {
            min_size: 0,
            max_size: 1,
            idle_timeout: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(60),
            checkout_timeout: Duration::from_secs(5),
        };
        let conn = fake_conn(&listener).await;
        let first = pool
            .checkout(
                "k",
                &settings,
                || stats.server("n"),
                || async { Ok::<_, ()>(conn) },
            )
            .await
            .unwrap()
            .unwrap();
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for who in ["second", "third"] {
            let (pool, stats, settings, order_tx) = (
                pool.clone(),
                stats.clone(),
                settings.clone(),
                order_tx.clone(),
            );
            waiters.push(tokio::spawn(async move {
                let never = || async { Err::<ServerConn, ()>(()) };
                let conn = pool
                    .checkout("k", &settings, || stats.server("n"), never)
                    .await
                    .unwrap()
                    .unwrap();
                order_tx.send(who).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                pool.put_back("k".into(), conn, &settings);
            }));
            // In line one after the other.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        pool.put_back("k".into(), first, &settings);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(order.recv().await, Some("second"));
        assert_eq!(order.recv().await, Some("third"));
        // Nobody waiting: the connection is idle, counted once.
        assert_eq!(pool.counts(), (1, 1));
        assert!(lock(&pool.waiters).is_empty());
    }

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
