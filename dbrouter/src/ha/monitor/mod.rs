//! The node monitor: what Switchyard knows about each Postgres server, from checks it makes
//! itself, directly to the node (not through the router).
//!
//! Every `failover.check_interval`, within `failover.check_timeout`, a task per node address
//! ([`run`]) asks the node whether it is in recovery and where its WAL is
//! (`pg_current_wal_lsn()` on a primary; received and replayed positions, the last replayed
//! commit's age and the WAL receiver's state on a replica). The outcome is recorded in the
//! [`NodeMonitor`] ([`state`]), a registry keyed by node address that lives in the plane, so a reload
//! keeps what was learnt; the set of monitored nodes follows the running config (like the HTTP
//! plane's active health checks).
//!
//! A failed check says why ([`ErrorKind`]: refused, timed out, administrator shutdown, …).
//! `failure_threshold` failures in a row mark a node down; one success brings it back.
//! Replica lag ([`Lag`]) is computed when asked for, against the cluster's highest known WAL
//! position, so it is as fresh as the latest check of every node.

//!
//! Must not import failover ([`crate::ha::failover`] reads the verdicts, not the other way)
//! nor anything that serves clients.

mod check;
mod lag;
mod lsn;
mod run;
pub mod state;

pub use lag::Lag;
pub use lsn::{Lsn, LsnParseError};
pub use run::run;
pub use state::{CheckError, ErrorKind, NodeMonitor, NodeView, Observed, Transition};
