//! Starting the router: one listener per configured cluster, bound at start-up like the
//! HTTP plane's (moving or adding one needs a restart, and `/v1/status` says so), served on a
//! tokio runtime of the router's own so that client sessions never compete with the control
//! API for threads; beside them the monitor and failover ([`crate::ha::run`]) and the
//! pools' reaper.
//!
//! [`start`] binds every listener first (so a taken port stops start-up with the cluster's
//! key path in the error), records them with [`DbPlane::mark_serving`], then spawns the
//! runtime. The accept loop for one listener is [`crate::client::listener::serve`].
//!
//! The runtime has half the machine's cores as workers, at least one and at most eight
//! (`SWITCHYARD_PG_WORKERS` overrides), and is a current-thread runtime when that is one.
//! Relaying is mostly kernel work (sends and receives, waking the peer), and the router
//! usually shares its cores with its clients or PostgreSQL: on two cores, one worker cut
//! the router's CPU per transaction by about a quarter (no futex wake-ups between workers).
//! The cost: with one worker, CPU-heavy work (a server login's SCRAM key derivation, a
//! classifier parse) delays the other sessions for its duration.

use std::sync::Arc;
use std::time::Duration;

use switchyard_config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::db_plane::DbPlane;
use crate::client::listener;
use crate::status::Serving;

/// How often idle server connections are checked for expiry (and pools filled to
/// `pool.min_size`).
const REAP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the listeners could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding postgres.clusters[{index}].listen ({addr}) for cluster {cluster}: {source}")]
    Bind {
        index: usize,
        cluster: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the Postgres runtime: {0}")]
    Runtime(std::io::Error),
}

/// The running listeners. Dropping this asks them to stop accepting; sessions in progress
/// run on until the process exits.
#[derive(Debug)]
pub struct PgListeners {
    stop: watch::Sender<Stage>,
    thread: Option<std::thread::JoinHandle<()>>,
    adopter: Adopter,
}

/// Takes in sessions another process handed over, onto the router's runtime.
#[derive(Debug, Clone)]
pub struct Adopter {
    runtime: tokio::runtime::Handle,
    services: Arc<crate::client::services::Services>,
}

impl Adopter {
    /// Handle a `CancelRequest` the process that took over this one's listeners received
    /// for a session still here.
    pub fn cancel(&self, cluster: &str, pid: u32, secret: u32) {
        let services = self.services.clone();
        let cluster = cluster.to_string();
        self.runtime.spawn(async move {
            let stats = services.stats.get(&cluster);
            crate::client::session::cancel_request(&services, &cluster, &stats, pid, secret).await;
        });
    }

    /// Serve the session whose state is `state` (JSON of
    /// [`crate::pooling::transaction::handoff::Handoff`]) on the client socket `socket`.
    pub fn adopt(&self, state: &[u8], socket: std::os::fd::OwnedFd) -> Result<(), String> {
        let state: crate::pooling::transaction::handoff::Handoff =
            serde_json::from_slice(state).map_err(|e| format!("handed-over session: {e}"))?;
        let tcp = std::net::TcpStream::from(socket);
        tcp.set_nonblocking(true)
            .map_err(|e| format!("handed-over session: {e}"))?;
        let services = self.services.clone();
        self.runtime.spawn(async move {
            match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => crate::client::session::resume(services, tcp, state).await,
                Err(e) => tracing::warn!(error = %e, "handed-over session: socket"),
            }
        });
        Ok(())
    }
}

/// How far the listeners have been stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Accepting,
    /// No new clients; sessions in progress run on.
    Draining,
    /// The runtime ends, and the sessions with it.
    Finished,
}

impl PgListeners {
    /// What takes in sessions handed over from another process.
    pub fn adopter(&self) -> Adopter {
        self.adopter.clone()
    }

    /// Stop accepting; sessions in progress run on.
    pub fn stop_accepting(&self) {
        self.stop.send_if_modified(|s| {
            let changed = *s < Stage::Draining;
            *s = (*s).max(Stage::Draining);
            changed
        });
    }

