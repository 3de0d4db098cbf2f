//! Getting a client a logged-in server connection: from the node's pool, or by logging in
//! with the configured credentials when the pool has room, within the cluster's
//! `pool.checkout_timeout`, with every failure mapped to what that client is told.
//!
//! Session pooling does this once per client, transaction pooling once per transaction;
//! both go through [`Upstream`], which also knows the cluster as it is *now*
//! ([`Upstream::live`]: a reload that resizes the pool applies to the next checkout of a
//! running session, and a promoted primary gets the next write turn).

use std::sync::Arc;

use bytes::BytesMut;
use switchyard_config::{Address, PoolSettings};

use crate::runtime::{ClusterRuntime, Live, UserRuntime};
use crate::server::conn::{self, ClientErrorOrFrame};
use crate::server::pool::{NodePool, PooledConn, Pools};
use crate::stats::ClusterStats;
use switchyard_pgwire::backend::SqlState;
use switchyard_pgwire::error::ClientError;

/// Where one client's server connections come from: a node of its cluster, as its user.
#[derive(Debug)]
pub struct Upstream<'a> {
    /// The live runtime, for the cluster as it is now.
    pub live: &'a Live,
    /// Every node's pool (a replica's, for a read).
    pub pools: &'a Pools,
    pub cluster: &'a str,
    /// The cluster as of the client's login.
    pub rt: Arc<ClusterRuntime>,
    pub user: Arc<UserRuntime>,
    pub stats: Arc<ClusterStats>,
    /// The node (its address as written in the config) and its pool.
    pub node: String,
    pub pool: Arc<NodePool>,
}

impl<'a> Upstream<'a> {
    /// The primary of `rt`, for `user`.
    pub fn primary(
        live: &'a Live,
        pools: &'a Pools,
        cluster: &'a str,
        rt: Arc<ClusterRuntime>,
        user: Arc<UserRuntime>,
        stats: Arc<ClusterStats>,
    ) -> Self {
        let node = rt.primary.to_string();
        let pool = pools.get(cluster, &node);
        Upstream {
            live,
            pools,
            cluster,
            rt,
            user,
            stats,
            node,
            pool,
        }
    }

    /// The live cluster, if it still sends this client's work to the same node.
    pub fn current(&self) -> Option<Arc<ClusterRuntime>> {
        self.live
            .cluster(self.cluster)
            .filter(|c| c.primary == self.rt.primary)
    }

    /// The cluster as it is now (as of the login when it has left the config): transaction
    /// pooling routes every turn by it, so a promoted primary takes writes at once.
    #[inline]
    pub fn live(&self) -> Arc<ClusterRuntime> {
        self.live
            .cluster(self.cluster)
            .unwrap_or_else(|| self.rt.clone())
    }

    /// Pool settings in force now (those of the login when the cluster left the config).
    #[inline]
    pub fn settings(&self) -> PoolSettings {
        self.live().pool.clone()
    }

    /// A server connection for pool `key`, logging in with `params` (the startup parameters
    /// the server is to get, `user` among them) if a new one is needed. Notices the server
    /// sends while logging in are appended to `notices`.
    pub async fn checkout(
        &self,
        key: &str,
        params: &[(&str, &str)],
        notices: &mut BytesMut,
    ) -> Result<PooledConn, ClientErrorOrFrame> {
        self.checkout_at(&self.rt.primary, &self.pool, key, params, notices)
            .await
    }

    /// [`Upstream::checkout`] from `node` of the cluster (a replica, for a read) and its
    /// `pool`.
    pub async fn checkout_at(
        &self,
        node: &Address,
        pool: &Arc<NodePool>,
        key: &str,
        params: &[(&str, &str)],
        notices: &mut BytesMut,
    ) -> Result<PooledConn, ClientErrorOrFrame> {
        // One look at the live cluster for both (a turn checks out once per transaction).
        let live = self.live();
        let settings = live.pool.clone();
        let role = if *node == live.primary {
            "the primary"
        } else {
            "a replica"
        };
        drop(live);
        let timeout = settings.checkout_timeout;
        let connect = move || async move {
            // Boxed: a new server login (TCP, TLS, SCRAM) is rare, and its futures would
            // otherwise size every client's task for its whole life, idle or not.
            let login = Box::pin(conn::connect(
                node,
                params,
                &self.user.name,
                self.user.password.as_deref(),
                notices,
            ));
            match tokio::time::timeout(timeout, login).await {
                Ok(Ok(server)) => {
                    pool.remember_login(key, &server.parameter_status);
                    Ok(server)
                }
                Ok(Err(e)) => Err(Some(e)),
                Err(_elapsed) => Err(None),
            }
        };
        let checked_out = pool
            .checkout(
                key,
                &settings,
                || self.stats.server(&node.to_string()),
                connect,
            )
            .await
            .map_err(ClientErrorOrFrame::Error)?;
        match checked_out {
            Ok(server) => Ok(server),
            Err(Some(e)) => {
                tracing::warn!(cluster = %self.cluster, node = %node, error = %e, "server login failed");
                Err(e.to_client(self.cluster, role))
            }
            Err(None) => {
                tracing::warn!(cluster = %self.cluster, node = %node, "server login timed out");
                Err(ClientErrorOrFrame::Error(ClientError::fatal(
                    SqlState::CONNECTION_FAILURE,
                    format!(
                        "timed out connecting to {role} of cluster \"{}\"",
                        self.cluster
                    ),
                )))
            }
        }
    }
}
