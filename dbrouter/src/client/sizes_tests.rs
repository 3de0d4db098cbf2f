//! The size of an idle client's task future (`session::run`, inline in tokio's task cell):
//! the part of a client's memory that is there for its whole life. What it awaits below,
//! the transaction-pooled session and the relay's idle wait, is checked by
//! `pooling/transaction/sizes_tests.rs`.

use std::sync::Arc;

use super::services::Services;

/// The size of the future `f` returns, without calling it.
fn future_size<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// A bound with some room over a debug build's 752 B: a task future that grows past it
/// (something large awaited inline, or an argument held twice by an `async fn`) fails
/// here. Printed for BENCHMARKS.md
/// (`cargo test -p switchyard-dbrouter --lib task_future_size -- --nocapture`).
#[test]
fn task_future_size() {
    let task = future_size(
        |a: (
            Arc<Services>,
            Arc<str>,
            tokio::net::TcpStream,
            std::net::SocketAddr,
        )| { super::session::run(a.0, a.1, a.2, a.3) },
    );
    eprintln!("client task {task} B");
    assert!(task <= 1024, "client task future: {task} B");
}
