//! Reference reverse proxies for `benches/http_compare.sh` (issue 12), kept out of the
//! `switchyard` binary: each is the least a design needs to forward HTTP/1.1 to one backend,
//! so a benchmark run shows what the design itself costs next to Switchyard with every
//! feature on, nginx and HAProxy.
//!
//! - `ref-pingora`: pingora-proxy with no features, a `ProxyHttp` with only `upstream_peer`.
//! - `ref-hyper`: hyper's HTTP/1 codec, one current-thread runtime per thread, each with its
//!   own `SO_REUSEPORT` listener and its own pooled hyper client.
//! - `ref-h1loop`: the spike of issue 12, a request loop written directly on pingora-core's
//!   HTTP/1 server and client sessions with pingora's connector and pool: one task per
//!   connection, each request driven by that task alone, no channels.
//!
//! All take the same arguments (see [`Args::parse`]). With no arguments they print their usage
//! and exit 0, so a build of all targets can run them harmlessly.

use std::net::SocketAddr;

/// The command line shared by the reference proxies.
#[derive(Debug, Clone)]
pub struct Args {
    /// Where to listen (`ip:port`).
    pub listen: SocketAddr,
    /// The one backend (`ip:port`).
    pub upstream: SocketAddr,
    /// Worker threads (each a single-threaded runtime).
    pub threads: usize,
    /// Terminate TLS with this certificate chain and key (PEM files).
    pub tls: Option<(String, String)>,
    /// pingora's read buffer under each client connection (`L4BufferSettings::read`); `None`
    /// keeps pingora's default (64 KiB). Ignored by `ref-hyper`.
    pub read_buffer: Option<usize>,
}

const USAGE: &str = "usage: ref-* --listen IP:PORT --upstream IP:PORT [--threads N] \
                     [--cert PEM --key PEM] [--read-buffer BYTES]";

impl Args {
    /// Parses the process arguments; `None` (after printing the usage) when there are none.
    /// A malformed command line exits with status 2.
    pub fn parse() -> Option<Args> {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        if argv.is_empty() {
            println!("{USAGE}");
            return None;
        }
        match Self::from_argv(&argv) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }

    fn from_argv(argv: &[String]) -> Result<Args, String> {
        let (mut listen, mut upstream, mut cert, mut key) = (None, None, None, None);
        let (mut threads, mut read_buffer) = (2usize, None);
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag}: missing value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            match flag.as_str() {
                "--listen" => listen = Some(value.parse().map_err(|e| bad(&e))?),
                "--upstream" => upstream = Some(value.parse().map_err(|e| bad(&e))?),
                "--threads" => threads = value.parse().map_err(|e| bad(&e))?,
                "--read-buffer" => read_buffer = Some(value.parse().map_err(|e| bad(&e))?),
                "--cert" => cert = Some(value.clone()),
                "--key" => key = Some(value.clone()),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("--cert and --key go together".into()),
        };
        Ok(Args {
            listen: listen.ok_or("--listen is required")?,
            upstream: upstream.ok_or("--upstream is required")?,
            threads: threads.max(1),
            tls,
            read_buffer,
        })
    }

    /// pingora's process settings for a reference: the same as Switchyard's
    /// (`proxy/src/server.rs`): one single-threaded runtime per thread, and a stop that does
    /// not sit out a grace period.
    pub fn server_conf(&self) -> pingora::server::configuration::ServerConf {
        pingora::server::configuration::ServerConf {
            threads: self.threads,
            work_stealing: false,
            grace_period_seconds: Some(1),
            graceful_shutdown_timeout_seconds: Some(1),
            ..Default::default()
        }
    }

    /// A pingora listener for [`Args::listen`], with TLS and the read buffer as asked.
    pub fn pingora_listener(&self) -> pingora::listeners::ListenerConfig {
        use pingora::listeners::{tls::TlsSettings, L4BufferSettings, ListenerConfig};
        let mut l = ListenerConfig::tcp(self.listen.to_string());
        if let Some((cert, key)) = &self.tls {
            match TlsSettings::intermediate(cert, key) {
                Ok(t) => l = l.tls(t),
                Err(e) => {
                    eprintln!("tls {cert} {key}: {e}");
                    std::process::exit(1)
                }
            }
        }
        if let Some(read) = self.read_buffer {
            l = l.l4_buffer(L4BufferSettings {
                read: Some(read),
                write: None,
            });
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_shared_command_line() {
        let a = Args::from_argv(&argv(
            "--listen 127.0.0.1:1 --upstream 127.0.0.1:2 --threads 3 --read-buffer 0",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.listen.port(), 1);
        assert_eq!(a.upstream.port(), 2);
        assert_eq!((a.threads, a.read_buffer, a.tls), (3, Some(0), None));
    }

    #[test]
    fn refuses_half_a_tls_pair_and_unknown_flags() {
        let base = "--listen 127.0.0.1:1 --upstream 127.0.0.1:2";
        assert!(Args::from_argv(&argv(&format!("{base} --cert c.pem"))).is_err());
        assert!(Args::from_argv(&argv(&format!("{base} --nope 1"))).is_err());
        assert!(Args::from_argv(&argv("--listen 127.0.0.1:1")).is_err());
    }
}
