//! The control plane's cluster operations on the router: promote, switchover (through
//! [`crate::ha::failover::start`]) and rejoin, entered with the plane and run on its
//! [`crate::ha::Ha`] handles.

use std::future::Future;
use std::sync::Arc;

use super::db_plane::DbPlane;
use crate::ha::failover::{self, Outcome, Refusal, Request};

/// Claim `cluster` and return the procedure to run ([`failover::start`]). `Err` when the
/// cluster is unknown or an attempt already runs.
pub fn start(
    plane: Arc<DbPlane>,
    cluster: &str,
    req: Request,
) -> Result<impl Future<Output = Outcome> + Send + 'static, String> {
    failover::start(plane.ha(), cluster, req)
}

/// Rejoin `node` of `cluster` as a replica ([`failover::rejoin`]). Returns the new config
/// version.
pub async fn rejoin(
    plane: &Arc<DbPlane>,
    cluster: &str,
    node: &str,
    actor: &str,
) -> Result<Option<u64>, Refusal> {
    failover::rejoin(&plane.ha(), cluster, node, actor).await
}
