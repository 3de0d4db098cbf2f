//! Validation of the `[postgres]` section: clusters, nodes, users, pool, routing and failover.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::fields::Ctx;
use crate::error::KeyPath;
use crate::model::{
    ClientAuth, ClientTls, ClientTlsMode, Cluster, EtcdSettings, FailoverSettings, Node as PgNode,
    NodeRole, PgUser, PoolMode, PoolSettings, PostgresConfig, ReplicaFallback, RoutingSettings,
    Secret, ServerTlsMode, TlsFiles,
};
use crate::raw::{
    RawCluster, RawEtcd, RawFailover, RawNode, RawPgTls, RawPoolSettings, RawRouting, RawUser,
};
use crate::source::Node;

pub(super) fn validate(cx: &mut Ctx<'_, '_>, node: Option<Node<'_>>) -> Option<PostgresConfig> {
    let path = KeyPath::root().key("postgres");
    let Some(node) = node else {
        return Some(PostgresConfig::default());
    };
    let Some(entries) = node.entries() else {
        cx.err(&path, format!("expected a table, found {}", node.kind()));
        return None;
    };
    let mut clusters_node = None;
    for (key, _, child) in entries {
        match key {
            "clusters" => clusters_node = Some(child),
            other => cx.err(
                &path.key(other.to_string()),
                "unknown key: expected clusters",
            ),
        }
    }
    let Some(clusters_node) = clusters_node else {
        return Some(PostgresConfig::default());
    };
    let cp = path.key("clusters");
    let Some(elements) = clusters_node.elements() else {
        cx.err(
            &cp,
            format!(
                "expected an array of tables, found {}",
                clusters_node.kind()
            ),
        );
        return None;
    };
    let mut clusters = Some(Vec::new());
    let mut names = HashSet::new();
    for (i, el) in elements.into_iter().enumerate() {
        let p = cp.index(i);
        let cluster = cx
            .src
            .unit::<RawCluster>(el, &p, &mut cx.errors)
            .and_then(|raw| cluster(cx, raw, &p, &mut names));
        match (cluster, clusters.as_mut()) {
            (Some(c), Some(list)) => list.push(c),
            _ => clusters = None,
        }
    }
    Some(PostgresConfig {
        clusters: clusters?,
    })
}

fn cluster(
    cx: &mut Ctx<'_, '_>,
    raw: RawCluster,
    path: &KeyPath,
    names: &mut HashSet<String>,
) -> Option<Cluster> {
    let name = cx.name(raw.name, &path.key("name"));
    if let Some(n) = &name {
        if !names.insert(n.clone()) {
            cx.err(&path.key("name"), format!("duplicate cluster name {n:?}"));
        }
    }
    let listen = cx.listen_addr(raw.listen, &path.key("listen"), None);
    let pool_mode = cx.choice(
        raw.pool_mode,
        &path.key("pool_mode"),
        Some(PoolMode::Transaction),
        &[
            ("transaction", PoolMode::Transaction),
            ("session", PoolMode::Session),
        ],
    );
    let nodes = nodes(cx, raw.nodes.unwrap_or_default(), &path.key("nodes"));
    let users = users(cx, raw.users.unwrap_or_default(), &path.key("users"));
    let pool = pool(cx, raw.pool.unwrap_or_default(), &path.key("pool"));
    let routing = routing(cx, raw.routing.unwrap_or_default(), &path.key("routing"));
    let failover = failover(cx, raw.failover.unwrap_or_default(), &path.key("failover"));
    let tls = match raw.tls {
        Some(t) => client_tls(cx, t, &path.key("tls")).map(Some),
        None => Some(None),
    };
    let server_tls = cx.choice(
        raw.server_tls,
        &path.key("server_tls"),
        Some(ServerTlsMode::Prefer),
        &[
            ("disable", ServerTlsMode::Disable),
            ("prefer", ServerTlsMode::Prefer),
            ("require", ServerTlsMode::Require),
        ],
    );
    let server_tls_ca = match raw.server_tls_ca {
        Some(ca) => cx
            .required(Some(ca), &path.key("server_tls_ca"))
            .map(|ca| Some(PathBuf::from(ca))),
        None => Some(None),
    };
    if server_tls == Some(ServerTlsMode::Disable) && matches!(server_tls_ca, Some(Some(_))) {
        cx.err(
            &path.key("server_tls_ca"),
            "server_tls = \"disable\": a CA to verify servers with makes no sense",
        );
    }
    let max_client_conn = cx.int(
        raw.max_client_conn,
        &path.key("max_client_conn"),
        1000,
        1,
        1_000_000,
    );
    Some(Cluster {
        name: name?,
        listen: listen?,
        pool_mode: pool_mode?,
        nodes: nodes?,
        users: users?,
        pool: pool?,
        routing: routing?,
        failover: failover?,
        tls: tls?,
        server_tls: server_tls?,
        server_tls_ca: server_tls_ca?,
        max_client_conn: max_client_conn?,
    })
}

