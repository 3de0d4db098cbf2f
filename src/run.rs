//! `switchyard run`: load the config, bind (or take over) every listener, start the control
//! plane on its own runtime, and serve the HTTP listeners on pingora's.
//!
//! pingora's `Server` owns the main thread and its own runtimes; the control API, the file
//! watcher, the active health checks, the upgrade socket and the drain run on a separate
//! tokio runtime beside it. Every listening socket is bound here first
//! ([`crate::upgrade::sockets`]), or taken from the process this one upgrades
//! (`--takeover`): only once all of them serve does an upgraded process tell its
//! predecessor, and any error before that goes back to it (which goes on serving).
//! SIGUSR1 reopens the access log files (logrotate's `postrotate`), SIGHUP re-reads the
//! config (the watcher's).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::Planes;
use switchyard_control::api::ApiState;
use switchyard_control::Applier;

use crate::drain::{PingoraStop, Stopping};
use crate::upgrade::handover::{Handover, Release};
use crate::upgrade::sockets::{self, Inherited, Listening};
use crate::upgrade::takeover::Takeover;
use crate::upgrade::wire::Kind;

/// How long pingora may take to start its listener services on the bound sockets.
const SERVE_WAIT: Duration = Duration::from_secs(30);

/// pingora's grace-period ceiling: the drain ([`crate::drain`]) ends the process first.
const PINGORA_GRACE: Duration = Duration::from_secs(86_400);

/// What `switchyard run` was given.
pub struct RunArgs {
    pub config: PathBuf,
    pub log_format: &'static str,
    pub upgrade_socket: Option<PathBuf>,
    /// Standard input is the channel from the process being upgraded.
    pub takeover: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let (takeover, mut inherited) = if args.takeover {
        let (t, i) = Takeover::receive()?;
        (Some(t), i)
    } else {
        (None, Inherited::default())
    };
    let started = match start(&args, &mut inherited) {
        Ok(s) => s,
        Err(e) => {
            if let Some(t) = takeover {
                t.failed(&e);
            }
            return Err(e);
        }
    };
    let Started {
        server,
        serving,
        control,
        version,
        stopping,
        adopter,
        cancels,
    } = started;
    let upgraded = takeover.is_some();
    // Ready once pingora has started every HTTP listener service (at once without any).
    let ready = std::thread::Builder::new()
        .name("switchyard-ready".into())
        .spawn(move || {
            if let Some(rx) = serving {
                if rx.recv_timeout(SERVE_WAIT).is_err() {
                    let e =
                        anyhow::anyhow!("the HTTP listeners did not start within {SERVE_WAIT:?}");
                    tracing::error!("{e}");
                    if let Some(t) = takeover {
                        t.failed(&e);
                    }
                    std::process::exit(1);
                }
            }
            if let Some(t) = takeover {
                // Serves from here on; the old process hands its sessions over meanwhile.
                std::thread::spawn(move || t.ready(adopter, &cancels));
            }
            crate::readiness::notify_ready(version, upgraded);
        });
    ready.context("starting the readiness thread")?;
    match server {
        Some(server) => {
            // Returns after a fast stop; a drain ends the process from the control runtime.
            server.run(pingora::server::RunArgs {
                shutdown_signal: Box::new(PingoraStop(stopping)),
            });
        }
        None => {
            let _ = control.join();
        }
    }
    tracing::info!("switchyard stopped");
    Ok(())
}

/// A process whose listeners are bound and whose planes are built, not yet serving HTTP.
struct Started {
    server: Option<pingora::server::Server>,
    serving: Option<std::sync::mpsc::Receiver<()>>,
    control: std::thread::JoinHandle<()>,
    version: u64,
    stopping: Stopping,
    adopter: Option<switchyard_dbrouter::Adopter>,
    cancels: switchyard_dbrouter::cancel::CancelRegistry,
}

/// The planes' open client connections, for the drain.
struct OpenConnections(Planes);

impl crate::drain::Open for OpenConnections {
    fn http(&self) -> usize {
        self.0.http.open_client_connections()
    }
    fn postgres(&self) -> u64 {
        self.0.postgres.client_sessions()
    }
    fn close_postgres(&self) {
        self.0.postgres.close_sessions();
    }
    fn finish(&self) {
        // The last requests' lines are still in the writers' buffers.
        self.0.http.flush_access_logs(Duration::from_secs(2));
    }
}

/// Once the new process serves: hand the Postgres sessions that can move over, stop
/// accepting everywhere and drain.
struct DrainOnRelease(Stopping, Arc<switchyard_dbrouter::DbPlane>);

