//! Where work goes: [`turn`] decides where a transaction-pooling turn runs (primary, replica,
//! or an error) from its first statement's classification ([`crate::classify`]) and the
//! session's override; [`replicas`] chooses the replica from the monitor's verdicts (health,
//! lag, and read-your-writes: a replica must have replayed past the session's last write)
//! and the pools' load. No I/O: the caller does the checkout.
//!
//! Reads the monitor's verdicts ([`crate::ha::monitor`]) and the pools' counts
//! ([`crate::server::pool`]). Must not import the pooling modes or the client side.

pub mod replicas;
pub mod turn;
