//! The control plane's own runtime, rebuilt with every applied config: resolved tokens, the
//! audit log, and the API's TLS settings. Built before anything is swapped, like the data
//! planes' runtimes, so a missing token variable or an unreadable certificate rejects the
//! config instead of half-applying it.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_config::{Config, ConfigError, ConfigErrors, TlsFiles};

use crate::audit::AuditLog;
use crate::auth::TokenSet;

/// What the control API needs from the applied config.
pub struct ControlRuntime {
    pub tokens: TokenSet,
    pub audit: Arc<AuditLog>,
    /// TLS for the control API, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The address in the applied config (the API listens where it started; a change is
    /// reported as needing a restart).
    pub listen: SocketAddr,
}

impl ControlRuntime {
    /// Build from `config`, reusing the open audit log of `previous` when its path is unchanged.
    pub fn build(config: &Config, previous: Option<&ControlRuntime>) -> Result<Self, ConfigErrors> {
        let control = &config.control;
        let mut errors = Vec::new();
        let tokens =
            TokenSet::from_config(control).map_err(|m| errors.push(error("control.tokens", m)));
        let audit = match previous {
            Some(p) if p.audit.path() == control.audit_log => Ok(p.audit.clone()),
            _ => AuditLog::open(&control.audit_log)
                .map(Arc::new)
                .map_err(|e| {
                    errors.push(error(
                        "control.audit_log",
                        format!("cannot open {}: {e}", control.audit_log.display()),
                    ))
                }),
        };
        let tls = match &control.tls {
            Some(files) => load_server_config(files, &[b"http/1.1".to_vec()])
                .map(Some)
                .map_err(|m| errors.push(error("control.tls", m))),
            None => Ok(None),
        };
        match (tokens, audit, tls) {
            (Ok(tokens), Ok(audit), Ok(tls)) => Ok(ControlRuntime {
                tokens,
                audit,
                tls,
                listen: control.listen,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

fn error(path: &str, message: String) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        line: None,
        message,
    }
}

/// A rustls server config from a PEM certificate chain and key.
pub fn load_server_config(
    files: &TlsFiles,
    alpn: &[Vec<u8>],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let cert_pem = std::fs::read(&files.cert)
        .map_err(|e| format!("cannot read {}: {e}", files.cert.display()))?;
    let key_pem = std::fs::read(&files.key)
        .map_err(|e| format!("cannot read {}: {e}", files.key.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", files.cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: not a PEM private key: {e}", files.key.display()))?
        .ok_or_else(|| format!("{}: no private key found", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} / {}: {e}", files.cert.display(), files.key.display()))?;
    cfg.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(cfg))
}