impl Release for DrainOnRelease {
    fn release(
        &self,
        grace: Duration,
        pg_drain: Duration,
        sessions: switchyard_dbrouter::closing::HandoffSink,
    ) {
        self.1.hand_over_sessions(sessions);
        self.0.drain(grace, pg_drain, true);
    }
}

fn bind_error(key: String, addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!("binding {key}: {addr} is in use"),
        _ => anyhow::anyhow!("binding {key} ({addr}): {e}"),
    }
}

fn start(args: &RunArgs, inherited: &mut Inherited) -> anyhow::Result<Started> {
    let metrics = switchyard_control::metrics::install()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    switchyard::build_info::publish();
    let planes = Planes::new();
    let stopping = Stopping::default();
    let control_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("switchyard-control")
        .build()
        .context("starting the control runtime")?;
    // With a shared store (etcd) this reads, or seeds, the shared document.
    let applier = control_rt.block_on(Applier::open(&args.config, planes.list()))?;
    // Failovers record their role changes through the single writer.
    planes
        .postgres
        .failover
        .set_sink(Arc::new(switchyard::pgops::ConfigWriter(applier.clone())));
    let config = applier.current().snapshot.config.clone();
    let mut listening = Listening::default();
    let listen = config.control.listen;
    let control_fd = sockets::tcp(inherited, &mut listening, Kind::Control, "", listen)
        .with_context(|| format!("binding the control API to {listen} (control.listen)"))?;
    let listener = {
        let _enter = control_rt.enter();
        tokio::net::TcpListener::from_std(std::net::TcpListener::from(control_fd))
            .context("control API listener")?
    };
    let bound = listener.local_addr().context("control API address")?;
    let mut http_sockets = Vec::new();
    for (i, l) in config.http.listeners.iter().enumerate() {
        let fd = sockets::tcp(inherited, &mut listening, Kind::Http, &l.name, l.addr)
            .map_err(|e| bind_error(format!("http.listeners[{i}].addr"), l.addr, e))?;
        http_sockets.push((l.name.clone(), fd));
    }
    // Build the proxy before the control plane starts serving, so an error stops start-up.
    let (server, serving) = if config.http.listeners.is_empty() {
        (None, None)
    } else {
        let (server, serving) = switchyard_proxy::server::build_server(
            planes.http.clone(),
            &config,
            http_sockets,
            PINGORA_GRACE,
        )
        .map_err(|e| anyhow::anyhow!("starting the HTTP listeners: {e}"))?;
        planes.http.mark_serving(&config.http.listeners);
        (Some(server), Some(serving))
    };
    // The Postgres listeners (one per cluster), served on the router's own runtime.
    let clusters: Vec<String> = config
        .postgres
        .clusters
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let postgres =
        switchyard_dbrouter::start_on(planes.postgres.clone(), &config, &mut |i, addr| {
            let name = clusters.get(i).map(String::as_str).unwrap_or_default();
            let fd = sockets::tcp(inherited, &mut listening, Kind::Postgres, name, addr)?;
            Ok(std::net::TcpListener::from(fd))
        })
        .map_err(|e| anyhow::anyhow!("starting the Postgres listeners: {e}"))?;
    let adopter = postgres.as_ref().map(|p| p.adopter());
    let upgrade_path = args
        .upgrade_socket
        .clone()
        .unwrap_or_else(|| crate::upgrade::default_socket(&args.config));
    let upgrade_listener = match sockets::upgrade_socket(inherited, &mut listening, &upgrade_path) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(path = %upgrade_path.display(), error = %e, "no upgrade socket: `switchyard upgrade` cannot reach this process");
            None
        }
    };
    inherited.close_unclaimed();
    let handover = Arc::new(Handover {
        listening: Arc::new(listening),
        config_path: args.config.clone(),
        log_format: args.log_format,
        upgrade_socket: upgrade_path.clone(),
        release: Arc::new(DrainOnRelease(stopping.clone(), planes.postgres.clone())),
        busy: Mutex::new(false),
        postgres: adopter.clone(),
    });
    // With a shared store, flips are verified on the whole fleet's traffic.
    let fleet_traffic = applier.store().etcd().map(|s| {
        Arc::new(switchyard_control::store::traffic::FleetTraffic::new(
            planes.traffic(),
            s.node(),
        ))
    });
    let traffic: Arc<dyn switchyard_control::TrafficStats> = match &fleet_traffic {
        Some(t) => t.clone(),
        None => planes.traffic(),
    };
    let ops = switchyard_control::ops::Ops::default();
    let state = Arc::new(ApiState {
        applier: applier.clone(),
        metrics: Some(metrics.clone()),
        bound,
        started: Instant::now(),
        traffic: Some(traffic.clone()),
        ops: ops.clone(),
        clusters: Some(Arc::new(switchyard::pgops::ClusterOpsAdapter(
            planes.postgres.clone(),
        ))),
    });
    // The watcher installs its file watch and SIGHUP handler now, inside the control runtime,
    // so both are in place before the API answers. With a shared store the node follows the
    // store instead (its own file holds only node-local settings, read at start).
    let follower: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        match applier.store().etcd().cloned() {
            None => {
                let _enter = control_rt.enter();
                // A rollout the state file kept is shown, or driven on from its step.
                tokio::spawn(switchyard_control::ops::rollout::resume_kept(
                    ops.rollouts.clone(),
                    applier.clone(),
                    traffic.clone(),
                ));
                let stop = stopping.clone();
                Box::pin(switchyard_control::watcher::watch(
                    applier.clone(),
                    async move {
                        stop.stopped().await;
                    },
                ))
            }
            Some(store) => {
                let info = switchyard_control::store::fleet::NodeInfo {
                    addresses: serde_json::json!({
                        "control": bound,
                        "http": config.http.listeners.iter().map(|l| l.addr).collect::<Vec<_>>(),
                    }),
                    binary_version: switchyard::build_info::LONG_VERSION.to_string(),
                };
                let (a, s, f) = (applier.clone(), store.clone(), applier.clone());
                let hangup = {
                    let _enter = control_rt.enter();
                    switchyard_control::store::sync::hangup(applier.clone())
                };
                // Flips other nodes verify are shown here, and finished here if they die.
                let takeover = switchyard_control::ops::takeover(
                    ops.flips.clone(),
                    applier.clone(),
                    traffic.clone(),
                    store.clone(),
                );
                // So are rollouts, driven on here when their driver dies.
                let rollouts = switchyard_control::ops::rollout::takeover(
                    ops.rollouts.clone(),
                    applier.clone(),
                    traffic,
                    store.clone(),
                );
                Box::pin(async move {
                    tokio::spawn(hangup);
                    tokio::spawn(takeover);
                    tokio::spawn(rollouts);
                    tokio::spawn(switchyard_control::store::fleet::register(
                        a,
                        s,
                        info,
                        fleet_traffic,
                    ));
                    switchyard_control::store::sync::follow(f, store).await
                })
            }
        };
    let http = planes.http.clone();
    let http_drain = planes.http.clone();
    let open: Arc<dyn crate::drain::Open> = Arc::new(OpenConnections(planes.clone()));
    let stop = stopping.clone();
    // Installed now, before anything can send it: SIGUSR1's default action ends the process.
    let reopen = {
        let _enter = control_rt.enter();
        reopen_on_sigusr1(planes.http.clone())?
    };
    let control = std::thread::Builder::new()
        .name("switchyard-control".into())
        .spawn(move || {
            control_rt.block_on(async move {
                tokio::spawn(follower);
                tokio::spawn(switchyard_proxy::health::run(http));
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        metrics.run_upkeep();
                    }
                });
                tokio::spawn(reopen);
                tokio::spawn(crate::drain::signals(stop.clone()));
                tokio::spawn(crate::drain::exit_when_drained(stop.clone(), open));
                if let Some(l) = upgrade_listener {
                    tokio::spawn(crate::upgrade::handover::serve(l, handover, stop.clone()));
                }
                let s = stop.clone();
                tokio::spawn(async move {
                    s.stopped().await;
                    // pingora's accept loops stop on the same state (PingoraStop).
                    http_drain.drain();
                    if let Some(pg) = &postgres {
                        pg.stop_accepting();
                    }
                    // Kept: dropping the listeners' handle would end the sessions' runtime.
                    std::future::pending::<()>().await;
                });
                switchyard_control::api::serve(listener, state, async move {
                    stop.stopped().await;
                })
                .await;
                // The drain ends the process.
                std::future::pending::<()>().await
            })
        })
        .context("starting the control thread")?;
    let version = applier.current().snapshot.version;
    tracing::info!(
        version,
        control_api = %bound,
        http_listeners = config.http.listeners.len(),
        upgrade_socket = %upgrade_path.display(),
        config = %args.config.display(),
        "switchyard started"
    );
    Ok(Started {
        server,
        serving,
        control,
        version,
        stopping,
        adopter,
        cancels: planes.postgres.cancel.clone(),
    })
}

/// The SIGUSR1 handler (installed by this call): every signal reopens the access log files.
fn reopen_on_sigusr1(
    http: Arc<switchyard_proxy::HttpPlane>,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("installing the SIGUSR1 handler")?;
    Ok(async move {
        while usr1.recv().await.is_some() {
            let n = http.reopen_access_logs();
            tracing::info!(access_logs = n, "SIGUSR1: reopening the access logs");
        }
    })
}
