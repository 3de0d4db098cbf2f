//! Bytes on sockets, below every part that talks to a client or a server:
//!
//! - [`stream`]: [`PgStream`], a connection in the clear or over TLS, with both the
//!   `AsyncRead`/`AsyncWrite` style and the readiness style the transaction relay needs.
//! - [`tls`]: the TLS a cluster offers its clients and uses to its servers (rustls), read
//!   from the config's files when a runtime is built, and which server TLS the current
//!   session's logins use.
//! - [`bufpool`]: buffers lent to a connection while it moves bytes and given back when it
//!   goes idle (per-thread stores, so a turn does not allocate).
//! - [`read`]: whole messages and startup packets read off a stream, judged by
//!   `switchyard-pgwire` as they come in.
//!
//! Owns no policy: it does not know pools, clusters' nodes, routing or failover, and imports
//! no other part of the router.

pub mod bufpool;
pub mod read;
pub mod stream;
pub mod tls;

pub use stream::PgStream;
pub use tls::{ClientTls, ServerTls};
