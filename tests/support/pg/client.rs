//! Clients of the fixture: tokio-postgres connections to a node or through the router, and
//! [`Router`], the `switchyard` binary as a Postgres router in front of a [`PgCluster`] (the
//! config it runs with: cluster `main` over every node of the fixture, node 0 the primary,
//! listening on `127.0.0.1:0`; and the port its listener got, read back from `/v1/status`).
//! Also raw wire helpers for sending what no real client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::anyhow;

use super::PgCluster;
use crate::support::{config, Switchyard};

/// A `switchyard` process routing cluster `main` to a [`PgCluster`], and the port its
/// Postgres listener got (the config says `127.0.0.1:0`; `/v1/status` tells the port).
pub struct Router {
    pub sy: Switchyard,
    pub port: u16,
}

impl Router {
    /// Start Switchyard with cluster `main` over every node of `pg` (node 0 the primary),
    /// `settings` (more lines of the cluster's table: `pool_mode = "session"`, `pool = {…}`)
    /// and `users`, TOML inline tables (`{ name = "app", password = "pw" }`).
    pub fn start(pg: &PgCluster, settings: &str, users: &[&str]) -> anyhow::Result<Router> {
        Self::start_nodes(&nodes_of(pg), settings, users)
    }

    /// [`Router::start`] with the cluster's `nodes` written out (TOML inline tables).
    pub fn start_nodes(nodes: &[String], settings: &str, users: &[&str]) -> anyhow::Result<Router> {
        let cluster = format!(
            "\n[[postgres.clusters]]\nname = \"main\"\nlisten = \"127.0.0.1:0\"\n\
             {settings}\nnodes = [{}]\nusers = [{}]\n",
            nodes.join(", "),
            users.join(", ")
        );
        let sy = Switchyard::start(|port| config::control_section(port, "10s", "50ms") + &cluster)?;
        let port = listener_port(&sy.status()?)?;
        Ok(Router { sy, port })
    }

    /// Settings for a connection through the router.
    pub fn config(&self, user: &str, password: &str) -> tokio_postgres::Config {
        client_config(self.port, user, password, "postgres")
    }

    /// The Postgres plane's status for cluster `main`.
    pub fn cluster_status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self.sy.status()?["planes"]["postgres"]["clusters"][0].clone())
    }
}

/// Every node of `pg` as a cluster's node (TOML inline tables), node 0 the primary.
pub fn nodes_of(pg: &PgCluster) -> Vec<String> {
    (0..pg.len())
        .map(|i| {
            let role = if i == 0 { "primary" } else { "replica" };
            format!(
                "{{ addr = \"127.0.0.1:{}\", role = \"{role}\" }}",
                pg.node(i).port
            )
        })
        .collect()
}

/// The port the first cluster's Postgres listener got, from `/v1/status`.
pub fn listener_port(status: &serde_json::Value) -> anyhow::Result<u16> {
    let bound = status["planes"]["postgres"]["clusters"][0]["bound"]
        .as_str()
        .ok_or_else(|| anyhow!("no bound Postgres listener in status: {status}"))?;
    bound
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("bad bound address {bound}"))
}

/// Settings for a TCP connection to `127.0.0.1:port`.
pub fn client_config(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10));
    c
}

/// Connect with `config`; the connection runs on a task of its own.
pub async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A primary (no replicas) with role `app` (password `app-pw`) that may create in `public`;
/// `None` when no PostgreSQL server binaries are installed.
pub fn primary_with_app() -> anyhow::Result<Option<PgCluster>> {
    let Some(pg) = PgCluster::start(0)? else {
        return Ok(None);
    };
    pg.psql(
        0,
        "create role app login password 'app-pw'; grant create on schema public to app;",
    )?;
    Ok(Some(pg))
}

/// A rustls client trusting `cert` only.
pub fn tls_connector(
    cert: &crate::support::tls::SelfSigned,
) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(cert.der.clone()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connect over TLS (`sslmode=require`, certificate verified for `127.0.0.1`).
pub async fn connect_tls(
    config: &tokio_postgres::Config,
    cert: &crate::support::tls::SelfSigned,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut config = config.clone();
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, connection) = config.connect(tls_connector(cert)?).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Send `bytes` on a fresh connection; the ErrorResponse's SQLSTATE, and whether the router
/// then closed the connection.
pub fn raw_error(port: u16, bytes: &[u8]) -> anyhow::Result<(String, bool)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(bytes)?;
    let mut got = Vec::new();
    // Read until the router closes (or the timeout says it did not).
    let closed = loop {
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    anyhow::ensure!(
        got.first() == Some(&b'E'),
        "expected an ErrorResponse, got {got:?}"
    );
    let code = got
        .split(|&b| b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .ok_or_else(|| anyhow!("no SQLSTATE in {got:?}"))?;
    Ok((code, closed))
}

/// A `StartupMessage` (or any packet with that request code) with `params`.
pub fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}
