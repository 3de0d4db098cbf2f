//! The failover lease in etcd (`failover.etcd`): when several Switchyards watch one cluster
//! (a sidecar beside each application instance), the one that creates the key
//! `<prefix>/<cluster>/leader`, bound to an etcd lease of `lease_ttl`, is the only one that
//! may promote; the others stand back, and learn the outcome from the decision it writes
//! (`<prefix>/<cluster>/decision`, watched by every sidecar: [`super::follow`]). This is
//! Patroni's leader key, held only for the length of a failover. No lease (etcd unreachable)
//! means no promotion: a partition must not produce two primaries.
//!
//! Spoken over gRPC with the `etcd-client` crate: a real lease grant, renewed by a task every
//! third of its TTL while held ([`Lease`]), and transactions: the leader key is created only
//! while its create revision is 0, and the decision is written only while the leader key
//! still has the create revision this holder made (revision fencing: a holder whose lease
//! ran out and was taken over writes nothing).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use serde::{Deserialize, Serialize};
use switchyard_config::EtcdSettings;
use tokio::task::JoinHandle;

/// Longest one request to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// etcd 3.4 drops clients that ping more often than every 5 s.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Tries per call: the client balances over the endpoints and does not retry on another one
/// by itself, so a dead member fails some calls that a second try sends elsewhere.
const ATTEMPTS: usize = 3;

/// How much of the lease must be left, on this process's own clock, for the holder to act.
const SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// The outcome of a claim.
pub enum Claim {
    /// This Switchyard holds the lease; the latest decision recorded, if any (read in the
    /// same transaction: one about the same failed primary means it was decided already).
    Won(Lease, Option<Decision>),
    /// Another one does: its identity as it wrote it.
    Lost { holder: String },
}

/// What the holder of the lease decided, as written to `<prefix>/<cluster>/decision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The promoted node.
    pub primary: String,
    /// The failed primary it replaces: fenced on every sidecar.
    pub old_primary: String,
    /// The deciding Switchyard ([`identity`]).
    pub by: String,
    /// When it decided, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub reason: String,
    /// A rejoin, not a promotion: this node's fence is lifted on every sidecar (`primary`
    /// and `old_primary` then both name the unchanged primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejoined: Option<String>,
}

/// A held failover lease. Renewed by a task every third of its TTL until dropped (the task
/// stops with it); [`Lease::valid`] says whether the holder may still act.
pub struct Lease {
    pub id: i64,
    /// The leader key's create revision: every write made as the holder compares it.
    pub revision: i64,
    ttl: Duration,
    /// When the last renewal that etcd acknowledged was sent (this process's monotonic clock).
    acked: Arc<Mutex<Instant>>,
    keeper: JoinHandle<()>,
}

