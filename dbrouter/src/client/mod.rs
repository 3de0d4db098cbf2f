//! Clients: accepting them ([`listener`]), their first packets and login ([`session`]:
//! `SSLRequest`/TLS, `GSSENCRequest`, `CancelRequest`, `StartupMessage`), checking who they
//! are ([`auth`]: SCRAM, md5, trust) and whether there is room for them ([`admission`]:
//! `max_client_conn`). A logged-in client is handed to its cluster's pool mode
//! ([`crate::pooling`]).
//!
//! Must not touch server connections itself (it asks [`crate::server`] for the session's
//! upstream) nor the monitor and failover state.

pub mod admission;
pub mod auth;
pub mod listener;
pub mod services;
pub mod session;

#[cfg(test)]
mod sizes_tests;

pub use services::Services;
