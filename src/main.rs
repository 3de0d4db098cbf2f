//! The `switchyard` command line: parse arguments and wire the crates together.

#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

/// Switchyard: an HTTP ingress (least-connections, health checks, retries, blue/green flips)
/// and a Postgres router (pooling, read/write split, failover), driven by one TOML config
/// that reloads live and an authenticated control API.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Switchyard with a config file; edits to the file are applied live.
    ///
    /// The control API listens on `control.listen` (default 127.0.0.1:9901). SIGHUP forces a
    /// reload; SIGTERM and Ctrl-C stop.
    Run {
        /// The TOML config file.
        #[arg(short, long, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SWITCHYARD_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate a config file: print a one-line summary and exit 0, or print every error
    /// (key path and line) and exit 1.
    Check {
        /// The TOML config file.
        #[arg(short, long, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Print the SHA-256 to put in `[[control.tokens]] sha256 = "…"`.
    ///
    /// Reads the token from standard input, or with --generate makes a new random token and
    /// prints the token and its hash.
    HashToken {
        /// Generate a new random token.
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, log_format } => run(config, log_format),
        Command::Check { config } => return check(&config),
        Command::HashToken { generate } => hash_token(generate),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(path: &PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match switchyard_config::parse(&text) {
        Ok(config) => {
            println!("{}: ok: {}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {errors}", path.display());
            ExitCode::from(1)
        }
    }
}

fn hash_token(generate: bool) -> anyhow::Result<()> {
    let token = if generate {
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("reading /dev/urandom")?;
        let token = hex::encode(bytes);
        println!("token:  {token}");
        token
    } else {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    };
    anyhow::ensure!(!token.is_empty(), "empty token");
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    if generate {
        println!("sha256: {hash}");
    } else {
        println!("{hash}");
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config_path: PathBuf, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("switchyard-control")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config_path))
}

async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let metrics = switchyard_control::metrics::install()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    let applier = switchyard_control::Applier::start(&config_path, switchyard::planes())?;
    let listen = applier.current().snapshot.config.control.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the control API to {listen} (control.listen)"))?;
    let bound = listener.local_addr().context("control API address")?;
    tracing::info!(
        version = 1,
        control_api = %bound,
        config = %config_path.display(),
        "switchyard started"
    );
    let state = Arc::new(switchyard_control::api::ApiState {
        applier: applier.clone(),
        metrics: Some(metrics.clone()),
        bound,
        started: Instant::now(),
        traffic: None,
    });
    tokio::spawn(switchyard_control::watcher::watch(
        applier.clone(),
        std::future::pending(),
    ));
    tokio::spawn(async move {
        // Histogram upkeep for the exporter.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            metrics.run_upkeep();
        }
    });
    switchyard_control::api::serve(listener, state, shutdown_signal()).await;
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
