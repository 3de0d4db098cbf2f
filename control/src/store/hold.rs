//! A key held by one node under an etcd lease: the right to do one job for the fleet (verify
//! a flip of an upstream). [`EtcdStore::hold`] creates the key only while nobody holds it
//! (its create revision is 0), bound to a new lease that a task renews every third of the
//! TTL. A holder that dies stops renewing; etcd deletes the key about one TTL later, and
//! another node may take it.
//!
//! Every write the holder makes for the job goes through [`Held::put`], a transaction that
//! compares the key's create revision with the one this holder made (revision fencing: a
//! holder that stalled past its TTL, and was replaced, writes nothing). [`Held::valid`] also
//! says, on this node's own monotonic clock, whether the lease still certainly runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use tokio::task::JoinHandle;

use super::EtcdStore;

/// How much of the lease must be left, on this node's clock, for the holder to act.
const SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// A key this node holds. Renewed until dropped or released.
pub struct Held {
    store: Arc<EtcdStore>,
    key: String,
    lease: i64,
    /// The key's create revision (what every fenced write compares).
    revision: i64,
    ttl: Duration,
    /// When the last renewal etcd acknowledged was sent.
    acked: Arc<Mutex<Instant>>,
    keeper: JoinHandle<()>,
}

impl EtcdStore {
    /// Take `key` with `value` (this node's id), if nobody holds it. `Ok(None)`: someone does.
    pub async fn hold(self: &Arc<Self>, key: &str, value: &str) -> Result<Option<Held>, String> {
        let ttl = self.settings().lease_ttl.max(Duration::from_secs(2));
        let sent = Instant::now();
        let mut client = self.client().await?;
        let lease = client
            .lease_grant(ttl.as_secs() as i64, None)
            .await
            .map_err(|e| {
                let e = format!("lease grant: {e}");
                self.down(&e);
                e
            })?
            .id();
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let answer = match client.txn(txn).await {
            Ok(a) => a,
            Err(e) => {
                let _ = client.lease_revoke(lease).await;
                return Err(format!("taking {key}: {e}"));
            }
        };
        self.up();
        if !answer.succeeded() {
            let _ = client.lease_revoke(lease).await;
            return Ok(None);
        }
        let acked = Arc::new(Mutex::new(sent));
        let keeper = tokio::spawn(keep_alive(self.clone(), lease, ttl, acked.clone()));
        Ok(Some(Held {
            store: self.clone(),
            key: key.to_string(),
            lease,
            revision: answer.header().map_or(0, |h| h.revision()),
            ttl,
            acked,
            keeper,
        }))
    }

    /// Whether `key` exists now (a linearizable read).
    pub async fn exists(&self, key: &str) -> Result<bool, String> {
        let key = key.to_string();
        let resp = self
            .call("reading a holder key", |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(resp.count() > 0)
    }
}

impl Held {
    /// Whether the lease certainly still runs: less than its TTL (minus a margin) has passed
    /// since the last renewal etcd acknowledged was sent.
    pub fn valid(&self) -> bool {
        lock(&self.acked).elapsed() + SAFETY_MARGIN < self.ttl
    }

    /// Write `value` at `key` while this holder still holds the key. `Ok(false)`: it does
    /// not any more (the write was not made).
    pub async fn put(&self, key: &str, value: &str) -> Result<bool, String> {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                self.key.as_str(),
                CompareOp::Equal,
                self.revision,
            )])
            .and_then(vec![TxnOp::put(key, value, None)]);
        let mut client = self.store.client().await?;
        let answer = client
            .txn(txn)
            .await
            .map_err(|e| format!("writing {key}: {e}"))?;
        Ok(answer.succeeded())
    }

    /// Give the key back (revoke the lease).
    pub async fn release(self) {
        self.keeper.abort();
        if let Ok(mut c) = self.store.client().await {
            if let Err(e) = c.lease_revoke(self.lease).await {
                tracing::debug!(key = %self.key, error = %e, "revoking a holder lease failed (it runs out by itself)");
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Renew `lease` every third of `ttl`, noting in `acked` when each acknowledged renewal was
/// sent. A broken stream is reopened on the next round; a lease etcd says is gone ends the
/// task ([`Held::valid`] turns false).
async fn keep_alive(store: Arc<EtcdStore>, lease: i64, ttl: Duration, acked: Arc<Mutex<Instant>>) {
    let every = ttl / 3;
    let mut stream = None;
    loop {
        tokio::time::sleep(every).await;
        if stream.is_none() {
            let Ok(mut client) = store.client().await else {
                continue;
            };
            match client.lease_keep_alive(lease).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::debug!(lease, error = %e, "holder lease keep-alive failed");
                    continue;
                }
            }
        }
        let Some((keeper, replies)) = stream.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let reply = match keeper.keep_alive().await {
            Ok(()) => tokio::time::timeout(every, replies.message()).await,
            Err(e) => Ok(Err(e)),
        };
        match reply {
            Ok(Ok(Some(r))) if r.ttl() > 0 => *lock(&acked) = sent,
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease, "a holder lease expired in etcd");
                return;
            }
            _ => stream = None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