/// `tls = { cert, key, mode }`: certificate and key files (read when the config is applied)
/// and whether clients must use TLS (`optional` by default).
fn client_tls(cx: &mut Ctx<'_, '_>, raw: RawPgTls, path: &KeyPath) -> Option<ClientTls> {
    let cert = cx.required(raw.cert, &path.key("cert"));
    let key = cx.required(raw.key, &path.key("key"));
    let mode = cx.choice(
        raw.mode,
        &path.key("mode"),
        Some(ClientTlsMode::Optional),
        &[
            ("optional", ClientTlsMode::Optional),
            ("required", ClientTlsMode::Required),
        ],
    );
    Some(ClientTls {
        files: TlsFiles {
            cert: PathBuf::from(cert?),
            key: PathBuf::from(key?),
        },
        mode: mode?,
    })
}

fn nodes(cx: &mut Ctx<'_, '_>, raw: Vec<RawNode>, path: &KeyPath) -> Option<Vec<PgNode>> {
    if raw.is_empty() {
        cx.err(
            path,
            "a cluster needs nodes: one with role = \"primary\" and any number of replicas",
        );
        return None;
    }
    let mut out = Some(Vec::new());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, n) in raw.into_iter().enumerate() {
        let np = path.index(i);
        let addr = cx.address(n.addr, &np.key("addr"));
        if let Some(a) = &addr {
            if let Some(first) = seen.insert(a.to_string(), i) {
                cx.err(
                    &np.key("addr"),
                    format!("node {a} is already listed at index {first}"),
                );
            }
        }
        let role = cx.choice(
            n.role,
            &np.key("role"),
            None,
            &[
                ("primary", NodeRole::Primary),
                ("replica", NodeRole::Replica),
            ],
        );
        let priority = cx.int(n.priority, &np.key("priority"), 100, 0, 1_000_000);
        let fenced = n.fenced.filter(|r| !r.is_empty());
        match (addr, role, priority, out.as_mut()) {
            (Some(addr), Some(role), Some(priority), Some(list)) => list.push(PgNode {
                addr,
                role,
                priority,
                fenced,
            }),
            _ => out = None,
        }
    }
    let nodes = out?;
    let primaries: Vec<&PgNode> = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Primary)
        .collect();
    match primaries.as_slice() {
        [p] if p.fenced.is_some() => {
            cx.err(
                path,
                format!(
                    "the primary {} is fenced: make another node the primary",
                    p.addr
                ),
            );
            None
        }
        [_] => Some(nodes),
        [] => {
            cx.err(
                path,
                "a cluster needs exactly one node with role = \"primary\"; found none",
            );
            None
        }
        many => {
            let addrs: Vec<String> = many.iter().map(|n| n.addr.to_string()).collect();
            cx.err(
                path,
                format!(
                    "a cluster needs exactly one primary; found {}: {}",
                    many.len(),
                    addrs.join(", ")
                ),
            );
            None
        }
    }
}

fn users(cx: &mut Ctx<'_, '_>, raw: Vec<RawUser>, path: &KeyPath) -> Option<Vec<PgUser>> {
    let mut out = Some(Vec::new());
    let mut names = HashSet::new();
    for (i, u) in raw.into_iter().enumerate() {
        let up = path.index(i);
        let name = cx.required(u.name, &up.key("name"));
        if let Some(n) = &name {
            if !names.insert(n.clone()) {
                cx.err(&up.key("name"), format!("duplicate user {n:?}"));
            }
        }
        let client_auth = cx.choice(
            u.client_auth,
            &up.key("client_auth"),
            Some(ClientAuth::ScramSha256),
            &[
                ("scram-sha-256", ClientAuth::ScramSha256),
                ("md5", ClientAuth::Md5),
                ("trust", ClientAuth::Trust),
            ],
        );
        let password = match (u.password, u.password_env) {
            (Some(p), None) => Some(Some(Secret::Value(p))),
            (None, Some(e)) => cx
                .env_name(e, &up.key("password_env"))
                .map(|e| Some(Secret::Env(e))),
            (None, None) if client_auth == Some(ClientAuth::Trust) => Some(None),
            (None, None) => {
                cx.err(
                    &up,
                    "set password or password_env (or client_auth = \"trust\")",
                );
                None
            }
            (Some(_), Some(_)) => {
                cx.err(&up, "set only one of password and password_env");
                None
            }
        };
        match (name, client_auth, password, out.as_mut()) {
            (Some(name), Some(client_auth), Some(password), Some(list)) => list.push(PgUser {
                name,
                password,
                client_auth,
            }),
            _ => out = None,
        }
    }
    out
}

