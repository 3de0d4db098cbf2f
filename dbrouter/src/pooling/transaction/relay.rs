//! The transaction-pooling relay: one loop per client that reads whole messages from the
//! client and, while it holds one, from its server connection, handles them
//! ([`super::client`], [`super::server`]) and writes what it can as the sockets allow.
//!
//! All state lives in the loop, and every socket operation is a readiness wait followed by
//! a non-blocking read or write, so nothing is ever half done when the loop decides: a
//! server connection goes back to the pool only between two whole messages in each
//! direction, with nothing owed either way ([`TxRelay::end_turn`]). Backpressure: the client
//! is not read while more than [`HIGH`] bytes wait for the server, the server is not read
//! while more than that wait for the client.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchyard_config::Address;

use super::expect::{Entry, Internal};
pub(super) use super::held::Held;
use super::nodes::TxNode;
use super::params::{replay_sql, Verify};
use super::prepared;
use super::report::TxMetrics;
use super::state::ClientState;
use crate::cancel::CancelKey;
use crate::closing::{Closing, Mode};
use crate::ha::monitor::Lsn;
use crate::ha::Verdicts;
use crate::net::stream::PgStream;
use crate::route::turn::{self, RouteOverride};
use crate::runtime::ClusterRuntime;
use crate::server::conn::ClientErrorOrFrame;
use crate::server::pool::{NodePool, PooledConn};
use crate::server::upstream::Upstream;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::backend::{error_code, error_message};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, put};
use switchyard_pgwire::frontend::{self, put_query};

/// Nodes whose pools a session keeps at hand ([`TxRelay::node_pool`]).
const POOLS_KEPT: usize = 16;

/// Bytes waiting for one side above which the other side is not read.
pub(super) const HIGH: usize = 256 * 1024;

/// How often a write turn waiting for a failover looks again.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// Whether a checkout failed because the server could not be reached (as opposed to a
/// refused login): worth waiting for a failover.
fn unreachable(e: &ClientErrorOrFrame) -> bool {
    match e {
        ClientErrorOrFrame::Error(e) => e.code.0.starts_with("08"),
        ClientErrorOrFrame::Frame(f) => {
            let code = error_fields(&f.body).0;
            code.starts_with("57P") || code.starts_with("08")
        }
    }
}

/// SQLSTATE and message of an `ErrorResponse` body (08006 when it names none).
fn error_fields(body: &[u8]) -> (String, String) {
    let code = error_code(body);
    let code = if code.is_empty() {
        "08006".into()
    } else {
        code
    };
    (code, error_message(body))
}

/// How a transaction-pooled session ended.
#[derive(Debug)]
pub(super) enum TxEnd {
    /// The client sent `Terminate`.
    Terminated,
    /// The client closed its connection; `between_messages`: not in the middle of one.
    ClientClosed {
        between_messages: bool,
    },
    ClientIo(io::Error),
    /// The server closed the connection the client was holding.
    ServerClosed,
    ServerIo(io::Error),
    /// The server sent what the protocol (or what it owes) does not allow.
    ServerViolation(String),
    /// The client broke the protocol.
    ClientViolation(String),
    /// No server connection could be had, or the client's parameters could not be
    /// restored on one.
    Refused(ClientErrorOrFrame),
    /// The process closes its sessions ([`Closing`]) and this one is between transactions.
    Closed,
    /// The process hands its sessions over and this one is between transactions.
    HandOver,
}

