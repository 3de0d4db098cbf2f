//! Postgres high availability: what the router does when a primary fails, and the operator's
//! promote, switchover and rejoin.
//!
//! - Detection is the node monitor's ([`crate::ha::monitor`]): `failure_threshold` failed checks
//!   in a row mark a node down. [`run`] watches every cluster's primary and, with
//!   `failover.auto_promote`, starts a failover ([`procedure`]) when it goes down.
//! - Before promoting, the replicas are asked for a second opinion ([`probe`]): when one of
//!   them still streams WAL from the primary, only the link between Switchyard and the
//!   primary is broken, and nothing is promoted.
//! - The most advanced replica (received WAL, then `priority`) is promoted with
//!   `pg_promote(wait => true)` and checked with `pg_is_in_recovery()`; the other replicas
//!   are re-pointed at it (`ALTER SYSTEM SET primary_conninfo`, `pg_reload_conf()`); with
//!   synchronous replication on, only a replica the primary last reported as synchronous may
//!   be chosen.
//! - The outcome reaches the config through a [`FailoverSink`] (the control plane's single
//!   writer, so it is versioned, persisted, in the history and audited): the new primary gets
//!   `role = "primary"` and the old one `role = "replica"` and `fenced = "<reason>"`. The
//!   plane also remembers what it fenced ([`Failovers::fenced`]), so a config that makes a
//!   fenced node the primary again is refused until the operator rejoins it.
//! - While a failover runs, new write turns wait for it (up to
//!   `failover.write_pause_timeout`, [`Failovers::wait_idle`]); reads keep flowing to healthy
//!   replicas.
//!
//! - With `failover.etcd`, only the holder of an etcd lease promotes ([`lease`]); it writes
//!   its decision to etcd, and every other sidecar of the cluster follows it through a watch
//!   ([`follow`]): the old primary is fenced everywhere within the watch's delay.
//!
//! State here is per cluster name and outlives reloads, like the monitor's.

//!
//! Works through [`crate::ha::Ha`] (the live runtime, the monitor's verdicts, the failover
//! state, the pools it empties of a fenced primary). Must not import anything that serves
//! clients ([`crate::client`], [`crate::pooling`]): the data path reads failover state through
//! [`crate::ha::Verdicts`].

pub mod apply;
mod arbitration;
pub mod conninfo;
mod follow;
pub mod lease;
pub mod probe;
pub mod procedure;
mod rejoin;
pub mod roles;
mod run;
mod state;
mod switchover;

pub use apply::{apply_roles, check_fences, install};
pub use follow::run as follow;
pub use procedure::{start, Outcome, Request};
pub use rejoin::{rejoin, Refusal};
pub use roles::{change_roles, FailoverSink, RoleChange};
pub use run::run;
pub use state::{Attempt, ClusterFailover, Failovers, Fence, Phase};