fn pool(cx: &mut Ctx<'_, '_>, raw: RawPoolSettings, path: &KeyPath) -> Option<PoolSettings> {
    let min_size = cx.int(raw.min_size, &path.key("min_size"), 0, 0, 10_000);
    let max_size = cx.int(raw.max_size, &path.key("max_size"), 20, 1, 10_000);
    if let (Some(min), Some(max)) = (min_size, max_size) {
        if min > max {
            let msg = format!("min_size {min} is larger than max_size {max}");
            cx.err(&path.key("min_size"), msg);
            return None;
        }
    }
    let idle_timeout = cx.duration(
        raw.idle_timeout,
        &path.key("idle_timeout"),
        Duration::from_secs(600),
        false,
    );
    let max_lifetime = cx.duration(
        raw.max_lifetime,
        &path.key("max_lifetime"),
        Duration::from_secs(3600),
        false,
    );
    let checkout_timeout = cx.duration(
        raw.checkout_timeout,
        &path.key("checkout_timeout"),
        Duration::from_secs(5),
        false,
    );
    Some(PoolSettings {
        min_size: min_size?,
        max_size: max_size?,
        idle_timeout: idle_timeout?,
        max_lifetime: max_lifetime?,
        checkout_timeout: checkout_timeout?,
    })
}

fn routing(cx: &mut Ctx<'_, '_>, raw: RawRouting, path: &KeyPath) -> Option<RoutingSettings> {
    let max_replica_lag_bytes = match raw.max_replica_lag_bytes {
        Some(b) => cx
            .int(Some(b), &path.key("max_replica_lag_bytes"), 0, 0, i64::MAX)
            .map(Some),
        None => Some(None),
    };
    let max_replica_lag = cx
        .opt_duration(raw.max_replica_lag, &path.key("max_replica_lag"))
        .ok();
    let fallback = cx.choice(
        raw.fallback,
        &path.key("fallback"),
        Some(ReplicaFallback::Primary),
        &[
            ("primary", ReplicaFallback::Primary),
            ("error", ReplicaFallback::Error),
        ],
    );
    Some(RoutingSettings {
        read_write_split: raw.read_write_split.unwrap_or(true),
        max_replica_lag_bytes: max_replica_lag_bytes?,
        max_replica_lag: max_replica_lag?,
        fallback: fallback?,
        read_your_writes: raw.read_your_writes.unwrap_or(false),
        read_only_functions: raw.read_only_functions.unwrap_or_default(),
        write_functions: raw.write_functions.unwrap_or_default(),
    })
}

fn failover(cx: &mut Ctx<'_, '_>, raw: RawFailover, path: &KeyPath) -> Option<FailoverSettings> {
    let check_interval = cx.duration(
        raw.check_interval,
        &path.key("check_interval"),
        Duration::from_millis(300),
        false,
    );
    let check_timeout = cx.duration(
        raw.check_timeout,
        &path.key("check_timeout"),
        Duration::from_millis(500),
        false,
    );
    let failure_threshold = cx.int(
        raw.failure_threshold,
        &path.key("failure_threshold"),
        3,
        1,
        100,
    );
    let write_pause_timeout = cx.duration(
        raw.write_pause_timeout,
        &path.key("write_pause_timeout"),
        Duration::from_secs(10),
        false,
    );
    let etcd = match raw.etcd {
        None => Some(None),
        Some(e) => etcd(cx, e, &path.key("etcd")).map(Some),
    };
    Some(FailoverSettings {
        etcd: etcd?,
        auto_promote: raw.auto_promote.unwrap_or(true),
        check_interval: check_interval?,
        check_timeout: check_timeout?,
        failure_threshold: failure_threshold?,
        write_pause_timeout: write_pause_timeout?,
    })
}

fn etcd(cx: &mut Ctx<'_, '_>, raw: RawEtcd, path: &KeyPath) -> Option<EtcdSettings> {
    let lease_ttl = cx.duration(
        raw.lease_ttl,
        &path.key("lease_ttl"),
        Duration::from_secs(10),
        false,
    );
    let endpoints = raw.endpoints.unwrap_or_default();
    let mut ok = true;
    if endpoints.is_empty() {
        cx.err(
            &path.key("endpoints"),
            "at least one etcd endpoint is needed (\"http://host:2379\")",
        );
        ok = false;
    }
    for (i, e) in endpoints.iter().enumerate() {
        let rest = e.strip_prefix("http://").unwrap_or("");
        if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
            cx.err(
                &path.key("endpoints").index(i),
                format!(
                    "{e:?} is not an http://host:port endpoint (TLS to etcd is not supported yet)"
                ),
            );
            ok = false;
        }
    }
    let prefix = raw.prefix.unwrap_or_else(|| "/switchyard".into());
    if !prefix.starts_with('/') {
        cx.err(
            &path.key("prefix"),
            format!("{prefix:?} must start with \"/\""),
        );
        ok = false;
    }
    let lease_ttl = lease_ttl?;
    if lease_ttl < Duration::from_secs(2) {
        cx.err(&path.key("lease_ttl"), "must be at least 2s");
        return None;
    }
    ok.then(|| EtcdSettings {
        endpoints: endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect(),
        prefix: prefix.trim_end_matches('/').to_string(),
        lease_ttl,
    })
}