/// One transaction-pooled client.
pub(super) struct TxRelay<'a> {
    pub up: &'a Upstream<'a>,
    /// The health verdicts: failovers to wait for, nodes known down, replicas to choose.
    pub verdicts: &'a Verdicts,
    /// Transaction pooling's state of the node of its login (statement names, counters).
    pub node: Arc<TxNode>,
    /// Pool key and startup parameters of its server connections.
    pub key: &'a str,
    pub server_params: &'a [(&'a str, &'a str)],
    pub cancel: &'a CancelKey,
    pub metrics: TxMetrics,
    pub client: &'a mut PgStream,
    /// Read from the client, not yet handled.
    pub cbuf: BytesMut,
    pub to_client: BytesMut,
    /// The server connection of the current turn. Boxed: an idle client keeps a pointer's
    /// room for it, not the whole of it (568 bytes).
    pub held: Option<Box<Held>>,
    pub me: ClientState,
    /// Why the client keeps its server connection to the end, if it does.
    pub pinned: Option<&'static str>,
    /// A turn was refused by routing in the middle of an extended-protocol batch: the
    /// client's messages are dropped up to its `Sync`, answered `ReadyForQuery` idle.
    pub skip_to_sync: bool,
    /// `SET switchyard.route` of this session (`None`: by statement).
    pub route_override: Option<RouteOverride>,
    /// Its server connection was lost while it was idle in a transaction: the error its
    /// next message gets instead of running.
    pub lost: Option<Box<str>>,
    /// The current turn went to the primary as a write (not a read that fell back there).
    pub turn_writes: bool,
    /// Read-your-writes: the primary's WAL position after this client's latest write; its
    /// reads go only to replicas that have replayed past it.
    pub min_lsn: Option<Lsn>,
    /// A client message held back until the router's check of a statement it names is
    /// answered ([`TxRelay::check_copy`]).
    pub gate: Option<Box<BytesMut>>,
    /// A turn the router was closing (its own queries after the client's last answer)
    /// just ended: what the client sent meanwhile is read now, as the next turn.
    pub resume: bool,
    /// Nodes this session's turns went to, by address: their names and pools (the plane
    /// keeps a node's pool for good, so it is looked up once, not at every turn).
    pub pools: Vec<(Address, Arc<str>, Arc<NodePool>)>,
    /// Whether the process closes its sessions at their next transaction boundary.
    pub closing: &'a Closing,
    /// How far [`TxRelay::closing`] has gone, as this relay last saw it: past `Open`, it
    /// ends at its next boundary (handed over if it can be, closed otherwise).
    pub close_seen: Mode,
}

