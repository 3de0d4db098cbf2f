//! TLS on both sides of the router, with rustls (ring).
//!
//! - **Clients**: a cluster with `tls = { cert, key, mode }` answers `SSLRequest` with `S`
//!   and a handshake ([`PgStream::accept_tls`]); `mode = "required"` refuses a client that
//!   sends its `StartupMessage` in the clear (28000). Without `tls`, `SSLRequest` is answered
//!   `N` as before. The certificate files are read when a config is applied
//!   ([`for_cluster`], called by the runtime build), so a reload picks up renewed files; a
//!   session keeps the certificate it was accepted with.
//! - **Servers**: `server_tls` is libpq's `sslmode` for the router's own logins:
//!   `disable`, `prefer` (TLS when the server offers it) or `require`. With
//!   `server_tls_ca`, the server's certificate must chain to those CAs and name the node's
//!   host (libpq's `verify-full`); without it the link is encrypted but the server is not
//!   authenticated (libpq's `require`): SCRAM still proves the server knows the password,
//!   and a cleartext password is sent only over a *verified* TLS link.
//!
//! Which server TLS applies is carried by the client session's task ([`scope`] around a
//! session, [`current`] in the login), so that the checkout path between them does not
//! need to know about TLS.
//!
//! Not done: `SCRAM-SHA-256-PLUS` (channel binding) on either side; client certificates.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use switchyard_config::{ClientTlsMode, Cluster, ServerTlsMode};

use crate::net::stream::PgStream;

/// ALPN protocol name PostgreSQL 17 uses (older clients send none).
const ALPN: &[u8] = b"postgresql";

/// A TLS setting of the config that cannot be used: the key path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsConfigError {
    pub path: String,
    pub message: String,
}

/// TLS offered to a cluster's clients.
#[derive(Debug)]
pub struct ClientTls {
    pub config: Arc<rustls::ServerConfig>,
    pub mode: ClientTlsMode,
}

impl ClientTls {
    pub fn required(&self) -> bool {
        self.mode == ClientTlsMode::Required
    }
}

/// A tokio-postgres connection's driving future, whatever its TLS.
pub type PgConnection =
    std::pin::Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static>>;

/// TLS to a cluster's servers.
#[derive(Debug)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    /// `None` with `disable`.
    config: Option<Arc<rustls::ClientConfig>>,
    /// Server certificates are checked against `server_tls_ca`.
    pub verified: bool,
}

impl ServerTls {
    /// No TLS to servers.
    pub fn disabled() -> Self {
        ServerTls {
            mode: ServerTlsMode::Disable,
            config: None,
            verified: false,
        }
    }

    /// Open a tokio-postgres connection with this TLS setting (the node monitor's and the
    /// failover's own connections): `prefer` or `require` as libpq's `sslmode`, verified
    /// against `server_tls_ca` when it is set. The caller spawns the connection future.
    pub async fn connect_postgres(
        &self,
        config: &mut tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, PgConnection), tokio_postgres::Error> {
        use tokio_postgres::config::SslMode;
        let Some(tls) = &self.config else {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            return Ok((client, Box::pin(connection)));
        };
        config.ssl_mode(match self.mode {
            ServerTlsMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        });
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
        let (client, connection) = config.connect(connector).await?;
        Ok((client, Box::pin(connection)))
    }

    /// A client connection for `host`, or `None` with `disable`.
    pub fn connection(&self, host: &str) -> io::Result<Option<rustls::Connection>> {
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(config.clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Some(conn.into()))
    }
}

tokio::task_local! {
    static SERVER_TLS: Arc<ServerTls>;
}

/// Run `session` with `tls` as the server TLS of its logins. (Not an `async fn`: that would
/// hold `session` twice, as its argument and inside the scope, for the session's life.)
pub fn scope<F: Future>(tls: Arc<ServerTls>, session: F) -> impl Future<Output = F::Output> {
    SERVER_TLS.scope(tls, session)
}

/// The server TLS of the session running this task (none outside a session).
pub fn current() -> Arc<ServerTls> {
    SERVER_TLS
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::new(ServerTls::disabled()))
}

impl PgStream {
    /// Answer-side handshake, after `S` was sent to the client's `SSLRequest`.
    pub async fn accept_tls(&mut self, tls: &ClientTls) -> io::Result<()> {
        let conn = rustls::ServerConnection::new(tls.config.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.start_tls(conn.into()).await
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS of cluster number `index` of the config: files read and checked now.
pub fn for_cluster(
    c: &Cluster,
    index: usize,
) -> Result<(Option<Arc<ClientTls>>, Arc<ServerTls>), TlsConfigError> {
    let client = match &c.tls {
        None => None,
        Some(t) => {
            let path = format!("postgres.clusters[{index}].tls");
            let invalid = |message: String| TlsConfigError {
                path: path.clone(),
                message,
            };
            let chain = read_certs(&t.files.cert).map_err(invalid)?;
            let key = read_key(&t.files.key).map_err(invalid)?;
            let mut config = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| {
                    invalid(format!(
                        "{} / {}: {e}",
                        t.files.cert.display(),
                        t.files.key.display()
                    ))
                })?;
            config.alpn_protocols = vec![ALPN.to_vec()];
            Some(Arc::new(ClientTls {
                config: Arc::new(config),
                mode: t.mode,
            }))
        }
    };
    let server = match c.server_tls {
        ServerTlsMode::Disable => ServerTls::disabled(),
        mode => {
            let invalid = |message: String| TlsConfigError {
                path: format!("postgres.clusters[{index}].server_tls_ca"),
                message,
            };
            let builder = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(e.to_string()))?;
            let (builder, verified) = match &c.server_tls_ca {
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for cert in read_certs(ca).map_err(invalid)? {
                        roots
                            .add(cert)
                            .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
                    }
                    (builder.with_root_certificates(roots), true)
                }
                None => (
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(Unverified(provider()))),
                    false,
                ),
            };
            let mut config = builder.with_no_client_auth();
            config.alpn_protocols = vec![ALPN.to_vec()];
            ServerTls {
                mode,
                config: Some(Arc::new(config)),
                verified,
            }
        }
    };
    Ok((client, Arc::new(server)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: not a PEM private key: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

/// `server_tls` without a CA: any certificate is taken (libpq's `sslmode=require`), but the
/// handshake's signatures are still checked against it.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
