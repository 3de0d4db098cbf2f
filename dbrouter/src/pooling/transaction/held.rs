//! A server connection held for a client's turn ([`Held`]): what is in flight on it and
//! what the turn did. It is boxed in the relay, and its buffers are lent by the thread's
//! store ([`bufpool`]) for the turn only, so an idle client keeps none of it.

use std::sync::Arc;

use bytes::BytesMut;

use super::expect::Expect;
use super::nodes::DdlTurn;
use super::sql::ParamOp;
use crate::ha::monitor::Lsn;
use crate::net::bufpool;
use crate::server::pool::{NodePool, PooledConn};

/// Where the router's check of a statement prepared again after DDL stands
/// ([`super::expect::Entry::Check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Sent, not answered: the client's message waits.
    Pending,
    /// The copy gives the result its clients were told.
    Same,
    /// It does not: the client's request fails as on its own server (0A000).
    Differs,
    /// Preparing it failed; the client got that error.
    Failed,
}

/// A server connection a client holds for its turn, and what is in flight on it.
#[derive(Debug)]
pub(super) struct Held {
    pub conn: PooledConn,
    /// The pool of the node it came from (and goes back to).
    pub pool: Arc<NodePool>,
    /// That node's address.
    pub node: Arc<str>,
    /// Read from the server, not yet handled (at most a partial message).
    pub sbuf: BytesMut,
    pub to_server: BytesMut,
    pub expect: Expect,
    /// The client sent extended-protocol messages after its last `Sync`.
    pub mid_batch: bool,
    /// What the client did to its parameters during this turn.
    pub ops: Vec<ParamOp>,
    /// Rows of a parameter verification in progress.
    pub rows: Vec<(String, Option<String>, Option<String>)>,
    /// The error of the router's own query in progress.
    pub internal_error: Option<String>,
    /// The primary's WAL position, read after a write (read-your-writes).
    pub wal_position: Option<Lsn>,
    /// Taken for a write turn on the primary.
    pub write: bool,
    /// Client work went to it since its WAL position was last read.
    pub needs_wal: bool,
    /// The client's part of the turn is over and the router's own queries that close it
    /// are in flight (parameters read back, the WAL position, closing statements): a
    /// message the client sends now starts the next turn, routed afresh, once this one
    /// has ended.
    pub closing: bool,
    /// The check of a statement prepared again after DDL, while one is under way.
    pub check: Option<Check>,
    /// The turn runs DDL: nothing is shared until it ends (see [`DdlTurn`]).
    pub ddl: Option<DdlTurn>,
    /// The server's FATAL error, when it said why it ends the connection.
    pub fatal: Option<String>,
    /// Why the connection must not be reused, if it must not.
    pub dirty: Option<&'static str>,
}

impl Held {
    /// A turn on `conn` of `node` (from `pool`); its buffers are lent by the thread's store
    /// ([`bufpool`]) and go back to it when the turn ends.
    pub fn new(conn: PooledConn, pool: Arc<NodePool>, node: Arc<str>) -> Self {
        let mut to_server = BytesMut::new();
        bufpool::lend(&mut to_server);
        Held {
            conn,
            pool,
            node,
            sbuf: BytesMut::new(),
            to_server,
            expect: Expect::default(),
            mid_batch: false,
            ops: Vec::new(),
            rows: Vec::new(),
            internal_error: None,
            wal_position: None,
            write: false,
            needs_wal: false,
            ddl: None,
            check: None,
            closing: false,
            fatal: None,
            dirty: None,
        }
    }

    /// Idle between whole messages with nothing owed either way: the turn may end.
    pub fn idle(&self) -> bool {
        self.conn.conn.status == b'I' && self.quiet()
    }

    /// Nothing in flight (whatever the transaction status).
    pub fn quiet(&self) -> bool {
        self.expect.is_empty()
            && !self.mid_batch
            && self.to_server.is_empty()
            && self.sbuf.is_empty()
    }

    /// End the turn: the connection, where it goes back to, and why it must not be reused
    /// (if it must not). The buffers of a turn that ended [`Held::quiet`] go back to the
    /// thread's store; others are dropped.
    pub fn finish(self: Box<Self>) -> (PooledConn, Arc<NodePool>, Option<&'static str>) {
        let mut h = *self;
        if h.quiet() {
            bufpool::give_back(&mut h.sbuf);
            bufpool::give_back(&mut h.to_server);
        }
        (h.conn, h.pool, h.dirty)
    }
}
