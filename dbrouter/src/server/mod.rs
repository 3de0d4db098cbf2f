//! Server connections: one connection to a node and its login ([`conn`]), the pools of them
//! per node ([`pool`]), and getting a client one within its cluster's limits ([`upstream`]).
//!
//! Must not import the pooling modes built on it ([`crate::pooling`]) nor the client side:
//! what a pooling mode keeps with a connection is plain data ([`conn::ServerState`], its
//! parameters a [`param_map::ParamMap`]).

pub mod conn;
pub mod param_map;
pub mod pool;
pub mod upstream;
