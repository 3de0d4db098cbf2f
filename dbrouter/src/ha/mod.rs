//! High availability: the node monitor ([`monitor`]: checks every node, keeps the verdicts)
//! and failover ([`failover`]: detection, promotion, fencing, switchover, rejoin).

pub mod failover;
pub mod monitor;
