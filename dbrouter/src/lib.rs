//! Switchyard's Postgres router: a wire-protocol proxy that clients connect to as if it were
//! PostgreSQL.
//!
//! # Parts
//! Each folder is a part with one job, and a part imports only the parts drawn below it in
//! `docs/ARCHITECTURE.md` (checked by `tests/import_circles.rs`, with no import circle between
//! files): [`plane`] (the top: [`DbPlane`] keeps the long-lived registries and hands each part
//! the narrow handles it uses), [`status`], [`client`], [`pooling`], [`route`], [`ha`],
//! [`server`], [`runtime`], the leaves [`classify`], [`net`], [`stats`] and [`cancel`], and
//! under them [`registry`]. The wire protocol itself is the `switchyard-pgwire` crate.
//!
//! # The plane
//! [`DbPlane::build`] turns a validated config into a [`DbRuntime`] (clusters, primaries,
//! users with their passwords resolved) without side effects; [`DbPlane::swap`] makes it
//! live behind one `ArcSwap`. [`start`](crate::plane::start::start) binds one listener per cluster at start-up
//! and serves it; each client is a [`client::session`]. State that outlives reloads (cancel keys,
//! SCRAM keys, pools, per-cluster counters) lives in the plane, keyed by name, not in the
//! runtime.
//!
//! # What works (session and transaction pooling; read/write split in transaction pooling)
//! - Startup: `SSLRequest` is answered `S` and a rustls handshake when the cluster has `tls`
//!   (`mode = "required"` refuses clients in the clear with 28000), else `N`;
//!   `GSSENCRequest` is answered `N`; a `CancelRequest` is
//!   mapped from the key Switchyard issued (secret compared in constant time) to the server
//!   connection in use and sent to that server as a real `CancelRequest`; a
//!   `StartupMessage` (protocol 3.0; newer minors and `_pq_.` options are negotiated down
//!   with `NegotiateProtocolVersion`) is parsed under PostgreSQL's own length limits.
//!   Malformed input gets an `ErrorResponse` with its SQLSTATE (08P01, 0A000, 28000) and
//!   only that client is closed ([`switchyard_pgwire::startup`], [`switchyard_pgwire::frame`]).
//! - Client authentication by Switchyard per `users`: SCRAM-SHA-256 server side ([`switchyard_pgwire::scram`],
//!   checked against the RFC 5802 and RFC 7677 vectors), md5, trust; unknown users run a
//!   mock SCRAM exchange and fail like a wrong password (28P01) ([`client::auth`]).
//! - Server login with the configured credentials, SCRAM (server signature verified), md5
//!   or trust as the server asks; cleartext only over TLS verified with `server_tls_ca`
//!   ([`server::conn`], the exchange itself in [`switchyard_pgwire::login`]). TLS to servers per `server_tls` (`disable`, `prefer`, `require`) ([`net::tls`]).
//! - `max_client_conn` per cluster: the client past it is told 53300 and closed
//!   ([`client::admission`]); `pool.min_size` connections are pre-opened by the reaper
//!   ([`server::pool::warm`]).
//! - The client gets the server's `ParameterStatus`, our own `BackendKeyData`, then a relay
//!   both ways in which every client message header is checked, `Terminate` is handled by the
//!   router and the transaction status is followed ([`pooling::session::relay`]). In session mode, one server
//!   connection per client session.
//! - A pool per node ([`server::pool`]): in session mode a session that ends cleanly and idle gives
//!   its server connection back after `DISCARD ALL`; the next client with the same startup
//!   parameters reuses it. `max_size` caps open connections (an exhausted pool answers 53300
//!   after `checkout_timeout`), `idle_timeout` and `max_lifetime` retire them; a connection
//!   given back goes to the longest-waiting checkout of its key first. A session-mode client
//!   that leaves mid-transaction or mid-message takes its server connection with it (the
//!   server rolls back).
//! - Transaction pooling ([`pooling::transaction`], `pool_mode = "transaction"`, the default): a client
//!   holds a server connection for a turn (from the first message of a transaction, a
//!   statement or an extended-protocol batch until `ReadyForQuery` says idle and it is not
//!   between a `Parse` and its `Sync`), then the connection goes back as it is. Whole
//!   messages are read both ways on one task and what the server owes is followed message by
//!   message: `Flush` is honoured, pipelines of several `Sync`s work, an extended-protocol
//!   error skips to `Sync` as the server does, `COPY` in and out keep the connection. Named
//!   prepared statements are renamed `sy_<n>` (by text and parameter types, per node) and
//!   prepared on each server connection on first use. `SET`, `RESET`, `RESET ALL`, `DISCARD
//!   ALL` and reported `ParameterStatus` changes are tracked per client, read back from the
//!   server at the end of the turn and replayed with `set_config` on the next connection, as
//!   are startup parameters such as `application_name`. `LISTEN`, session advisory locks,
//!   temporary tables, `WITH HOLD` cursors, SQL `PREPARE` and `SET SESSION AUTHORIZATION`
//!   pin the client to its connection (reset with `DISCARD ALL` when it leaves). A client
//!   that leaves mid-transaction has it rolled back before its connection is reused; logins
//!   do not wait for a free connection. Status: `effective_pool_mode` and
//!   `transaction_pooling` counters; Prometheus `switchyard_postgres_{transactions_total,
//!   pinned_clients_total, prepared_injections_total, parameter_replays_total}`.
//! - A node monitor ([`monitor`]): one task per node address of the running config (started
//!   and stopped by reloads), on a tokio-postgres connection of its own logged in as the
//!   cluster's first user, checks every `failover.check_interval` within `check_timeout`:
//!   role (`pg_is_in_recovery()`), WAL positions, replay age, WAL receiver state. Failures
//!   are told apart (refused, timed out, admin shutdown 57P01/02/03, auth, …);
//!   `failure_threshold` in a row mark a node down (a primary going down is logged; nothing
//!   fails over yet). Lag in bytes against the highest WAL position known in the cluster,
//!   in seconds from the primary's WAL history (0 when caught up, so an idle primary is not
//!   lag). State is kept by address in [`DbPlane::monitor`] across reloads.
//! - Read-your-writes (`routing.read_your_writes`): after a client's write turn on the
//!   primary, the router reads `pg_current_wal_insert_lsn()` on that connection (after the
//!   client has its answer) and the client's later reads go only to replicas whose replayed
//!   position the monitor has seen past it, else to the primary. A replica that cannot be
//!   connected to sends the read to the primary.
//! - High availability ([`failover`]): detection from the monitor, the replicas' second
//!   opinion, promotion of the most advanced (or synchronous) replica, re-pointing, fencing
//!   through the control plane's writer, planned switchover, rejoin; transaction pooling
//!   waits for a failover and keeps a client whose server died usable (08006).
//! - Replica selection ([`route::replicas`]): [`choose_replica`] (pure over monitor state) and
//!   [`DbPlane::choose_replica`] (load = the node pool's connections in use) pick a healthy
//!   replica within `max_replica_lag_bytes`/`max_replica_lag`, least loaded first, ties
//!   at random, optionally past a read-your-writes [`Lsn`]; else the primary or an error
//!   per `routing.fallback`.
//! - Read/write split (`routing.read_write_split = true`, transaction pooling only): each
//!   cluster runtime holds one [`classify::Classifier`] (rebuilt with the runtime on reload;
//!   a session keeps the one of its login). A turn is routed as a whole by its first
//!   statement (the `Query` text, or the `Parse` text of a batch's first statement, or of a
//!   named statement at its `Bind`/`Describe`): a read goes where
//!   [`DbPlane::choose_replica`] says (that node's pool), anything else, a `BEGIN` (its
//!   transaction stays there until `ReadyForQuery` idle), a `FunctionCall` or an unknown
//!   statement to the primary; `BEGIN READ ONLY` may go to a replica. With
//!   `fallback = "error"` and no fit replica the client gets an `ErrorResponse` (08006, the
//!   reason) and stays usable (an extended batch is skipped to its `Sync`). Comment
//!   overrides come from the classifier; `SET switchyard.route = primary | replica | auto`
//!   (simple protocol, outside a transaction) is answered by the router and forces the
//!   session's turns. Prepared statement ids are unique per process, so a replica's server
//!   connections share the primary pool's registry safely. Prometheus
//!   `switchyard_postgres_queries_routed_total{cluster,target,reason}` counts routed turns
//!   (`target` primary, replica or error; `reason` the classifier's [`classify::Reason::label`],
//!   or `session_override`, `unknown_statement`). Session pooling stays on the primary.
//! - `/v1/status`: per cluster, listen and bound address, serving, client and server
//!   connection counts, auth failures, cancels; `restart_required` for listener changes; per
//!   node, configured and observed role, reachable, down, consecutive failures, last error
//!   kind, WAL positions, lag in bytes and seconds, streaming, fenced, pool counts.
//!   Prometheus: `switchyard_postgres_{clients, client_connections_total,
//!   server_connections, auth_failures_total, cancel_requests_total, client_errors_total,
//!   monitor_checks_total, node_up, replica_lag_bytes, replica_lag_seconds}`.
//! - Drains and binary upgrades ([`closing`]): a draining process keeps its sessions; at a
//!   binary upgrade each transaction-pooled client over plain TCP is handed to the new
//!   process at its next transaction boundary, socket and session state
//!   ([`pooling::transaction::handoff`], taken in by an [`Adopter`]); at the drain timeout
//!   every session left is closed at its next boundary with 57P01.
//!
//! # TODO (issue 4, then 5)
//! - Pools: moving idle connections on hot reload.
//! - Transaction pooling: statements are inspected by a lexer (a `SET` or an advisory lock
//!   inside a function body is not seen; switch to the `classify` parser); no bound yet on
//!   the prepared statements per server connection or in the registry; `DEALLOCATE name` of
//!   a protocol-level statement and an unnamed statement parsed in one turn and bound in
//!   the next are not supported; the first login of a user and database waits for a
//!   connection; a replayed parameter the server refuses ends the session; large messages
//!   (`CopyData`, `Bind`) are buffered whole.
//! - Read/write split: session pooling (stays on the primary); the per-node transaction
//!   counters and `transactions_total` metrics are still booked to the primary;
//!   `SET switchyard.route` in the extended protocol is not intercepted. The pool's
//!   `waiting` count for status. A user's changed password reaches running sessions only
//!   at their next login.
//! - TLS: `SCRAM-SHA-256-PLUS` (channel binding) both ways, client certificates.
//! - Listener changes (a new `listen` address, a new cluster) need a restart or a binary
//!   upgrade (a cancel for a session still on the old process is passed back to it:
//!   [`cancel::CancelRegistry::forward_unknown_to`]); pools are kept
//!   by node address across reloads and pick up new settings at their next checkout.
//! - Failover ([`failover`]): the etcd lease speaks plain HTTP (no TLS to etcd, no auth).
//!   Session-mode clients on a failed primary lose their session (they reconnect).

#![forbid(unsafe_code)]

pub mod cancel;
pub mod classify;
pub mod client;
pub mod closing;
pub mod ha;
pub mod net;
pub mod plane;
pub mod pooling;
pub mod registry;
pub mod route;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod status;

pub use ha::monitor;
pub use ha::monitor::{Lsn, NodeMonitor};
pub use plane::{start, start_on, Adopter, DbPlane, PgListeners, StartError};
pub use route::replicas::{choose_replica, Choice, Reason};
pub use runtime::{BuildError, ClusterRuntime, DbRuntime, UserRuntime};
pub use stats::ClusterStats;
pub use status::Serving;

/// High availability as the control plane drives it: the role changes it records
/// ([`ha::failover::RoleChange`] through a [`ha::failover::FailoverSink`]), and the promote,
/// switchover and rejoin it asks for ([`plane::ops::start`], [`plane::ops::rejoin`], entered
/// with the [`DbPlane`]).
pub mod failover {
    pub use crate::ha::failover::{
        change_roles, Attempt, ClusterFailover, FailoverSink, Failovers, Fence, Outcome, Phase,
        Refusal, Request, RoleChange,
    };
    pub use crate::plane::ops::{rejoin, start};
}
