//! The calling proxy thread's upstream pool group: one per thread, so a pooled upstream
//! connection is always used by the thread whose reactor registered it.

use std::sync::atomic::{AtomicU64, Ordering};

/// The upstream connection pool group of the calling thread, for `HttpPeer::group_key`.
///
/// pingora keys its pool of idle upstream connections by the peer's hash, which includes
/// `group_key`. Each proxy thread runs its own runtime and I/O reactor; a connection opened on
/// one thread and reused on another would have its readiness delivered by the first thread's
/// reactor, a cross-thread wake-up per read. One group per thread keeps each pooled connection
/// on the thread that opened it. Numbers start at 1 (0 is pingora's default group).
pub(crate) fn group() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static GROUP: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    GROUP.with(|g| *g)
}
