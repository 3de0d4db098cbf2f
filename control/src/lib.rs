//! Switchyard's control plane: the single-writer [`Applier`], the control API, the config
//! file watcher, token auth, the audit log and the history of applied configs.
//!
//! Data planes plug in through [`Plane`]; this crate never depends on them.

#![forbid(unsafe_code)]

pub mod api;
pub mod applier;
pub mod audit;
pub mod auth;
pub mod history;
pub mod metrics;
pub mod ops;
pub mod persist;
pub mod plane;
pub mod runtime;
pub mod store;
pub mod watcher;

pub use applier::{Applier, ApplyError, ApplyOutcome, ApplyRequest, EditRequest, StartError};
pub use history::{Actor, Origin};
pub use plane::{
    BackendView, ClusterOp, ClusterOps, LatencyCounts, OpError, Plane, PoolCounts, Prepared,
    TrafficStats,
};