    /// Stop accepting and wait for the router's runtime to finish (sessions in progress are
    /// dropped with it).
    pub fn shutdown(mut self) {
        let _ = self.stop.send(Stage::Finished);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PgListeners {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// Bind a listener per cluster of `config` and serve them on a new runtime thread. `None`
/// when the config has no clusters (nothing is started).
pub fn start(plane: Arc<DbPlane>, config: &Config) -> Result<Option<PgListeners>, StartError> {
    start_on(plane, config, &mut |_, addr| {
        std::net::TcpListener::bind(addr)
    })
}

/// [`start`] on the listening sockets `listen` gives for each cluster (by its index in
/// `postgres.clusters` and its configured `listen` address): a binary upgrade passes the
/// sockets the previous process served on.
pub fn start_on(
    plane: Arc<DbPlane>,
    config: &Config,
    listen: &mut dyn FnMut(usize, std::net::SocketAddr) -> std::io::Result<std::net::TcpListener>,
) -> Result<Option<PgListeners>, StartError> {
    let services = Arc::new(plane.services());
    let ha = plane.ha();
    let mut bound = Vec::new();
    for (index, c) in config.postgres.clusters.iter().enumerate() {
        let bind_err = |source| StartError::Bind {
            index,
            cluster: c.name.clone(),
            addr: c.listen,
            source,
        };
        let l = listen(index, c.listen).map_err(bind_err)?;
        l.set_nonblocking(true).map_err(bind_err)?;
        let addr = l.local_addr().map_err(bind_err)?;
        bound.push((
            Serving {
                cluster: c.name.clone(),
                configured: c.listen,
                bound: addr,
            },
            l,
        ));
    }
    plane.mark_serving(bound.iter().map(|(s, _)| s.clone()).collect());
    if bound.is_empty() {
        return Ok(None);
    }
    let workers = worker_threads();
    // One worker: a current-thread runtime, without the work-stealing scheduler's
    // bookkeeping (everything runs on the thread below either way).
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = builder
        .thread_name("switchyard-pg")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let adopter = Adopter {
        runtime: rt.handle().clone(),
        services: services.clone(),
    };
    let (stop, stopped) = watch::channel(Stage::Accepting);
    let mut finished = stopped.clone();
    let thread = std::thread::Builder::new()
        .name("switchyard-pg".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut accept_loops = Vec::new();
                for (s, l) in bound {
                    match TcpListener::from_std(l) {
                        Ok(listener) => {
                            tracing::info!(cluster = %s.cluster, listen = %s.bound, "postgres listener started");
                            let mut stopped = stopped.clone();
                            let shutdown = async move {
                                let _ = stopped.wait_for(|s| *s >= Stage::Draining).await;
                            };
                            accept_loops.push(tokio::spawn(listener::serve(
                                services.clone(),
                                s.cluster.into(),
                                listener,
                                shutdown,
                            )));
                        }
                        Err(e) => {
                            tracing::error!(cluster = %s.cluster, error = %e, "postgres listener failed")
                        }
                    }
                }
                // Checks every node of the running config (and follows reloads).
                tokio::spawn(crate::ha::run(ha));
                let reaper = plane.clone();
                tokio::spawn(async move {
                    loop {
                        // At once too: pool.min_size connections open at start.
                        reaper.reap_idle();
                        tokio::time::sleep(REAP_INTERVAL).await;
                    }
                });
                for l in accept_loops {
                    let _ = l.await;
                }
                // Not accepting any more: the sessions in progress run on (the process ends
                // them when it exits) until the runtime is told to finish.
                if finished.wait_for(|s| *s == Stage::Finished).await.is_err() {
                    // The handle was dropped: run on until the process exits.
                    std::future::pending::<()>().await;
                }
            })
        })
        .map_err(StartError::Runtime)?;
    Ok(Some(PgListeners {
        stop,
        thread: Some(thread),
        adopter,
    }))
}

/// Worker threads of the router's runtime: `SWITCHYARD_PG_WORKERS` when set to a number
/// from 1 to 64, else [`default_workers`].
fn worker_threads() -> usize {
    std::env::var("SWITCHYARD_PG_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or_else(default_workers)
}

/// Half the cores, from 1 to 8. Most of a relayed transaction's cost is in the kernel
/// (loopback or NIC send and receive, waking the peer), shared with the clients and
/// PostgreSQL on the same machine; each extra worker adds wake-ups between threads (a task
/// woken on one worker, stolen by another) without adding cores for the router.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8))
}
