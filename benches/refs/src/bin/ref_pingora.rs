//! `ref-pingora`: pingora-proxy with no features, the floor of any proxy built on its
//! `ProxyHttp`: one backend, and a `ProxyHttp` whose only hook is `upstream_peer`. Same
//! process settings as Switchyard (one single-threaded runtime per thread).

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{http_proxy, ProxyHttp, Session};
use pingora::server::Server;
use pingora::services::listening::Service;
use switchyard_bench_refs::Args;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct OneBackend(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for OneBackend {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let Some(args) = Args::parse() else { return };
    let mut server = Server::new_with_opt_and_conf(None, args.server_conf());
    server.bootstrap();
    let proxy = http_proxy(&server.configuration, OneBackend(args.upstream));
    let mut service = Service::new("ref-pingora".into(), proxy);
    service.add_listener(args.pingora_listener());
    server.add_service(service);
    server.run_forever()
}
