//! The PostgreSQL frontend/backend protocol (version 3.0) as Switchyard speaks it, and
//! nothing else: no sockets, no tokio, no pools, no policy. Every entry point takes bytes
//! (`&[u8]`, or a `BytesMut` it takes whole messages off) and returns a `Result` or an
//! `Option`: no input makes it panic. This is the code that reads untrusted bytes, kept small
//! enough to read on its own and to fuzz.
//!
//! - [`frame`]: the typed-message frame (type byte, `i32` length, body), PostgreSQL's own
//!   length limits per message type, whole-message decoding and the streaming [`frame::Scanner`].
//! - [`startup`]: the packets that open a connection (`SSLRequest`, `GSSENCRequest`,
//!   `CancelRequest`, `StartupMessage`).
//! - [`frontend`] and [`backend`]: typed readers and writers of the messages each side sends
//!   that the router reads or writes itself; [`body`]: the checked reader under them.
//! - [`error`]: [`error::ClientError`], the `ErrorResponse` a refused client gets.
//! - Authentication: [`scram`] (SCRAM-SHA-256, server side: checking a client), [`login`]
//!   (a login to a server, client side: SCRAM through `postgres-protocol`, md5, cleartext
//!   only when allowed), [`md5`] (both sides).
//!
//! Who uses it: `switchyard-dbrouter` (the router), and the fuzz targets. What it must not
//! do: I/O, timeouts, logging, metrics, or anything that depends on a config.

#![forbid(unsafe_code)]

pub mod backend;
pub mod body;
pub mod error;
pub mod frame;
pub mod frontend;
pub mod login;
pub mod md5;
pub mod scram;
pub mod startup;

#[cfg(test)]
#[path = "robustness_tests.rs"]
mod robustness_tests;
