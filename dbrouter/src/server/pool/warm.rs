//! `pool.min_size`: server connections a node's pool keeps open before anyone asks, as
//! PgBouncer's `min_pool_size` does, so the first clients after a start, a reload or a
//! quiet spell do not pay for a login.
//!
//! Pre-opened connections need startup parameters nobody has sent yet: they are opened for
//! the pool key of the latest fresh login in that pool (what clients actually use, in
//! transaction or session pooling alike), or, before any client came, for the cluster's
//! first user on database `postgres` (the one every cluster has, and the node monitor's) in
//! the cluster's pool mode.
//! A router following another Switchyard's failover also pre-opens connections to the new
//! primary at once ([`NodePool::warm_like`]).
//! They are opened by the periodic reaper ([`super::Pools::reap`]), one fill at a
//! time per pool, in the background; a connection that cannot be opened is logged and
//! tried again at the next round. The connections count against `max_size` like any
//! other, go idle (or to a waiting checkout) when opened, and expire by `idle_timeout` and
//! `max_lifetime` as usual; the next round opens new ones.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use switchyard_config::{Address, PoolMode};

use super::node::{key, lock, NodePool, PooledConn, Slot};
use crate::runtime::ClusterRuntime;
use crate::stats::ClusterStats;

/// The startup parameters a pool key was made of (see [`key`]); `tx\0` marks a key of
/// transaction pooling.
pub fn params_of_key(key: &str) -> Vec<(String, String)> {
    let body = key.strip_prefix("tx\0").unwrap_or(key);
    let mut parts = body.split('\0');
    let mut params = Vec::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if name.is_empty() {
            break;
        }
        params.push((name.to_string(), value.to_string()));
    }
    params
}

/// The key pre-opened connections of a pool of `rt` get before any client came.
fn default_key(rt: &ClusterRuntime) -> Option<String> {
    let user = rt.config.users.first()?;
    let k = key(&[("user", &user.name), ("database", "postgres")]);
    Some(match rt.pool_mode {
        PoolMode::Transaction => format!("tx\0{k}"),
        PoolMode::Session => k,
    })
}

impl NodePool {
    /// Remember `key` as the one to pre-open connections for.
    pub(super) fn note_warm_key(&self, key: &str) {
        let mut warm = lock(&self.warm_key);
        if warm.as_deref() != Some(key) {
            *warm = Some(key.to_string());
        }
    }

    /// Open connections to `node` in the background until the pool holds `pool.min_size`
    /// of them (none while a fill of this pool is running).
    pub fn fill_to_min(
        self: &Arc<Self>,
        rt: &Arc<ClusterRuntime>,
        node: &Address,
        stats: &Arc<ClusterStats>,
    ) {
        let min = rt.pool.min_size.min(rt.pool.max_size) as usize;
        self.fill_up_to(rt, node, stats, min);
    }

    /// When `node` has just become the primary in place of `old` (a failover this router
    /// follows): open, in the background, as many connections as `old` had (`want`; at least
    /// one and `pool.min_size`, at most `max_size`), for the key `old` was last logged in
    /// with, so that the first writes after the failover do not pay for logins.
    pub fn warm_like(
        self: &Arc<Self>,
        old: &NodePool,
        rt: &Arc<ClusterRuntime>,
        node: &Address,
        stats: &Arc<ClusterStats>,
        want: usize,
    ) {
        let key = lock(&old.warm_key).clone();
        if let Some(key) = key {
            self.note_warm_key(&key);
        }
        let want = want.max(1).max(rt.pool.min_size as usize);
        self.fill_up_to(rt, node, stats, want.min(rt.pool.max_size as usize));
    }

    fn fill_up_to(
        self: &Arc<Self>,
        rt: &Arc<ClusterRuntime>,
        node: &Address,
        stats: &Arc<ClusterStats>,
        min: usize,
    ) {
        if self.counts().0 >= min || self.filling.swap(true, SeqCst) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.filling.store(false, SeqCst);
            return;
        };
        let (pool, rt, node, stats) = (self.clone(), rt.clone(), node.clone(), stats.clone());
        handle.spawn(async move {
            pool.fill(&rt, &node, &stats, min).await;
            pool.filling.store(false, SeqCst);
        });
    }

    async fn fill(
        self: &Arc<Self>,
        rt: &ClusterRuntime,
        node: &Address,
        stats: &Arc<ClusterStats>,
        min: usize,
    ) {
        let warm = lock(&self.warm_key).clone();
        let Some(key) = warm.or_else(|| default_key(rt)) else {
            return;
        };
        let params = params_of_key(&key);
        let Some(user) = params
            .iter()
            .find(|(k, _)| k == "user")
            .and_then(|(_, u)| rt.users.get(u))
        else {
            return;
        };
        let borrowed: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let node_name = node.to_string();
        loop {
            // Room under min_size (and so under max_size), reserved before connecting.
            let reserved = self
                .open
                .fetch_update(SeqCst, SeqCst, |n| (n < min).then_some(n + 1))
                .is_ok();
            if !reserved {
                return;
            }
            let slot = Slot(self.clone());
            let mut notices = BytesMut::new();
            let login = crate::server::conn::connect_with(
                node,
                &borrowed,
                &user.name,
                user.password.as_deref(),
                &mut notices,
                &rt.server_tls,
            );
            match tokio::time::timeout(rt.pool.checkout_timeout, login).await {
                Ok(Ok(conn)) => {
                    self.remember_login(&key, &conn.parameter_status);
                    let conn = PooledConn {
                        conn,
                        born: Instant::now(),
                        _slot: slot,
                        _counted: stats.server(&node_name),
                    };
                    tracing::debug!(cluster = %rt.name, node = %node_name, "pre-opened a server connection (pool.min_size)");
                    self.hand_over(key.clone(), conn);
                }
                Ok(Err(e)) => {
                    tracing::warn!(cluster = %rt.name, node = %node_name, error = %e, "pre-opening a server connection failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(cluster = %rt.name, node = %node_name, "pre-opening a server connection timed out");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_give_back_their_parameters() {
        let k = key(&[("user", "app"), ("database", "jobs")]);
        let want = vec![
            ("database".to_string(), "jobs".to_string()),
            ("user".to_string(), "app".to_string()),
        ];
        assert_eq!(params_of_key(&k), want);
        assert_eq!(params_of_key(&format!("tx\0{k}")), want);
        assert!(params_of_key("").is_empty());
    }
}
