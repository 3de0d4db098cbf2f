//! The request path's policy, lifted out of pingora's `ProxyHttp` hooks: plain functions over
//! plain types, with no pingora `Session` and no hyper type in them, so that every front end
//! (today [`crate::service`]'s `ProxyHttp` adapter; next, the hyper HTTP/1 front end of
//! `docs/HTTP1_PATH.md`) runs one request path. A front end hands over the request head as
//! `http::request::Parts` plus the few facts only it knows (the client's address, whether
//! the request body outgrew the retry buffer, whether a response was sent) and calls, per
//! request:
//!
//! 1. [`admit`]: framing and `Host` checks, the liveness path, the header and body limits,
//!    routing; the answer is a route or a [`Reply`] the front end sends itself;
//! 2. [`count_body`] per request body chunk (bodies without `Content-Length`);
//! 3. [`pick`] per attempt: a backend ([`crate::balance`]) and its timeouts, as a [`Target`];
//! 4. [`rewrite_request`]: the forwarded headers to set on the request that goes upstream;
//! 5. [`judge`] per attempt's [`Outcome`]: passive health and pool counters are fed, then
//!    the [`Verdict`] (done, retry within the route's `retries` and the retry budget, fail);
//! 6. [`finish`]: the in-flight count released, metrics, the access log line.
//!
//! Their shared per-request state is an [`Exchange`]. They allocate what the hooks did before
//! the lift and no more: the tried addresses, the retry reasons, the forwarded-for values.

mod admit;
mod finish;
mod judge;
mod pick;
mod state;
#[cfg(test)]
mod tests;

pub use admit::{admit, count_body, Admitted, Reply};
pub use finish::{finish, Summary};
pub use judge::{judge, Outcome, Replay, Verdict};
pub use pick::{pick, rewrite_request, Forwarding, NoTarget, Target, UpstreamHost};
pub use state::Exchange;
