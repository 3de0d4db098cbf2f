//! TLS for the proxy listeners: several certificates per listener, chosen by SNI.
//!
//! Each serving TLS listener has one [`SniResolver`] for its lifetime. Every applied config
//! loads the listener's certificate files afresh into a [`CertSet`] (so a renewed certificate
//! is picked up by a reload) and swaps it into the resolver: new handshakes get the new
//! certificates, established connections are not touched. A certificate serves the DNS names
//! in its subject alternative names (wildcards match one label); a client without SNI, or with
//! a name no certificate has, gets the listener's first certificate.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use switchyard_config::TlsFiles;

/// The certificates of one listener, in config order.
#[derive(Debug)]
pub struct CertSet {
    entries: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl CertSet {
    /// Load every `{ cert, key }` pair; an error names the index of the pair at fault.
    pub fn load(files: &[TlsFiles]) -> Result<Self, (usize, String)> {
        let provider = rustls::crypto::ring::default_provider();
        let mut entries = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let cert_pem = std::fs::read(&f.cert)
                .map_err(|e| (i, format!("cannot read {}: {e}", f.cert.display())))?;
            let key_pem = std::fs::read(&f.key)
                .map_err(|e| (i, format!("cannot read {}: {e}", f.key.display())))?;
            let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    (
                        i,
                        format!("{}: not a PEM certificate: {e}", f.cert.display()),
                    )
                })?;
            let Some(leaf) = chain.first() else {
                return Err((i, format!("{}: no certificate found", f.cert.display())));
            };
            let names =
                dns_names(leaf.as_ref()).map_err(|e| (i, format!("{}: {e}", f.cert.display())))?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .map_err(|e| {
                    (
                        i,
                        format!("{}: not a PEM private key: {e}", f.key.display()),
                    )
                })?
                .ok_or_else(|| (i, format!("{}: no private key found", f.key.display())))?;
            let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                (
                    i,
                    format!("{} / {}: {e}", f.cert.display(), f.key.display()),
                )
            })?;
            entries.push((names, Arc::new(certified)));
        }
        Ok(CertSet { entries })
    }

    /// The certificate for `sni`, or the first one.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            for (names, key) in &self.entries {
                if names.iter().any(|n| name_matches(n, &name)) {
                    return Some(key.clone());
                }
            }
        }
        self.entries.first().map(|(_, k)| k.clone())
    }
}

/// DNS names (subject alternative names, else the common name) of a DER certificate.
fn dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("cannot parse certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::DNSName(n) = gn {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// `*.example.com` matches exactly one label: `a.example.com`, not `a.b.example.com`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

/// Picks a listener's certificate by SNI from the latest [`CertSet`].
#[derive(Debug)]
pub struct SniResolver {
    set: ArcSwap<CertSet>,
}

impl SniResolver {
    pub fn new(set: Arc<CertSet>) -> Self {
        SniResolver {
            set: ArcSwap::new(set),
        }
    }

    /// Serve `set` from the next handshake on.
    pub fn replace(&self, set: Arc<CertSet>) {
        self.set.store(set);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.set.load().pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches("api.example.com", "api.example.com"));
        assert!(name_matches("*.example.com", "api.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("api.example.com", "web.example.com"));
    }
}
