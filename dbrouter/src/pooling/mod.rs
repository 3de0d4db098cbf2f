//! The pool modes a logged-in client is served in: [`session`] pooling (one server connection
//! per client session) and [`transaction`] pooling (a server connection per turn, with the
//! session's state carried by the router).
//!
//! Uses [`crate::server`] (connections, pools, checkout) and [`crate::route`] (where a turn
//! goes). Must not import the client side ([`crate::client`]), which is built on it.

pub mod session;
pub mod transaction;