impl TxRelay<'_> {
    /// Relay until the session ends. A server connection lost in the middle of a turn (its
    /// server crashed or was shut down, a failover) ends the turn, not the session: the
    /// client is told with an 08006 error and its next transaction gets a new connection.
    pub async fn run(&mut self) -> TxEnd {
        loop {
            // Boxed, and only when there is a whole message to handle (about once per
            // turn): its futures (a message's handling, a checkout) are no part of what an
            // idle client's task holds.
            let handled = if self.client_work() {
                Box::pin(self.client_messages()).await
            } else {
                Ok(())
            };
            let step = match handled {
                Ok(()) => {
                    self.end_turn();
                    if std::mem::take(&mut self.resume) {
                        continue;
                    }
                    if self.close_seen != Mode::Open {
                        // What is due to the client goes out first: the boundary is after it.
                        if let Err(end) = self.flush_now() {
                            return end;
                        }
                        if self.between_transactions() {
                            if self.close_seen == Mode::Close {
                                return TxEnd::Closed;
                            }
                            if self.can_hand_over() {
                                return TxEnd::HandOver;
                            }
                        }
                    }
                    self.io().await
                }
                Err(end) => Err(end),
            };
            match step {
                Ok(()) => {}
                Err(TxEnd::ServerClosed | TxEnd::ServerIo(_)) if self.pinned.is_none() => {
                    self.server_lost()
                }
                Err(end) => return end,
            }
        }
    }

    /// Whether [`TxRelay::client_messages`] has anything to do: a message held back, or a
    /// whole one (or a broken header) read from the client.
    fn client_work(&mut self) -> bool {
        self.gate.is_some()
            || !matches!(frame::peek(&mut self.cbuf, frame::frontend_limit), Ok(None))
    }

    /// Nothing in flight either way and no transaction open: every message the client sent
    /// is answered and written out, and what it holds (pinned) is idle.
    fn between_transactions(&self) -> bool {
        self.cbuf.is_empty()
            && self.to_client.is_empty()
            && !self.client.wants_write()
            && !self.skip_to_sync
            && self.gate.is_none()
            && self
                .held
                .as_ref()
                .is_none_or(|h| h.quiet() && h.conn.conn.status == b'I')
    }

    /// Whether this session can move to another process as it is: over plain TCP, holding
    /// no server connection (not pinned), with no routing state of its own in flight.
    fn can_hand_over(&self) -> bool {
        !self.client.is_tls()
            && self.pinned.is_none()
            && self.held.is_none()
            && self.lost.is_none()
            && self.route_override.is_none()
    }

    /// The server connection of the current turn is gone: forget it, and tell the client
    /// now if it waits for an answer, else at its next message (`lost`).
    fn server_lost(&mut self) {
        let Some(mut h) = self.held.take() else {
            return;
        };
        self.cancel.set_server(None);
        tracing::debug!(expect = ?h.expect, mid_batch = h.mid_batch, status = h.conn.conn.status, unsent = self.to_client.len(), "server lost");
        tracing::debug!(client = self.cancel.pid, expect = ?h.expect, mid_batch = h.mid_batch, "server connection lost: what it owed");
        let (forget, owed) = h.expect.abandon();
        for name in forget {
            self.me.statements.remove(&name);
        }
        let node = h.node.clone();
        let live = self.up.live();
        let said = h
            .fatal
            .take()
            .map(|m| format!("; the server said: {m}"))
            .unwrap_or_default();
        let why = if self.verdicts.failover_running(self.up.cluster)
            || self.verdicts.node(&node).is_some_and(|v| !v.reachable)
        {
            "the server is down; a failover is under way if it was the primary"
        } else {
            "the server closed it"
        };
        let role = if live.primary.to_string() == *node {
            "the primary"
        } else {
            "a replica"
        };
        let text = format!(
            "the connection to {role} ({node}) of cluster \"{}\" was lost ({why}{said}): the transaction was rolled back unless its COMMIT had already reached the server; the session stays usable",
            self.up.cluster
        );
        let in_transaction = h.conn.conn.status != b'I';
        tracing::warn!(cluster = %self.up.cluster, node = %node, in_transaction, "server connection lost in the middle of a turn");
        tokio::spawn(h.conn.close());
        if owed == 0 && !h.mid_batch {
            // Idle in a transaction: its next statement fails instead.
            if in_transaction {
                self.lost = Some(text.into());
            }
            return;
        }
        // Each request the client is owed an answer for fails: an error, then its
        // `ReadyForQuery` (a pipelining client matches answers to requests one by one).
        for _ in 0..owed {
            message::error_response(
                &mut self.to_client,
                "ERROR",
                SqlState::CONNECTION_FAILURE,
                &text,
            );
            message::ready_for_query(&mut self.to_client, b'I');
        }
        if h.mid_batch {
            message::error_response(
                &mut self.to_client,
                "ERROR",
                SqlState::CONNECTION_FAILURE,
                &text,
            );
            self.skip_to_sync = true;
        }
    }

    /// The server connection for the client's current turn, got now if it has none. A new
    /// turn goes where its first statement, `sql`, may run (the primary when it is not
    /// known), by the cluster as it is now. `Ok(false)`: the turn was refused and the client
    /// has been sent an `ErrorResponse`; the message must not be passed on.
    pub async fn hold(&mut self, sql: Option<&[u8]>) -> Result<bool, TxEnd> {
        if let Some(h) = self.held.as_mut() {
            h.needs_wal |= h.write;
            return Ok(true);
        }
        // Boxed (one allocation per turn that takes a connection, freed when it has one):
        // the checkout's futures (a wait for the pool or a failover, the route's checkout)
        // were most of the relay's state machine, which every idle client's task holds
        // whole: 5.8 KB of a debug build's 8 KB of heap per idle client (massif).
        Box::pin(self.hold_new(sql)).await
    }

    /// [`TxRelay::hold`] when the turn has no server connection yet.
    async fn hold_new(&mut self, sql: Option<&[u8]>) -> Result<bool, TxEnd> {
        let live = self.up.live();
        let target = match self.route(&live, sql) {
            Ok(t) => t,
            Err(message) => {
                self.refuse_turn(ClientErrorOrFrame::Error(ClientError {
                    code: SqlState::CONNECTION_FAILURE,
                    message,
                    fatal: false,
                }));
                return Ok(false);
            }
        };
        // Notices of a new server login are not the client's business mid-session.
        let mut notices = BytesMut::new();
        let got = match target {
            Some(replica) => {
                let (name, pool) = self.node_pool(&replica);
                match self
                    .up
                    .checkout_at(&replica, &pool, self.key, self.server_params, &mut notices)
                    .await
                {
                    Ok(conn) => Ok((conn, pool, name)),
                    Err(e) => {
                        // Down before the monitor noticed: the read goes to the primary.
                        tracing::warn!(cluster = %self.up.cluster, node = %replica, error = ?e, "replica unavailable; the read goes to the primary");
                        self.primary_conn(&mut notices).await
                    }
                }
            }
            None => self.primary_conn(&mut notices).await,
        };
        let (conn, pool, node) = match got {
            Ok(got) => got,
            Err(e) => {
                self.refuse_turn(e);
                return Ok(false);
            }
        };
        self.cancel.set_server(Some(conn.conn.key));
        let mut held = Box::new(Held::new(conn, pool, node));
        held.write = std::mem::take(&mut self.turn_writes);
        held.needs_wal = held.write;
        if let Some(sql) = replay_sql(&self.me.params, &held.conn.conn.state.params) {
            put_query(&mut held.to_server, &sql);
            held.expect.push(Entry::Internal(Internal::Replay));
            held.conn.conn.state.params = self.me.params.clone();
            self.metrics.replay(&self.node.counters);
        }
        self.held = Some(held);
        Ok(true)
    }

    /// A connection to the primary. While a failover runs, it waits for it (or until it has
    /// moved the primary); when the primary
    /// cannot be reached and `failover.auto_promote` is on, it waits for the failover that
    /// follows, and connects to the new primary. Both waits together last at most
    /// `failover.write_pause_timeout`.
    async fn primary_conn(
        &mut self,
        notices: &mut BytesMut,
    ) -> Result<(PooledConn, Arc<NodePool>, Arc<str>), ClientErrorOrFrame> {
        let (verdicts, cluster) = (self.verdicts, self.up.cluster);
        let mut live = self.up.live();
        let settings = live.config.failover.clone();
        let deadline = Instant::now() + settings.write_pause_timeout;
        // While the failover's primary is still the write route: once the route has moved
        // (before the replicas are re-pointed and the config is written, or at once when
        // another Switchyard's decision is followed), writes go to the new primary, also
        // writes that begin while the attempt finishes.
        while verdicts
            .failover_replacing(cluster)
            .is_some_and(|old| live.primary.to_string() == old)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            verdicts.wait_failover(cluster, left.min(WAIT_STEP)).await;
            live = self.up.live();
        }
        loop {
            let node = live.primary.clone();
            let (name, pool) = self.node_pool(&node);
            let e = match self
                .up
                .checkout_at(&node, &pool, self.key, self.server_params, notices)
                .await
            {
                Ok(conn) => return Ok((conn, pool, name)),
                Err(e) => e,
            };
            if !settings.auto_promote || !unreachable(&e) {
                return Err(e);
            }
            // Wait for the monitor to call it down and a failover to move the primary, or
            // for the primary to answer again.
            loop {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(WAIT_STEP.min(settings.check_interval)).await;
                live = self.up.live();
                let moved = live.primary != node;
                let back = verdicts.node(&name).is_some_and(|v| v.reachable)
                    && !verdicts.failover_running(cluster);
                if moved || back {
                    break;
                }
            }
        }
    }

    /// Tell the client its turn could not start: an `ERROR` (never `FATAL`: the session goes
    /// on) with the reason.
    fn refuse_turn(&mut self, e: ClientErrorOrFrame) {
        let (code, text) = match e {
            ClientErrorOrFrame::Error(e) => (e.code.0.to_string(), e.message),
            ClientErrorOrFrame::Frame(f) => error_fields(&f.body),
        };
        let mut fields = BytesMut::new();
        for (t, v) in [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', code.as_str()),
            (b'M', text.as_str()),
        ] {
            fields.extend_from_slice(&[t]);
            fields.extend_from_slice(v.as_bytes());
            fields.extend_from_slice(&[0]);
        }
        fields.extend_from_slice(&[0]);
        put(&mut self.to_client, b'E', &[&fields]);
    }

    /// Where a turn starting with `sql` goes: `Ok(None)` the primary, `Ok(Some(replica))`,
    /// or `Err(message)` when it is a read and no replica may serve it
    /// (`routing.fallback = "error"`); see [`crate::route::turn`].
    fn route(
        &mut self,
        live: &ClusterRuntime,
        sql: Option<&[u8]>,
    ) -> Result<Option<Address>, String> {
        let (metrics, cluster) = (&mut self.metrics, self.up.cluster);
        // The session's defaults as the router last read them back from a server.
        let param = |n: &str| self.me.params.get(n).map(String::as_str);
        let session_read_only = param("default_transaction_read_only").is_some_and(|v| {
            ["on", "true", "yes", "1"]
                .iter()
                .any(|t| v.trim().eq_ignore_ascii_case(t))
        }) && param("default_transaction_isolation")
            != Some("serializable");
        let turn = turn::route(
            live,
            turn::Session {
                forced: self.route_override,
                read_only_default: session_read_only,
            },
            sql,
            self.min_lsn,
            self.verdicts.monitor(),
            self.up.pools,
            |target, reason| metrics.routed(cluster, target, reason),
        );
        self.turn_writes = turn.writes;
        turn.to
    }

    /// End the turn if it is over: check the parameters it changed first, then give the
    /// server connection back (or close it if it must not be reused).
    pub fn end_turn(&mut self) {
        let Some(h) = self.held.as_mut() else { return };
        if self.pinned.is_some() {
            // Its parameters live on its own connection until DISCARD ALL: nothing to track.
            h.ops.clear();
            return;
        }
        if !h.idle() {
            return;
        }
        // Its DDL committed or rolled back: what others prepare now sees the outcome.
        h.ddl = None;
        if sweep(h) {
            h.closing = true;
            return;
        }
        if !h.ops.is_empty() {
            let ops = std::mem::take(&mut h.ops);
            if let Some(v) = Verify::plan(&ops, &self.me.params, &h.conn.conn.state.params) {
                put_query(&mut h.to_server, &v.sql());
                h.rows.clear();
                h.internal_error = None;
                h.expect.push(Entry::Internal(Internal::Verify(v)));
                h.closing = true;
                return;
            }
        }
        if std::mem::take(&mut h.needs_wal) && self.up.live().config.routing.read_your_writes {
            put_query(&mut h.to_server, "select pg_current_wal_insert_lsn()");
            h.wal_position = None;
            h.internal_error = None;
            h.expect.push(Entry::Internal(Internal::WalPosition));
            h.closing = true;
            return;
        }
        let Some(h) = self.held.take() else { return };
        // Messages the client sent while the router closed the turn start the next one.
        self.resume = h.closing;
        self.cancel.set_server(None);
        self.metrics.transaction(&self.node.counters);
        let (conn, pool, dirty) = h.finish();
        match dirty {
            Some(why) => {
                tracing::debug!(cluster = %self.up.cluster, why, "server connection not reused");
                tokio::spawn(conn.close());
            }
            None => pool.put_back(self.key.to_string(), conn, &self.up.settings()),
        }
    }

    /// The name and pool of `node` (what [`crate::server::pool::Pools::get`] returns for it,
    /// looked up once per session).
    fn node_pool(&mut self, node: &Address) -> (Arc<str>, Arc<NodePool>) {
        if let Some((_, name, pool)) = self.pools.iter().find(|(a, _, _)| a == node) {
            return (name.clone(), pool.clone());
        }
        let name: Arc<str> = node.to_string().into();
        let pool = self.up.pools.get(self.up.cluster, &name);
        if self.pools.len() >= POOLS_KEPT {
            self.pools.clear();
        }
        // Exact room: most sessions only ever use one or two nodes (each idle client keeps
        // this list).
        self.pools.reserve_exact(1);
        self.pools.push((node.clone(), name.clone(), pool.clone()));
        (name, pool)
    }
}

/// Close the statements on `h`'s server connection that no client can use any more (retired
/// after DDL and dropped: see [`super::prepared::closable`]). `true`: the closes are on their
/// way and the turn ends when they are answered.
fn sweep(h: &mut Held) -> bool {
    let dropped = prepared::dropped();
    let state = &mut h.conn.conn.state;
    if state.swept == dropped {
        return false;
    }
    state.swept = dropped;
    if state.prepared.is_empty() {
        return false;
    }
    let gone = prepared::closable(&state.prepared);
    if gone.is_empty() {
        return false;
    }
    for id in &gone {
        state.prepared.remove(id);
        frontend::put_target(&mut h.to_server, b'C', b'S', &prepared::global_name(*id));
        h.expect.push(Entry::Close { swallow: true });
    }
    put(&mut h.to_server, b'S', &[]);
    h.expect.push(Entry::Internal(Internal::Sweep));
    true
}
