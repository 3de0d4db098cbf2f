//! The hyper front end's upstream connections: HTTP/1 client connections (hyper's
//! `client::conn::http1`) kept idle per proxy thread and per backend address, so a request,
//! its upstream connection and the connection's task never leave the thread that accepted
//! the client (pingora runs one single-threaded runtime per thread; see [`crate::server`]).
//! A connection goes back to its thread's pool when its response body has been read to the
//! end, and is taken from it most recently used first; one that has idled past the
//! target's `idle_timeout`, or that the backend closed, is dropped when found.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::request_body::ReqBody;
use crate::exchange::Target;

/// Idle connections kept per backend and thread; more are closed.
const MAX_IDLE_PER_BACKEND: usize = 256;

/// The longest wait for a pooled connection to be ready for its next request (it was put
/// back at the end of a response, when its task may not have seen that end yet).
const READY_WAIT: Duration = Duration::from_secs(1);

struct Idle {
    tx: SendRequest<ReqBody>,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection to a backend, taken for one request.
pub struct Upstream {
    pub tx: SendRequest<ReqBody>,
    /// It came from the pool (it served a request before).
    pub reused: bool,
    socket: SocketAddr,
}

/// Why no connection could be had.
#[derive(Debug)]
pub enum ConnectError {
    TimedOut,
    Io(io::Error),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

/// A connection to `target`'s backend: a pooled one that is still open, or a new one.
/// `fresh`: do not take one from the pool (the pooled one just failed before sending).
pub async fn checkout(target: &Target, fresh: bool) -> Result<Upstream, ConnectError> {
    while let Some(mut idle) = (!fresh).then(|| take_idle(target.socket)).flatten() {
        if idle.tx.is_closed() || idle.since.elapsed() > target.idle_timeout {
            continue;
        }
        if !idle.tx.is_ready()
            && !matches!(
                tokio::time::timeout(READY_WAIT, idle.tx.ready()).await,
                Ok(Ok(()))
            )
        {
            continue;
        }
        return Ok(Upstream {
            tx: idle.tx,
            reused: true,
            socket: target.socket,
        });
    }
    let tcp = tokio::time::timeout(target.connect_timeout, TcpStream::connect(target.socket))
        .await
        .map_err(|_| ConnectError::TimedOut)?
        .map_err(ConnectError::Io)?;
    // Small requests and responses go out at once (as pingora's connector does).
    let _ = tcp.set_nodelay(true);
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    Ok(Upstream {
        tx,
        reused: false,
        socket: target.socket,
    })
}

/// Put a connection whose response was read to the end back in the calling thread's pool.
pub fn checkin(up: Upstream) {
    if up.tx.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(up.socket).or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND {
            list.retain(|i| !i.tx.is_closed());
            if list.len() >= MAX_IDLE_PER_BACKEND {
                // The oldest goes: the most recently used are the likeliest still open.
                list.remove(0);
            }
        }
        list.push(Idle {
            tx: up.tx,
            since: Instant::now(),
        });
    });
}

fn take_idle(socket: SocketAddr) -> Option<Idle> {
    IDLE.with(|idle| idle.borrow_mut().get_mut(&socket).and_then(Vec::pop))
}
