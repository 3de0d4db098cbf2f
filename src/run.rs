//! `switchyard run`: load the config, start the control plane on its own runtime, and serve
//! the HTTP listeners on pingora's.
//!
//! pingora's `Server` owns the main thread and its own runtimes (and handles SIGTERM as a
//! graceful shutdown, SIGINT as a fast one); the control API, the file watcher and the active
//! health checks run on a separate tokio runtime beside it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::Planes;
use switchyard_control::api::ApiState;
use switchyard_control::Applier;

pub fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let metrics = switchyard_control::metrics::install()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    switchyard::build_info::publish();
    let planes = Planes::new();
    let control_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("switchyard-control")
        .build()
        .context("starting the control runtime")?;
    // With a shared store (etcd) this reads, or seeds, the shared document.
    let applier = control_rt.block_on(Applier::open(&config_path, planes.list()))?;
    // Failovers record their role changes through the single writer.
    planes
        .postgres
        .failover
        .set_sink(Arc::new(switchyard::pgops::ConfigWriter(applier.clone())));
    let config = applier.current().snapshot.config.clone();
    let listen = config.control.listen;
    let listener = control_rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("binding the control API to {listen} (control.listen)"))?;
    let bound = listener.local_addr().context("control API address")?;
    // Build the proxy (binding nothing yet) before the control plane starts serving, so a
    // listener error stops start-up cleanly.
    let server = if config.http.listeners.is_empty() {
        None
    } else {
        let server = switchyard_proxy::server::build_server(planes.http.clone(), &config)
            .map_err(|e| anyhow::anyhow!("starting the HTTP listeners: {e}"))?;
        planes.http.mark_serving(&config.http.listeners);
        Some(server)
    };
    // Bind the Postgres listeners (one per cluster) and serve them on the router's own runtime.
    let _postgres = switchyard_dbrouter::start(planes.postgres.clone(), &config)
        .map_err(|e| anyhow::anyhow!("starting the Postgres listeners: {e}"))?;
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
                Box::pin(switchyard_control::watcher::watch(
                    applier.clone(),
                    std::future::pending(),
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
                    traffic,
                    store.clone(),
                );
                Box::pin(async move {
                    tokio::spawn(hangup);
                    tokio::spawn(takeover);
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
    // Readiness waits for the HTTP listeners pingora binds in `server.run` below.
    let ready = crate::readiness::notify_when_serving(
        config.http.listeners.iter().map(|l| l.addr).collect(),
        applier.current().snapshot.version,
    );
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
                tokio::spawn(ready);
                switchyard_control::api::serve(listener, state, shutdown_signal()).await;
                crate::readiness::notify_stopping();
            })
        })
        .context("starting the control thread")?;
    tracing::info!(
        version = applier.current().snapshot.version,
        control_api = %bound,
        http_listeners = config.http.listeners.len(),
        config = %config_path.display(),
        "switchyard started"
    );
    match server {
        Some(server) => {
            // Returns after a graceful (SIGTERM) or fast (SIGINT) shutdown.
            server.run(pingora::server::RunArgs::default());
        }
        None => {
            let _ = control.join();
        }
    }
    tracing::info!("switchyard stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
