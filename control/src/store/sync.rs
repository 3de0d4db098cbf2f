//! Every node follows the shared document with an etcd watch and applies each new version
//! through the single writer ([`Applier::apply_from_store`]).
//!
//! The watch starts at the revision the document was read at (at boot, or by the follower
//! itself), plus one, so nothing between the read and the watch is missed. A broken stream (etcd down, a member killed, the link
//! cut: HTTP/2 keep-alive finds dead connections) is reopened from the last revision seen;
//! when etcd has compacted that revision, the document is read in full again. Duplicate or
//! old events are skipped by version. The data planes never wait on any of this.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};

use super::{EtcdStore, Head};
use crate::applier::Applier;

/// SIGHUP with a shared store: re-read certificates and other referenced files (the config
/// itself comes from the store). The handler is installed by this call, so a SIGHUP sent as
/// soon as the API answers does not kill the process; call it inside the Tokio runtime.
pub fn hangup(applier: Arc<Applier>) -> impl std::future::Future<Output = ()> {
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        let mut signal = match signal {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot install a SIGHUP handler");
                return;
            }
        };
        while signal.recv().await.is_some() {
            tracing::info!("SIGHUP: the config comes from the store; re-reading referenced files");
            applier.refresh().await;
        }
    }
}

/// Follow the document until the process ends.
pub async fn follow(applier: Arc<Applier>, store: Arc<EtcdStore>) {
    // From the revision the node booted from, when it did: nothing is read twice.
    let mut resume: Option<i64> = store.take_booted();
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow_once(&applier, &store, &mut resume).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                store.down(&e);
                store.reset().await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Read (when there is no revision to resume from) and watch; returns `Ok` to resync in full.
async fn follow_once(
    applier: &Applier,
    store: &EtcdStore,
    resume: &mut Option<i64>,
) -> Result<(), String> {
    let start = match *resume {
        Some(rev) => rev + 1,
        None => {
            let head = store.head().await?;
            applier.apply_from_store(store, &head).await;
            *resume = Some(head.read_revision);
            head.read_revision + 1
        }
    };
    let mut client = store.client().await?;
    let opts = WatchOptions::new().with_start_revision(start);
    let mut stream = client
        .watch(store.doc_key(), Some(opts))
        .await
        .map_err(|e| format!("watching the config document: {e}"))?;
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err("the config watch ended".into()),
            Err(e) => return Err(format!("the config watch failed: {e}")),
        };
        if msg.canceled() {
            if msg.compact_revision() > 0 {
                tracing::info!(
                    compacted = msg.compact_revision(),
                    "watch revision compacted; reading the config document in full"
                );
                *resume = None;
                return Ok(());
            }
            return Err(format!(
                "the config watch was canceled: {}",
                msg.cancel_reason()
            ));
        }
        store.up();
        for event in msg.events() {
            let Some(kv) = event.kv() else { continue };
            *resume = Some(resume.unwrap_or(0).max(kv.mod_revision()));
            match event.event_type() {
                EventType::Put => {
                    let head = Head {
                        version: kv.version().max(0) as u64,
                        revision: kv.mod_revision(),
                        read_revision: kv.mod_revision(),
                        text: String::from_utf8_lossy(kv.value()).into_owned(),
                    };
                    store.saw_version(head.version);
                    applier.apply_from_store(store, &head).await;
                }
                EventType::Delete => {
                    tracing::warn!(key = %store.doc_key(), "the shared config document was deleted; keeping the running config");
                }
            }
        }
    }
}
