//! `ref-hyper`: a minimal reverse proxy on hyper's HTTP/1 codec. One thread per core, each a
//! current-thread tokio runtime with its own `SO_REUSEPORT` listener (the kernel spreads the
//! connections) and its own pooled hyper client, so a request never leaves its thread. No
//! features: the request goes to the one backend as it came, the response comes back as is.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use switchyard_bench_refs::Args;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_rustls::TlsAcceptor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Incoming>;
type Body = Either<Incoming, Empty<Bytes>>;

fn main() {
    let Some(args) = Args::parse() else { return };
    let tls = args.tls.as_ref().map(|(c, k)| match acceptor(c, k) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tls {c} {k}: {e}");
            std::process::exit(1)
        }
    });
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let (args, tls) = (args.clone(), tls.clone());
            std::thread::spawn(move || worker(args, tls))
        })
        .collect();
    for w in workers {
        if let Ok(Err(e)) = w.join() {
            eprintln!("ref-hyper: {e}");
            std::process::exit(1)
        }
    }
}

fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, Box<dyn std::error::Error>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or("no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One thread: its runtime, its listener, its client pool.
fn worker(args: Args, tls: Option<TlsAcceptor>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let socket = if args.listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(args.listen)?;
        let listener = socket.listen(4096)?;
        let client: Upstream = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(usize::MAX)
            .build_http();
        let authority: Authority = args
            .upstream
            .to_string()
            .parse()
            .map_err(std::io::Error::other)?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            let (client, authority, tls) = (client.clone(), authority.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve(stream, client, authority).await,
                    Some(tls) => {
                        if let Ok(s) = tls.accept(stream).await {
                            serve(s, client, authority).await
                        }
                    }
                }
            });
        }
    })
}

async fn serve<IO>(io: IO, client: Upstream, authority: Authority)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| forward(req, client.clone(), authority.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

async fn forward(
    mut req: Request<Incoming>,
    client: Upstream,
    authority: Authority,
) -> Result<Response<Body>, Infallible> {
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    }
    Ok(match client.request(req).await {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    })
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Either::Right(Empty::new()));
    *r.status_mut() = code;
    r
}
