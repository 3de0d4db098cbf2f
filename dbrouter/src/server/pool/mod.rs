//! Server connection pools, one per cluster node ([`NodePool`], kept by cluster and node in
//! [`Pools`]).
//!
//! - Session pooling: a client whose session ends cleanly gives its server connection back,
//!   reset with `DISCARD ALL` ([`NodePool::release`]), and the next client with the same
//!   startup parameters (user, database, options, …) gets it without a new login.
//! - Transaction pooling: a client gives its server connection back at the end of each
//!   transaction as it is ([`NodePool::put_back`]); what the next client needs of it is set
//!   up by [`crate::pooling::transaction`], which keys these connections by user, database and
//!   the startup parameters it does not replay, and keeps what it knows of each connection's
//!   session with it ([`crate::server::conn::ServerState`]).
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
//! - Pools are kept by `(cluster, node)` in [`Pools`], so a reload that changes the settings
//!   keeps their connections; the settings are read from the live runtime at each use, and
//!   the periodic [`Pools::reap`] closes what expired or left the config.
//!
//! - `pool.min_size` connections are pre-opened in the background ([`warm`]).

//!
//! Files: [`node`] (the types), [`checkout`] (lending and taking back), `idle` (idle
//! connections and the line of waiting checkouts), [`warm`] (`min_size`), [`pools`] (the
//! registry). They use each other's methods; none imports this file.
//!
//! Must not know what a pool mode does with a connection: what transaction pooling keeps
//! with one is plain data on the connection ([`crate::server::conn::ServerState`]), and its
//! per-node state lives in [`crate::pooling::transaction::TxNodes`].

pub mod checkout;
mod idle;
pub mod node;
pub mod pools;
pub mod warm;

pub use node::{key, NodePool, PooledConn};
pub use pools::Pools;

#[cfg(test)]
mod tests;