impl Lease {
    /// Whether the lease certainly still runs: less than its TTL (minus a margin) has passed
    /// since the last renewal etcd acknowledged was sent.
    pub fn valid(&self) -> bool {
        lock(&self.acked).elapsed() + SAFETY_MARGIN < self.ttl
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// A client of the etcd cluster named in the config.
pub struct Arbiter {
    client: Client,
    settings: EtcdSettings,
}

impl Arbiter {
    /// Set up a client (the channel connects on first use, so this only fails on bad
    /// endpoints).
    pub async fn connect(settings: &EtcdSettings) -> Result<Arbiter, String> {
        let opts = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(PING_EVERY, REQUEST_TIMEOUT)
            .with_require_leader(true);
        let client = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Client::connect(&settings.endpoints, Some(opts)),
        )
        .await
        .map_err(|_| "connecting to etcd timed out".to_string())?
        .map_err(|e| format!("cannot connect to etcd: {e}"))?;
        Ok(Arbiter {
            client,
            settings: settings.clone(),
        })
    }

    pub fn key(&self, cluster: &str, name: &str) -> String {
        format!("{}/{cluster}/{name}", self.settings.prefix)
    }

    /// Try to become the one Switchyard that fails `cluster` over, as `me`.
    pub async fn claim(&self, cluster: &str, me: &str) -> Result<Claim, String> {
        let ttl = self.settings.lease_ttl.max(Duration::from_secs(2));
        let sent = Instant::now();
        let secs = ttl.as_secs() as i64;
        let grant = self
            .retry("lease grant", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        let id = grant.id();
        let key = self.key(cluster, "leader");
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![
                TxnOp::put(key.clone(), me, Some(PutOptions::new().with_lease(id))),
                TxnOp::get(self.key(cluster, "decision"), None),
            ])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        // A retried transaction that had been applied finds the key under this lease.
        let answer = match self
            .retry("taking the leader key", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
        {
            Ok(a) => a,
            Err(e) => {
                let _ = self.revoke(id).await;
                return Err(e);
            }
        };
        let got = |answer: &etcd_client::TxnResponse| {
            answer.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.lease(), kv.create_revision())),
                _ => None,
            })
        };
        let ours = got(&answer).filter(|(_, lease, _)| !answer.succeeded() && *lease == id);
        if answer.succeeded() || ours.is_some() {
            let decided = match ours {
                Some(_) => None,
                None => got(&answer).and_then(|(v, _, _)| serde_json::from_slice(&v).ok()),
            };
            let revision = match ours {
                Some((_, _, created)) => created,
                None => answer.header().map_or(0, |h| h.revision()),
            };
            let acked = Arc::new(Mutex::new(sent));
            let keeper = tokio::spawn(keep_alive(self.client.clone(), id, ttl, acked.clone()));
            let lease = Lease {
                id,
                revision,
                ttl,
                acked,
                keeper,
            };
            return Ok(Claim::Won(lease, decided));
        }
        let _ = self.revoke(id).await;
        let holder = got(&answer).map_or_else(
            || "unknown".into(),
            |(v, _, _)| String::from_utf8_lossy(&v).into_owned(),
        );
        Ok(Claim::Lost { holder })
    }

    /// Record `decision`: `<prefix>/<cluster>/primary` (the new primary's address, for
    /// operators and tools) and `<prefix>/<cluster>/decision` (what the other sidecars
    /// follow), in one transaction that applies only while `lease` still holds the leader
    /// key.
    pub async fn record(
        &self,
        cluster: &str,
        lease: &Lease,
        decision: &Decision,
    ) -> Result<(), String> {
        let leader = self.key(cluster, "leader");
        let value = serde_json::to_string(decision).map_err(|e| e.to_string())?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                leader,
                CompareOp::Equal,
                lease.revision,
            )])
            .and_then(vec![
                TxnOp::put(
                    self.key(cluster, "primary"),
                    decision.primary.as_str(),
                    None,
                ),
                TxnOp::put(self.key(cluster, "decision"), value, None),
            ]);
        let answer = self
            .retry("recording the decision", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if answer.succeeded() {
            Ok(())
        } else {
            Err("the failover lease ran out and the leader key changed hands: the decision was not recorded".into())
        }
    }

    /// Give the lease (and with it the leader key) back.
    pub async fn revoke(&self, id: i64) -> Result<(), String> {
        self.retry(
            "lease revoke",
            |mut c| async move { c.lease_revoke(id).await },
        )
        .await
        .map(|_| ())
    }

    /// Run `call` on the client, up to [`ATTEMPTS`] times until it succeeds.
    async fn retry<T, F, Fut>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match call(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("{what}: {e}"),
            }
        }
        Err(last)
    }

    /// The store revision now (a linearizable read of `key`'s header).
    pub async fn revision(&self, key: &str) -> Result<i64, String> {
        let resp = self
            .retry("reading the decision", |mut c| async move {
                c.get(key, Some(GetOptions::new().with_keys_only())).await
            })
            .await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Watch `key` from store revision `start` on.
    pub async fn watch(&self, key: &str, start: i64) -> Result<WatchStream, String> {
        self.client
            .clone()
            .watch(key, Some(WatchOptions::new().with_start_revision(start)))
            .await
            .map_err(|e| format!("watching {key}: {e}"))
    }
}

/// Renew lease `id` every third of `ttl`, noting in `acked` when each renewal that etcd
/// acknowledged was sent. The lease is held for one failover (seconds), so each renewal
/// opens its own keep-alive stream; a lease etcd says is gone is left to run out
/// ([`Lease::valid`] turns false).
async fn keep_alive(client: Client, id: i64, ttl: Duration, acked: Arc<Mutex<Instant>>) {
    let every = ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        let sent = Instant::now();
        let renewal = async {
            let (mut keeper, mut replies) = client.clone().lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            replies.message().await
        };
        match tokio::time::timeout(every, renewal).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => *lock(&acked) = sent,
            Ok(Ok(_)) => {
                tracing::warn!(lease = id, "the failover lease is gone in etcd");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = id, error = %e, "renewing the failover lease failed")
            }
            Err(_) => tracing::warn!(lease = id, "renewing the failover lease timed out"),
        }
    }
}

/// The failover lease of `cluster` for an operator's promote, switchover or rejoin: the
/// same lease an automatic failover takes, so two operations (or an operation and a
/// failover) never run at once across the fleet. `Err((status, why))`: 409 naming the
/// holder when another Switchyard holds it, 503 when etcd cannot be reached.
pub async fn claim_for_operator(
    settings: &EtcdSettings,
    cluster: &str,
) -> Result<(Arbiter, Lease), (u16, String)> {
    let unreachable = |e: String| {
        (
            503,
            format!("etcd cannot be reached for the failover lease of cluster {cluster:?} ({e}): the operation was not started"),
        )
    };
    let arbiter = Arbiter::connect(settings).await.map_err(unreachable)?;
    match arbiter.claim(cluster, &identity()).await {
        Ok(Claim::Won(lease, _)) => Ok((arbiter, lease)),
        Ok(Claim::Lost { holder }) => Err((
            409,
            format!("{holder} holds the failover lease of cluster {cluster:?} (a failover or another operation is under way): try again once it is done"),
        )),
        Err(e) => Err(unreachable(e)),
    }
}

/// Who this process is, as written in the leader key and the decision.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("switchyard@{host}/{}", std::process::id())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
