//! Query cancellation across the router.
//!
//! A client cancels with the `(pid, secret)` it got in `BackendKeyData` on a new connection.
//! Its server connection may change over its session (in transaction pooling, per
//! transaction), so Switchyard never hands out a server's key: each session gets its own key
//! from the [`CancelRegistry`], and the session records which server connection (address
//! and that server's key) it is using at each moment. A `CancelRequest` is looked up here,
//! its secret compared in constant time, and a real `CancelRequest` goes to that server.
//!
//! Keys live as long as their [`CancelKey`] handle: a session that ends takes its key with it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use rand::Rng;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a cancel may take to reach a server.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// A server connection's own key, and where that server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKey {
    pub addr: SocketAddr,
    pub pid: u32,
    pub secret: u32,
}

#[derive(Debug)]
struct IssuedKey {
    secret: u32,
    cluster: Arc<str>,
    server: Mutex<Option<ServerKey>>,
}

/// The keys Switchyard issued, by pid.
#[derive(Default, Clone)]
pub struct CancelRegistry {
    keys: Arc<DashMap<u32, Arc<IssuedKey>>>,
    /// Where a cancel with a key this process did not issue goes: the process this one
    /// upgraded, whose sessions still drain there.
    forward: Arc<std::sync::RwLock<Option<CancelForward>>>,
}

/// Passes a `CancelRequest` `(cluster, pid, secret)` on to another process.
pub type CancelForward = Arc<dyn Fn(&str, u32, u32) + Send + Sync>;

impl std::fmt::Debug for CancelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelRegistry")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// One session's key; dropping it withdraws the key.
#[derive(Debug)]
pub struct CancelKey {
    pub pid: u32,
    pub secret: u32,
    entry: Arc<IssuedKey>,
    keys: Arc<DashMap<u32, Arc<IssuedKey>>>,
}

impl CancelRegistry {
    /// Issue a fresh key for a session of `cluster`: a pid no live session has, and a random
    /// secret.
    pub fn issue(&self, cluster: Arc<str>) -> CancelKey {
        let mut rng = rand::rng();
        loop {
            // Positive, as clients (libpq) treat the pid as a signed int.
            let pid = rng.random_range(1..=i32::MAX as u32);
            if let Entry::Vacant(v) = self.keys.entry(pid) {
                let entry = Arc::new(IssuedKey {
                    secret: rng.random(),
                    cluster: cluster.clone(),
                    server: Mutex::new(None),
                });
                v.insert(entry.clone());
                return CancelKey {
                    pid,
                    secret: entry.secret,
                    entry,
                    keys: self.keys.clone(),
                };
            }
        }
    }

    /// Send cancels with keys this process did not issue to `forward` (a binary upgrade:
    /// the old process's sessions drain there while its listeners are this process's).
    pub fn forward_unknown_to(&self, forward: CancelForward) {
        *self.forward.write().unwrap_or_else(|p| p.into_inner()) = Some(forward);
    }

    /// Pass a cancel whose key is unknown here on; `false` when there is nowhere to pass it
    /// or the key is this process's.
    pub fn forward(&self, cluster: &str, pid: u32, secret: u32) -> bool {
        if self.keys.contains_key(&pid) {
            return false;
        }
        let forward = self
            .forward
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        forward.is_some_and(|f| {
            f(cluster, pid, secret);
            true
        })
    }

    /// Take over the key `(pid, secret)` another process issued to a session that moved
    /// here (a binary upgrade); `None` if a session here already has that pid.
    pub fn adopt(&self, cluster: Arc<str>, pid: u32, secret: u32) -> Option<CancelKey> {
        match self.keys.entry(pid) {
            Entry::Vacant(v) => {
                let entry = Arc::new(IssuedKey {
                    secret,
                    cluster,
                    server: Mutex::new(None),
                });
                v.insert(entry.clone());
                Some(CancelKey {
                    pid,
                    secret,
                    entry,
                    keys: self.keys.clone(),
                })
            }
            Entry::Occupied(_) => None,
        }
    }

