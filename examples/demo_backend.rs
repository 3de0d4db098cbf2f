//! A tiny HTTP backend for the demo and the benchmarks: every request is answered with a
//! one-line JSON body that names this backend and echoes what it was asked, so you can see
//! which pool and replica Switchyard picked and what it forwarded.
//!
//! ```text
//! demo_backend --name blue-1 --port 9001 [--status 200] [--delay-ms 0] [--host 127.0.0.1]
//! ```
//!
//! - Every answer carries `x-backend: NAME`.
//! - `GET /health` is always `200 {"status":"ok","backend":"NAME"}`, whatever `--status` says,
//!   so a backend started with `--status 500` stays "healthy" for active checks while failing
//!   real requests: exactly the case a flip's verification window is there to catch.
//! - Any other request waits `--delay-ms`, then answers `--status` with
//!   `{"backend","method","path","x_forwarded_for"}`.
//! - `--port 0` binds a free port; the bound address is printed on stdout as
//!   `listening on 127.0.0.1:PORT` once the socket is ready to accept.
//!
//! Run it with `cargo run --release --example demo_backend -- --name blue-1 --port 9001`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "A demo HTTP backend that names itself in every answer")]
struct Args {
    /// Name put in the body and in the `x-backend` header, e.g. `blue-1`.
    #[arg(long)]
    name: String,
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Status for every request but `/health`.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Delay before answering every request but `/health`, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

/// What every connection shares: the answer's fixed parts, built once.
struct Backend {
    name: String,
    header: HeaderValue,
    status: StatusCode,
    delay: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let status = StatusCode::from_u16(args.status)
        .with_context(|| format!("--status {} is not an HTTP status", args.status))?;
    let header = HeaderValue::from_str(&args.name)
        .with_context(|| format!("--name {:?} cannot be sent as a header value", args.name))?;
    let backend = Arc::new(Backend {
        name: args.name,
        header,
        status,
        delay: Duration::from_millis(args.delay_ms),
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(SocketAddr::new(args.host, args.port), backend))
}

/// Accept connections until the process is stopped; each is served HTTP/1.1 with keep-alive.
async fn serve(addr: SocketAddr, backend: Arc<Backend>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a little rather than spin or exit.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(backend.clone(), req));
            // A client going away mid-request is not worth reporting in a demo.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    backend: Arc<Backend>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = if req.uri().path() == "/health" {
        let body = serde_json::json!({ "status": "ok", "backend": backend.name });
        (StatusCode::OK, body)
    } else {
        if !backend.delay.is_zero() {
            tokio::time::sleep(backend.delay).await;
        }
        let xff = req
            .headers()
            .get("x-forwarded-for")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = serde_json::json!({
            "backend": backend.name,
            "method": req.method().as_str(),
            "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
            "x_forwarded_for": xff,
        });
        (backend.status, body)
    };
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-backend", backend.header.clone());
    Ok(resp)
}
