//! A pool's idle connections, and the line of checkouts waiting for one.
//!
//! - A connection given back goes to the longest-waiting checkout of its key
//!   ([`NodePool::hand_over`]) before anyone can take it idle, so that under transaction
//!   pooling a client that gives its connection back and asks again at once does not jump
//!   the line. With nobody waiting for its key it is kept idle.
//! - A checkout takes the most recently used idle connection of its key, checking only that
//!   one (a checkout per transaction must not probe every idle connection); the periodic
//!   [`NodePool::reap_now`] closes the expired and the dead.
//!
//! A waiting checkout holds the receiving end of a one-shot channel ([`Queued`]); leaving
//! the line ([`NodePool::dequeue`]) closes it and takes back a connection handed over in
//! the meantime, so none is ever lost between the two.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use switchyard_config::PoolSettings;
use tokio::sync::oneshot;

use super::node::{lock, Idle, NodePool, PooledConn, Queued, Waiter};
use crate::server::conn::ServerConn;

impl NodePool {
    /// Join the line of checkouts waiting for a connection of `key`.
    pub(super) fn enqueue(&self, key: &str) -> Queued {
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter.fetch_add(1, SeqCst);
        lock(&self.waiters).push_back(Waiter {
            key: key.to_string(),
            id,
            tx,
        });
        Queued { id, rx }
    }

    /// Leave the line; a connection handed over before that is returned.
    pub(super) fn dequeue(&self, q: Queued) -> Option<PooledConn> {
        lock(&self.waiters).retain(|w| w.id != q.id);
        let mut rx = q.rx;
        rx.close();
        rx.try_recv().ok()
    }

    /// Give a reusable connection to the longest-waiting checkout of its key, or keep it
    /// idle.
    pub(super) fn hand_over(&self, key: String, conn: PooledConn) {
        let mut conn = conn;
        {
            let mut waiters = lock(&self.waiters);
            while let Some(at) = waiters.iter().position(|w| w.key == key) {
                let Some(waiter) = waiters.remove(at) else {
                    break;
                };
                match waiter.tx.send(conn) {
                    Ok(()) => return,
                    Err(back) => conn = back,
                }
            }
        }
        lock(&self.idle).push(Idle {
            key,
            conn,
            since: Instant::now(),
        });
        self.released.notify_one();
    }

    /// The most recently used live idle connection for `key`; expired or dead ones met on the
    /// way are closed (the others are left to [`NodePool::reap_now`]: a checkout per
    /// transaction must not probe every idle connection).
    pub(super) fn take_idle(&self, key: &str, settings: &PoolSettings) -> Option<PooledConn> {
        let mut idle = lock(&self.idle);
        loop {
            let at = idle.iter().rposition(|i| i.key == key)?;
            let found = idle.remove(at);
            if usable(&found, settings) {
                return Some(found.conn);
            }
        }
    }

    /// Close idle connections past `idle_timeout` or `max_lifetime`, or closed by the server.
    pub fn reap_now(&self, settings: &PoolSettings) {
        self.reap(&mut lock(&self.idle), settings);
    }

    fn reap(&self, idle: &mut Vec<Idle>, settings: &PoolSettings) {
        idle.retain(|i| usable(i, settings));
    }

    /// Close every idle connection (the cluster or node left the config).
    pub fn clear(&self) {
        lock(&self.idle).clear();
    }
}

/// Whether an idle connection may serve another client.
fn usable(i: &Idle, settings: &PoolSettings) -> bool {
    i.since.elapsed() < settings.idle_timeout
        && i.conn.born.elapsed() < settings.max_lifetime
        && alive(&i.conn.conn)
}

/// Whether the server has neither closed the connection nor sent anything (an idle server
/// sends nothing; a `FATAL` before closing counts as dead).
pub(super) fn alive(conn: &ServerConn) -> bool {
    conn.stream.is_quiet()
}
