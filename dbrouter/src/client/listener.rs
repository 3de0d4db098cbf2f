//! The accept loop of one cluster's listener ([`serve`]), in the shape of mini-redis'
//! `run(listener, shutdown)`, so tests can drive it on `127.0.0.1:0`: each client is a task
//! of its own ([`super::session::run`]). Binding the listeners and the runtime they run on are
//! the plane's ([`crate::plane`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::services::Services;

/// Accept clients of `cluster` on `listener` until `shutdown` resolves; each client is a
/// task of its own ([`crate::client::session::run`]).
pub async fn serve(
    services: Arc<Services>,
    cluster: Arc<str>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let task = super::session::run(services.clone(), cluster.clone(), stream, peer);
                    // What each client costs in its task before any heap state (BENCHMARKS.md).
                    let bytes = std::mem::size_of_val(&task);
                    super::session::size_once("postgres client task future size", bytes);
                    tokio::spawn(task);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(cluster = %cluster, error = %e, "accepting a client failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::info!(cluster = %cluster, "postgres listener stopped");
}
