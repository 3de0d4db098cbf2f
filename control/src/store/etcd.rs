//! The shared document in etcd: one key holding the TOML text (`<prefix>/config`), its
//! version being the key's etcd `version` (1, 2, 3… fleet-wide), history records beside it
//! (`<prefix>/history/<version>`), written in the same transaction and bounded, and the
//! store's health (reachable, or unreachable since when and why).
//!
//! Every write is a compare-and-swap on the document's `mod_revision`. Every call has a
//! deadline (`store.timeout`), asks for a leader (a member without quorum answers at once),
//! and is retried once on another connection when etcd says it is unavailable: the client
//! balances over the endpoints and does not retry by itself.

use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use switchyard_config::EtcdStore as EtcdSettings;
use time::OffsetDateTime;

use super::Record;

/// The largest shared document: the document and its history record are written in one
/// transaction, which etcd limits to 1.5 MiB by default.
pub const MAX_DOC_BYTES: usize = 640 * 1024;

/// The document as read from etcd. `version == 0` means there is none yet.
#[derive(Debug, Clone)]
pub struct Head {
    pub version: u64,
    /// The key's `mod_revision` (what a write compares).
    pub revision: i64,
    /// The store revision the read was served at (where a watch resumes).
    pub read_revision: i64,
    pub text: String,
}

/// An etcd-backed store.
pub struct EtcdStore {
    settings: EtcdSettings,
    client: tokio::sync::Mutex<Option<Client>>,
    health: Mutex<Health>,
    node: String,
    /// The revision the document was read at when this node booted from it: the follower's
    /// watch starts right after it ([`super::sync::follow`]) instead of reading it again, so
    /// a link lost just after start resumes from there (and sees a compaction as one).
    booted: Mutex<Option<i64>>,
}

#[derive(Debug, Clone)]
struct Health {
    reachable: bool,
    since: OffsetDateTime,
    error: Option<String>,
    /// Newest document version seen (read, written or watched).
    latest_version: u64,
}

/// A write that lost the race: the document changed since it was read.
#[derive(Debug)]
pub enum CasError {
    Conflict,
    Unavailable(String),
}

impl EtcdStore {
    /// Set up the store; nothing is connected yet (the first call connects).
    pub fn new(settings: EtcdSettings, node: String) -> EtcdStore {
        EtcdStore {
            settings,
            client: tokio::sync::Mutex::new(None),
            health: Mutex::new(Health {
                reachable: false,
                since: OffsetDateTime::now_utc(),
                error: Some("not connected yet".into()),
                latest_version: 0,
            }),
            node,
            booted: Mutex::new(None),
        }
    }

    /// This node booted from the document as read at `revision`.
    pub fn booted_from(&self, revision: i64) {
        *self.booted.lock().unwrap_or_else(|p| p.into_inner()) = Some(revision);
    }

    /// The revision this node booted from, once (the follower takes it).
    pub(crate) fn take_booted(&self) -> Option<i64> {
        self.booted.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    pub fn doc_key(&self) -> String {
        format!("{}/config", self.settings.prefix)
    }

    fn history_key(&self, version: u64) -> String {
        format!("{}/history/{version:020}", self.settings.prefix)
    }

    pub fn members_prefix(&self) -> String {
        format!("{}/members/", self.settings.prefix)
    }

    /// A connected client (connecting now if needed).
    pub async fn client(&self) -> Result<Client, String> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect().await.inspect_err(|e| self.down(e))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Drop the connection; the next call opens a new one (the client's channel may keep
    /// picking a dead member).
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }

    async fn connect(&self) -> Result<Client, String> {
        let s = &self.settings;
        let mut opts = ConnectOptions::new()
            .with_timeout(s.timeout)
            .with_connect_timeout(s.timeout)
            // etcd 3.4 drops clients that ping more often than every 5 s.
            .with_keep_alive(Duration::from_secs(5), s.timeout)
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&s.user_env, &s.password_env) {
            let user = std::env::var(u)
                .map_err(|_| format!("environment variable {u} (store.user_env) is not set"))?;
            let pass = std::env::var(p)
                .map_err(|_| format!("environment variable {p} (store.password_env) is not set"))?;
            // A restarted etcd forgets its tokens: log in again rather than fail for good.
            opts = opts.with_user(user, pass).with_auto_token_refresh(true);
        }
        if let Some(tls) = &s.tls {
            let ca = std::fs::read(&tls.ca)
                .map_err(|e| format!("cannot read {} (store.tls.ca): {e}", tls.ca.display()))?;
            let mut t = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca));
            if let Some(c) = &tls.client {
                let cert = std::fs::read(&c.cert)
                    .map_err(|e| format!("cannot read {}: {e}", c.cert.display()))?;
                let key = std::fs::read(&c.key)
                    .map_err(|e| format!("cannot read {}: {e}", c.key.display()))?;
                t = t.identity(etcd_client::Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(t);
        }
        tokio::time::timeout(s.timeout, Client::connect(&s.endpoints, Some(opts)))
            .await
            .map_err(|_| "connecting to etcd timed out".to_string())?
            .map_err(|e| format!("cannot connect to etcd: {e}"))
    }

    /// Record a failed call: the store is unreachable since the first failure.
    pub fn down(&self, error: &str) {
        let mut h = lock(&self.health);
        if h.reachable {
            tracing::warn!(error, "config store unreachable");
            h.reachable = false;
            h.since = OffsetDateTime::now_utc();
        }
        h.error = Some(error.to_string());
    }

