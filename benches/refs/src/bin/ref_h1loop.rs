//! `ref-h1loop`: the spike of issue 12. A request loop written directly on pingora-core's
//! HTTP/1 sessions: pingora's listener (and TLS) hands each connection to one task, which reads
//! a request head with `protocols::http::v1::server::HttpSession`, takes an upstream
//! `protocols::http::v1::client::HttpSession` from pingora's connector and pool, writes the
//! head, forwards the body, reads the response head, streams the body back, and gives the
//! upstream connection back to the pool. The same task then reads the next request on the
//! connection (`reuse`). No second future, no channels, no hooks, no timers of its own.
//!
//! Deliberately left out (a real path needs them, and they cost little next to the loop
//! itself): a retry of a stale pooled connection, full duplex bodies (the request body is
//! forwarded before the response is read), 1xx and upgrades, HTTP/2 (pingora's H2 session
//! would take ALPN `h2` connections), header rewriting.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::server::HttpSession as Downstream;
use pingora::protocols::Stream;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::listening::Service;
use switchyard_bench_refs::Args;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct H1Loop {
    connector: Connector,
    peer: HttpPeer,
}

#[async_trait]
impl ServerApp for H1Loop {
    /// One request; `Some(stream)` hands the connection back to pingora's loop, which calls
    /// this again in the same task for the next request.
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Issue 14: an idle connection holds only its stream. Wait for the request's first
        // byte (peeked, it stays in the socket) before making a session and its head buffer,
        // as Switchyard's edge does (`proxy/src/edge.rs`). Under TLS `try_peek` says it
        // cannot, and the session's read waits instead.
        let mut byte = [0u8; 1];
        if stream.try_peek(&mut byte).await.is_err() {
            return None;
        }
        let mut down = Downstream::new(stream);
        match down.read_request().await {
            Ok(Some(_)) => {}
            _ => return None,
        }
        if self.forward(&mut down).await.is_err() {
            if down.response_written().is_none() {
                if let Ok(mut resp) = ResponseHeader::build(502, Some(1)) {
                    let _ = resp.insert_header("content-length", "0");
                    let _ = down.write_response_header(Box::new(resp)).await;
                    let _ = down.finish_body().await;
                }
            }
            down.shutdown().await;
            return None;
        }
        match down.reuse().await {
            Ok(Some(reusable)) => Some(reusable.into_parts().0),
            _ => None,
        }
    }
}

impl H1Loop {
    async fn forward(&self, down: &mut Downstream) -> pingora::Result<()> {
        let (mut up, _reused) = self.connector.get_http_session(&self.peer).await?;
        up.write_request_header(Box::new(down.req_header().clone()))
            .await?;
        while let Some(chunk) = down.read_body_bytes().await? {
            up.write_body(&chunk).await?;
        }
        up.finish_body().await?;
        let resp = up.read_resp_header_parts().await?;
        down.write_response_header(resp).await?;
        while let Some(chunk) = up.read_body_bytes().await? {
            down.write_body(&chunk).await?;
        }
        down.finish_body().await?;
        self.connector
            .release_http_session(up, &self.peer, None)
            .await;
        Ok(())
    }
}

fn main() {
    let Some(args) = Args::parse() else { return };
    let mut server = Server::new_with_opt_and_conf(None, args.server_conf());
    server.bootstrap();
    let app = H1Loop {
        connector: Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        ))),
        peer: HttpPeer::new(args.upstream, false, String::new()),
    };
    let mut service = Service::new("ref-h1loop".into(), app);
    service.add_listener(args.pingora_listener());
    server.add_service(service);
    server.run_forever()
}
