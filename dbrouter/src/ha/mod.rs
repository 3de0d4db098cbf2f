//! High availability: the node monitor ([`monitor`]: checks every node and keeps the
//! verdicts) and failover ([`failover`]: detection from the verdicts, the replicas' second
//! opinion, promotion, re-pointing, fencing, planned switchover, rejoin), run together by
//! [`run`] on the handles in [`Ha`]. The data path reads the verdicts through [`Verdicts`].
//!
//! Must not import anything that serves clients ([`crate::client`], [`crate::pooling`],
//! [`crate::route`]): they read what this part decides, never the other way.

pub mod failover;
mod handles;
pub mod monitor;
mod run;

pub use handles::{Ha, Verdicts};
pub use run::run;