    /// Record a successful call.
    pub fn up(&self) {
        let mut h = lock(&self.health);
        if !h.reachable {
            tracing::info!("config store reachable");
            h.reachable = true;
            h.since = OffsetDateTime::now_utc();
            h.error = None;
        }
    }

    pub fn reachable(&self) -> bool {
        lock(&self.health).reachable
    }

    /// Note a document version seen anywhere (for status and the fleet view).
    pub fn saw_version(&self, version: u64) {
        let mut h = lock(&self.health);
        h.latest_version = h.latest_version.max(version);
    }

    pub fn status(&self) -> serde_json::Value {
        let h = lock(&self.health).clone();
        let at = h
            .since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        serde_json::json!({
            "kind": "etcd",
            "node": self.node,
            "endpoints": self.settings.endpoints,
            "prefix": self.settings.prefix,
            "reachable": h.reachable,
            "reachable_since": if h.reachable { Some(&at) } else { None },
            "unreachable_since": if h.reachable { None } else { Some(&at) },
            "error": h.error,
            "latest_version": h.latest_version,
        })
    }

    /// Run `call` with a fresh client handle; on failure retry once (the balancer may have
    /// picked a dead member), then report the store unreachable.
    pub(super) async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = String::new();
        for attempt in 0..3 {
            let client = self.client().await?;
            match call(client).await {
                Ok(v) => {
                    self.up();
                    return Ok(v);
                }
                Err(e) => {
                    last = format!("{what}: {e}");
                    tracing::debug!(attempt, error = %last, "etcd call failed");
                    self.reset().await;
                }
            }
        }
        self.down(&last);
        Err(last)
    }

    /// The document now (a linearizable read).
    pub async fn head(&self) -> Result<Head, String> {
        let key = self.doc_key();
        let resp = self
            .call("reading the config document", |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        let read_revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let head = match resp.kvs().first() {
            Some(kv) => Head {
                version: kv.version().max(0) as u64,
                revision: kv.mod_revision(),
                read_revision,
                text: String::from_utf8_lossy(kv.value()).into_owned(),
            },
            None => Head {
                version: 0,
                revision: 0,
                read_revision,
                text: String::new(),
            },
        };
        self.saw_version(head.version);
        Ok(head)
    }

    /// Write `text` as the version after `base`, if the document is still `base`; the
    /// history record goes in the same transaction and the one falling out of the last
    /// `history_limit` is deleted. Returns the new version.
    pub async fn cas(
        &self,
        base: &Head,
        text: &str,
        record: &Record,
        history_limit: usize,
    ) -> Result<u64, CasError> {
        let key = self.doc_key();
        let compare = if base.version == 0 {
            Compare::version(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, base.revision)
        };
        let version = base.version + 1;
        let record_json = serde_json::to_string(record).unwrap_or_default();
        let mut ops = vec![
            TxnOp::put(key.clone(), text, None),
            TxnOp::put(self.history_key(version), record_json, None),
        ];
        if let Some(old) = version.checked_sub(history_limit.max(1) as u64) {
            if old > 0 {
                ops.push(TxnOp::delete(self.history_key(old), None));
            }
        }
        let resp = self
            .call("writing the config document", |mut c| {
                let txn = Txn::new().when(vec![compare.clone()]).and_then(ops.clone());
                async move { c.txn(txn).await }
            })
            .await
            .map_err(CasError::Unavailable)?;
        if resp.succeeded() {
            self.saw_version(version);
            Ok(version)
        } else {
            Err(CasError::Conflict)
        }
    }

    /// Create the document with `text` if there is none (the first node seeds the fleet).
    pub async fn seed(&self, text: &str, record: &Record, limit: usize) -> Result<(), String> {
        let none = Head {
            version: 0,
            revision: 0,
            read_revision: 0,
            text: String::new(),
        };
        match self.cas(&none, text, record, limit).await {
            Ok(_) | Err(CasError::Conflict) => Ok(()),
            Err(CasError::Unavailable(e)) => Err(e),
        }
    }

    /// The history record of `version`, if still kept.
    pub async fn record(&self, version: u64) -> Result<Option<Record>, String> {
        let key = self.history_key(version);
        let resp = self
            .call("reading the config history", |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
    }

    /// Every history record kept, oldest first.
    pub async fn history(&self) -> Result<Vec<Record>, String> {
        let prefix = format!("{}/history/", self.settings.prefix);
        self.json_under(prefix, "reading the config history").await
    }

    /// Every registered node's record, as JSON.
    pub async fn members(&self) -> Result<Vec<serde_json::Value>, String> {
        self.json_under(self.members_prefix(), "reading the fleet members")
            .await
    }

    /// Every value under `prefix` that parses as `T`, in key order.
    pub(crate) async fn json_under<T: serde::de::DeserializeOwned>(
        &self,
        prefix: String,
        what: &str,
    ) -> Result<Vec<T>, String> {
        let resp = self
            .call(what, |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect())
    }

    /// Put this node's registration under `lease`.
    pub async fn register(&self, value: &str, lease: i64) -> Result<(), String> {
        let key = format!("{}{}", self.members_prefix(), self.node);
        self.call("registering this node", |mut c| {
            let (key, value) = (key.clone(), value.to_string());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await
        .map(|_| ())
    }
}

/// Lock a std mutex, recovering from poisoning (the health record is plain data).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