    /// The server connection to cancel for `(pid, secret)` received on `cluster`'s listener,
    /// or `None` when no such key exists, the secret is wrong, or the session is not using a
    /// server connection right now.
    pub fn find(&self, cluster: &str, pid: u32, secret: u32) -> Option<ServerKey> {
        let entry = self.keys.get(&pid)?.clone();
        let secret_ok = bool::from(entry.secret.to_be_bytes().ct_eq(&secret.to_be_bytes()));
        if !secret_ok || &*entry.cluster != cluster {
            return None;
        }
        let server = *entry.server.lock().unwrap_or_else(|p| p.into_inner());
        server
    }

    /// Number of live keys (sessions).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl CancelKey {
    /// Record the server connection this session is using now (`None`: none).
    pub fn set_server(&self, server: Option<ServerKey>) {
        *self.entry.server.lock().unwrap_or_else(|p| p.into_inner()) = server;
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.keys.remove(&self.pid);
    }
}

/// Send a `CancelRequest` for `key` to its server and wait until the server closes the
/// connection (it answers nothing), within a bound.
pub async fn send_cancel(key: ServerKey) -> std::io::Result<()> {
    let work = async {
        let mut stream = TcpStream::connect(key.addr).await?;
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(
            key.pid as i32,
            key.secret as i32,
            &mut buf,
        );
        stream.write_all(&buf).await?;
        let mut sink = [0u8; 64];
        while stream.read(&mut sink).await? > 0 {}
        Ok(())
    };
    match tokio::time::timeout(CANCEL_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "cancel request timed out",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn server() -> ServerKey {
        ServerKey {
            addr: "127.0.0.1:5432".parse().unwrap(),
            pid: 4242,
            secret: 99,
        }
    }

    #[test]
    fn a_key_finds_the_server_in_use_only_with_the_right_secret() {
        let reg = CancelRegistry::default();
        let key = reg.issue("main".into());
        assert_eq!(reg.find("main", key.pid, key.secret), None, "no server yet");
        key.set_server(Some(server()));
        assert_eq!(reg.find("main", key.pid, key.secret), Some(server()));
        assert_eq!(reg.find("main", key.pid, key.secret ^ 1), None);
        assert_eq!(reg.find("other", key.pid, key.secret), None);
        assert_eq!(reg.find("main", key.pid ^ 1, key.secret), None);
        key.set_server(None);
        assert_eq!(reg.find("main", key.pid, key.secret), None);
    }

    #[test]
    fn keys_are_unique_and_withdrawn_on_drop() {
        let reg = CancelRegistry::default();
        let keys: Vec<_> = (0..1000).map(|_| reg.issue("main".into())).collect();
        assert_eq!(reg.len(), 1000);
        assert!(keys.iter().all(|k| k.pid > 0 && k.pid <= i32::MAX as u32));
        let (pid, secret) = (keys[0].pid, keys[0].secret);
        keys[0].set_server(Some(server()));
        drop(keys);
        assert!(reg.is_empty());
        assert_eq!(reg.find("main", pid, secret), None);
    }

    #[tokio::test]
    async fn send_cancel_writes_a_cancel_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 16];
            s.read_exact(&mut buf).await.unwrap();
            buf
        });
        send_cancel(ServerKey {
            addr,
            pid: 7,
            secret: 0xabcd_ef01,
        })
        .await
        .unwrap();
        let got = server.await.unwrap();
        let mut want = 16u32.to_be_bytes().to_vec();
        want.extend_from_slice(&switchyard_pgwire::startup::CANCEL_REQUEST_CODE.to_be_bytes());
        want.extend_from_slice(&7u32.to_be_bytes());
        want.extend_from_slice(&0xabcd_ef01u32.to_be_bytes());
        assert_eq!(got.to_vec(), want);
    }
}
