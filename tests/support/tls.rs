//! TLS for the proxy tests: self-signed certificates made at test time ([`SelfSigned`]), and a
//! client that connects with a chosen SNI and ALPN, tells which certificate the server
//! presented, and speaks HTTP/1.1 or HTTP/2 over the connection.
//!
//! The client accepts any certificate (the tests compare the presented one with the one they
//! expect, byte for byte) but still checks the handshake signatures, so the server proved it
//! holds that certificate's key.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::backend::runtime;
use super::http::Response;

/// A self-signed certificate for some DNS names, and its key.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl SelfSigned {
    pub fn new(names: &[&str]) -> anyhow::Result<Self> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
        Ok(SelfSigned {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
            der: ck.cert.der().to_vec(),
        })
    }

    /// Write `<stem>.crt` and `<stem>.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        std::fs::write(dir.join(format!("{stem}.crt")), &self.cert_pem)?;
        std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem)?;
        Ok(())
    }
}

/// Accepts any certificate; checks the handshake signatures against it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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

/// An established TLS connection.
pub struct Tls {
    stream: TlsStream<TcpStream>,
}

impl Tls {
    /// Connect to `addr` with SNI `sni`, offering the `alpn` protocols.
    pub fn connect(addr: SocketAddr, sni: &str, alpn: &[&str]) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let name = ServerName::try_from(sni.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = runtime().block_on(async {
            let tcp = TcpStream::connect(addr).await?;
            connector.connect(name, tcp).await
        });
        let stream = stream.with_context(|| format!("TLS handshake with {addr} for {sni}"))?;
        Ok(Tls { stream })
    }

    /// The certificate the server presented (DER).
    pub fn peer_cert(&self) -> anyhow::Result<Vec<u8>> {
        let (_, conn) = self.stream.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| anyhow!("no certificate presented"))
    }

    /// The protocol ALPN settled on.
    pub fn alpn(&self) -> Option<String> {
        let (_, conn) = self.stream.get_ref();
        conn.alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// Send one HTTP/1.1 `GET path` with `Host: host` and read the answer to the end.
    pub fn h1_get(mut self, host: &str, path: &str) -> anyhow::Result<Response> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let raw = runtime().block_on(async {
            self.stream.write_all(req.as_bytes()).await?;
            let mut raw = Vec::new();
            // A peer that closes without close_notify still gave us its answer.
            let _ = self.stream.read_to_end(&mut raw).await;
            anyhow::Ok(raw)
        })?;
        super::http::parse(&raw)
    }

    /// Open an HTTP/2 connection on this TLS connection (ALPN must have chosen `h2`).
    pub fn h2(self) -> anyhow::Result<H2> {
        let sender = runtime().block_on(async {
            let (sender, conn) = hyper::client::conn::http2::handshake(
                TokioExecutor::new(),
                TokioIo::new(self.stream),
            )
            .await?;
            tokio::spawn(conn);
            anyhow::Ok(sender)
        })?;
        Ok(H2 { sender })
    }
}

/// An HTTP/2 client connection; requests can be sent on it one after another.
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
}

impl H2 {
    /// `GET https://<authority><path>`: status, headers and body.
    pub fn get(
        &mut self,
        authority: &str,
        path: &str,
    ) -> anyhow::Result<(u16, http::HeaderMap, Bytes)> {
        let req = http::Request::get(format!("https://{authority}{path}")).body(Empty::new())?;
        runtime().block_on(async {
            let resp = self.sender.send_request(req).await?;
            anyhow::ensure!(
                resp.version() == http::Version::HTTP_2,
                "{:?}",
                resp.version()
            );
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok((status, headers, body))
        })
    }
}
