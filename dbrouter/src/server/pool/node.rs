//! The types of a node's pool: [`NodePool`] itself, the connection it lends ([`PooledConn`],
//! which counts against the pool until dropped), its idle connections and its line of
//! waiting checkouts. What the pool does with them is in [`super::checkout`],
//! `idle` and [`super::warm`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchyard_pgwire::frame::Frame;
use tokio::sync::{oneshot, Notify};

use crate::server::conn::ServerConn;
use crate::stats::ServerGuard;

/// The server connections of one node of one cluster.
#[derive(Debug, Default)]
pub struct NodePool {
    /// Open connections, in use or idle.
    pub(super) open: AtomicUsize,
    pub(super) idle: Mutex<Vec<Idle>>,
    pub(super) released: Notify,
    /// Checkouts waiting for a connection, oldest first.
    pub(super) waiters: Mutex<VecDeque<Waiter>>,
    pub(super) next_waiter: AtomicU64,
    /// The `ParameterStatus` messages of the latest fresh login, by pool key: what a
    /// transaction-pooled client is told at its login when no connection is free.
    pub(super) login_status: Mutex<HashMap<String, Vec<Frame>>>,
    /// The pool key `min_size` connections are pre-opened for ([`super::warm`]).
    pub(super) warm_key: Mutex<Option<String>>,
    /// A `min_size` fill is running.
    pub(super) filling: AtomicBool,
}

/// A server connection that counts against its pool until dropped.
#[derive(Debug)]
pub struct PooledConn {
    pub conn: ServerConn,
    pub(super) born: Instant,
    pub(super) _slot: Slot,
    pub(super) _counted: ServerGuard,
}

#[derive(Debug)]
pub(super) struct Slot(pub(super) Arc<NodePool>);

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
}

/// An idle connection: its pool key, and since when it is idle.
#[derive(Debug)]
pub(super) struct Idle {
    pub key: String,
    pub conn: PooledConn,
    pub since: Instant,
}

/// A checkout waiting in line.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) key: String,
    pub(super) id: u64,
    pub(super) tx: oneshot::Sender<PooledConn>,
}

/// The waiting checkout's end of the line.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) id: u64,
    pub(super) rx: oneshot::Receiver<PooledConn>,
}

impl PooledConn {
    /// Say goodbye to the server and close (only between messages).
    pub async fn close(self) {
        self.conn.terminate().await;
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
