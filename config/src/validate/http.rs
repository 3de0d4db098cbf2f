//! Validation of the `[http]` section: listeners, routes and upstreams with blue/green pools.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::fields::{tls_files, Ctx, MAX_BACKENDS};
use crate::error::KeyPath;
use crate::model::{
    ActiveHealthCheck, Backend, BackendState, Balance, HostMatch, Http1Engine, HttpConfig,
    Listener, Pool, Route, Upstream,
};
use crate::raw::{RawHealthCheck, RawListener, RawRoute, RawUpstream};
use crate::source::Node;

pub(super) fn validate(cx: &mut Ctx<'_, '_>, node: Option<Node<'_>>) -> Option<HttpConfig> {
    let path = KeyPath::root().key("http");
    let Some(node) = node else {
        return Some(HttpConfig::default());
    };
    let Some(entries) = node.entries() else {
        cx.err(&path, format!("expected a table, found {}", node.kind()));
        return None;
    };
    let (mut listeners_node, mut routes_node, mut upstreams_node) = (None, None, None);
    for (key, _, child) in entries {
        match key {
            "listeners" => listeners_node = Some(child),
            "routes" => routes_node = Some(child),
            "upstreams" => upstreams_node = Some(child),
            other => cx.err(
                &path.key(other.to_string()),
                "unknown key: expected listeners, routes or upstreams",
            ),
        }
    }
    let listeners = listeners(cx, listeners_node, &path.key("listeners"));
    let upstreams = upstreams(cx, upstreams_node, &path.key("upstreams"));
    let upstream_names: HashSet<String> = match upstreams_node.and_then(|n| n.entries()) {
        Some(entries) => entries.into_iter().map(|(k, _, _)| k.to_string()).collect(),
        None => HashSet::new(),
    };
    let routes = routes(cx, routes_node, &path.key("routes"), &upstream_names);
    Some(HttpConfig {
        listeners: listeners?,
        routes: routes?,
        upstreams: upstreams?,
    })
}

/// The elements of an array (or array of tables) at `path`, or an error.
fn elements<'a>(
    cx: &mut Ctx<'_, '_>,
    node: Option<Node<'a>>,
    path: &KeyPath,
) -> Option<Vec<Node<'a>>> {
    let node = node?;
    let found = node.elements();
    if found.is_none() {
        cx.err(
            path,
            format!("expected an array of tables, found {}", node.kind()),
        );
    }
    found
}

/// A request head taking longer than this is not a real client: between HAProxy's usual
/// `timeout http-request 10s` and nginx's `client_header_timeout 60s`.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// nginx's `keepalive_timeout`: longer than browsers keep idle connections (Chrome: 300 s is
/// cut to the server's), short enough that idle sockets do not pile up.
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// nginx's `client_body_timeout`, and what pingora used before it was configurable.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Room for tens of thousands of idle keep-alive clients, under the usual 65536 open files.
const DEFAULT_MAX_CONNECTIONS: i64 = 50_000;

fn listeners(
    cx: &mut Ctx<'_, '_>,
    node: Option<Node<'_>>,
    path: &KeyPath,
) -> Option<Vec<Listener>> {
    if node.is_none() {
        return Some(Vec::new());
    }
    let mut out = Some(Vec::new());
    let mut names = HashSet::new();
    for (i, el) in elements(cx, node, path)?.into_iter().enumerate() {
        let lp = path.index(i);
        let listener = cx
            .src
            .unit::<RawListener>(el, &lp, &mut cx.errors)
            .and_then(|raw| listener(cx, raw, &lp, &mut names));
        match (listener, out.as_mut()) {
            (Some(l), Some(list)) => list.push(l),
            _ => out = None,
        }
    }
    out
}

fn listener(
    cx: &mut Ctx<'_, '_>,
    raw: RawListener,
    path: &KeyPath,
    names: &mut HashSet<String>,
) -> Option<Listener> {
    let name = cx.name(raw.name, &path.key("name"));
    if let Some(n) = &name {
        if !names.insert(n.clone()) {
            cx.err(&path.key("name"), format!("duplicate listener name {n:?}"));
        }
    }
    let addr = cx.listen_addr(raw.addr, &path.key("addr"), None);
    let mut tls = Some(Vec::new());
    for (i, t) in raw.tls.unwrap_or_default().into_iter().enumerate() {
        match (
            tls_files(cx, t, &path.key("tls").index(i)).flatten(),
            tls.as_mut(),
        ) {
            (Some(files), Some(list)) => list.push(files),
            _ => tls = None,
        }
    }
    let health_path = raw.health_path.unwrap_or_else(|| "/health".to_string());
    if !health_path.starts_with('/') {
        cx.err(&path.key("health_path"), "must start with '/'");
    }
    let max_header_bytes = cx.int(
        raw.max_header_bytes,
        &path.key("max_header_bytes"),
        64 * 1024,
        1024,
        1024 * 1024,
    );
    let header_timeout = cx.duration(
        raw.header_timeout,
        &path.key("header_timeout"),
        DEFAULT_HEADER_TIMEOUT,
        false,
    );
    let keepalive_timeout = cx.duration(
        raw.keepalive_timeout,
        &path.key("keepalive_timeout"),
        DEFAULT_KEEPALIVE_TIMEOUT,
        false,
    );
    let body_timeout = cx.duration(
        raw.body_timeout,
        &path.key("body_timeout"),
        DEFAULT_BODY_TIMEOUT,
        false,
    );
    let max_connections = cx.int(
        raw.max_connections,
        &path.key("max_connections"),
        DEFAULT_MAX_CONNECTIONS,
        1,
        10_000_000,
    );
    // pingora's 64 KiB under TLS (its reason: fewer reads of 16 KiB records); none in the
    // clear, where the head and body parsers have buffers of their own and 64 KiB held by
    // every idle connection is most of its memory.
    let read_buffer_default = if tls.as_ref().is_some_and(|t| !t.is_empty()) {
        64 * 1024
    } else {
        0
    };
    let read_buffer_bytes = cx.int(
        raw.read_buffer_bytes,
        &path.key("read_buffer_bytes"),
        read_buffer_default,
        0,
        1024 * 1024,
    );
    let http1 = cx.choice(
        raw.http1,
        &path.key("http1"),
        Some(Http1Engine::Pingora),
        &[
            ("pingora", Http1Engine::Pingora),
            ("hyper", Http1Engine::Hyper),
        ],
    );
    let access_log = super::access_log::access_log(cx, raw.access_log, &path.key("access_log"));
    Some(Listener {
        name: name?,
        addr: addr?,
        tls: tls?,
        health_path: health_path.starts_with('/').then_some(health_path)?,
        max_header_bytes: max_header_bytes?,
        header_timeout: header_timeout?,
        keepalive_timeout: keepalive_timeout?,
        body_timeout: body_timeout?,
        max_connections: max_connections?,
        read_buffer_bytes: read_buffer_bytes?,
        http1: http1?,
        access_log: access_log?,
    })
}

fn routes(
    cx: &mut Ctx<'_, '_>,
    node: Option<Node<'_>>,
    path: &KeyPath,
    upstreams: &HashSet<String>,
) -> Option<Vec<Route>> {
    if node.is_none() {
        return Some(Vec::new());
    }
    let mut out = Some(Vec::new());
    let mut seen: HashMap<(HostMatch, String), usize> = HashMap::new();
    for (i, el) in elements(cx, node, path)?.into_iter().enumerate() {
        let rp = path.index(i);
        let route = cx
            .src
            .unit::<RawRoute>(el, &rp, &mut cx.errors)
            .and_then(|raw| route(cx, raw, &rp, i, upstreams, &mut seen));
        match (route, out.as_mut()) {
            (Some(r), Some(list)) => list.push(r),
            _ => out = None,
        }
    }
    out
}

/// Route number `index` at `path`; `seen` maps each (host, path_prefix) so far to its route
/// index, so a duplicate is reported even when either route has other errors.
fn route(
    cx: &mut Ctx<'_, '_>,
    raw: RawRoute,
    path: &KeyPath,
    index: usize,
    upstreams: &HashSet<String>,
    seen: &mut HashMap<(HostMatch, String), usize>,
) -> Option<Route> {
    let host = host_match(
        cx,
        raw.host.unwrap_or_else(|| "*".to_string()),
        &path.key("host"),
    );
    let path_prefix = raw.path_prefix.unwrap_or_else(|| "/".to_string());
    let prefix_ok = path_prefix.starts_with('/');
    if !prefix_ok {
        cx.err(&path.key("path_prefix"), "must start with '/'");
    }
    if let (Some(h), true) = (&host, prefix_ok) {
        if let Some(first) = seen.insert((h.clone(), path_prefix.clone()), index) {
            cx.err(
                path,
                format!("same host and path_prefix as http.routes[{first}]"),
            );
        }
    }
    let upstream = cx.required(raw.upstream, &path.key("upstream"));
    if let Some(u) = &upstream {
        if !upstreams.contains(u) {
            let mut known: Vec<&str> = upstreams.iter().map(String::as_str).collect();
            known.sort_unstable();
            cx.err(
                &path.key("upstream"),
                format!(
                    "no upstream named {u:?} (defined: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }
    let retries = cx.int(raw.retries, &path.key("retries"), 2, 0, 10);
    let connect_timeout = cx.duration(
        raw.connect_timeout,
        &path.key("connect_timeout"),
        Duration::from_secs(3),
        false,
    );
    let read_timeout = cx.duration(
        raw.read_timeout,
        &path.key("read_timeout"),
        Duration::from_secs(60),
        false,
    );
    let write_timeout = cx.duration(
        raw.write_timeout,
        &path.key("write_timeout"),
        Duration::from_secs(60),
        false,
    );
    let max_body_bytes = cx.int(
        raw.max_body_bytes,
        &path.key("max_body_bytes"),
        10 * 1024 * 1024,
        0,
        i64::MAX,
    );
    let gzip_min_length = cx.int(
        raw.gzip_min_length,
        &path.key("gzip_min_length"),
        1024,
        0,
        i64::MAX,
    );
    let upstream = upstream.filter(|u| upstreams.contains(u));
    Some(Route {
        host: host?,
        path_prefix: prefix_ok.then_some(path_prefix)?,
        upstream: upstream?,
        retries: retries?,
        connect_timeout: connect_timeout?,
        read_timeout: read_timeout?,
        write_timeout: write_timeout?,
        gzip: raw.gzip.unwrap_or(false),
        gzip_min_length: gzip_min_length?,
        max_body_bytes: max_body_bytes?,
    })
}

fn host_match(cx: &mut Ctx<'_, '_>, host: String, path: &KeyPath) -> Option<HostMatch> {
    if host == "*" {
        return Some(HostMatch::Any);
    }
    let (suffix, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    let name = name.to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !valid {
        cx.err(
            path,
            format!("invalid host {host:?}: expected \"*\", a host name, or \"*.suffix\""),
        );
        return None;
    }
    Some(if suffix {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name)
    })
}

fn upstreams(
    cx: &mut Ctx<'_, '_>,
    node: Option<Node<'_>>,
    path: &KeyPath,
) -> Option<BTreeMap<String, Upstream>> {
    let Some(node) = node else {
        return Some(BTreeMap::new());
    };
    let Some(entries) = node.entries() else {
        cx.err(
            path,
            format!("expected a table of upstreams, found {}", node.kind()),
        );
        return None;
    };
    let mut out = Some(BTreeMap::new());
    let mut total_backends = 0usize;
    for (name, _, el) in entries {
        let up = path.key(name.to_string());
        let valid_name = cx.name(Some(name.to_string()), &up);
        let upstream = cx
            .src
            .unit::<RawUpstream>(el, &up, &mut cx.errors)
            .and_then(|raw| upstream(cx, raw, &up));
        if let Some(u) = &upstream {
            total_backends += u.pools.values().map(|p| p.backends.len()).sum::<usize>();
        }
        match (valid_name, upstream, out.as_mut()) {
            (Some(n), Some(u), Some(map)) => {
                map.insert(n, u);
            }
            _ => out = None,
        }
    }
    if total_backends > MAX_BACKENDS {
        cx.err(
            path,
            format!("{total_backends} backends in all; the limit is {MAX_BACKENDS}"),
        );
        return None;
    }
    out
}

fn upstream(cx: &mut Ctx<'_, '_>, raw: RawUpstream, path: &KeyPath) -> Option<Upstream> {
    let balance = cx.choice(
        raw.balance,
        &path.key("balance"),
        Some(Balance::LeastConn),
        &[
            ("least_conn", Balance::LeastConn),
            ("round_robin", Balance::RoundRobin),
        ],
    );
    let max_fails = cx.int(raw.max_fails, &path.key("max_fails"), 1, 0, 1000);
    let fail_timeout = cx.duration(
        raw.fail_timeout,
        &path.key("fail_timeout"),
        Duration::from_secs(10),
        false,
    );
    let max_ejected_percent = cx.int(
        raw.max_ejected_percent,
        &path.key("max_ejected_percent"),
        50,
        0,
        100,
    );
    let mut failure_statuses = Some(Vec::new());
    for (i, s) in raw
        .failure_statuses
        .unwrap_or_else(|| vec![502, 503, 504])
        .into_iter()
        .enumerate()
    {
        match (
            cx.int::<u16>(Some(s), &path.key("failure_statuses").index(i), 0, 500, 599),
            failure_statuses.as_mut(),
        ) {
            (Some(s), Some(list)) => list.push(s),
            _ => failure_statuses = None,
        }
    }
    let retry_budget = raw.retry_budget.unwrap_or(0.2);
    let budget_ok = (0.0..=1.0).contains(&retry_budget);
    if !budget_ok {
        cx.err(
            &path.key("retry_budget"),
            format!("{retry_budget} is out of range: expected 0.0 to 1.0"),
        );
    }
    let slow_start = cx
        .opt_duration(raw.slow_start, &path.key("slow_start"))
        .ok();
    let health_check = match raw.health_check {
        Some(h) => health_check(cx, h, &path.key("health_check")).map(Some),
        None => Some(None),
    };
    let pools = pools(cx, raw.pools, path);
    Some(Upstream {
        balance: balance?,
        max_fails: max_fails?,
        fail_timeout: fail_timeout?,
        max_ejected_percent: max_ejected_percent?,
        failure_statuses: failure_statuses?,
        retry_budget: budget_ok.then_some(retry_budget)?,
        slow_start: slow_start?,
        health_check: health_check?,
        pools: pools?,
    })
}

fn health_check(
    cx: &mut Ctx<'_, '_>,
    raw: RawHealthCheck,
    path: &KeyPath,
) -> Option<ActiveHealthCheck> {
    let hc_path = raw.path.unwrap_or_else(|| "/health".to_string());
    let path_ok = hc_path.starts_with('/');
    if !path_ok {
        cx.err(&path.key("path"), "must start with '/'");
    }
    let interval = cx.duration(
        raw.interval,
        &path.key("interval"),
        Duration::from_secs(2),
        false,
    );
    let timeout = cx.duration(
        raw.timeout,
        &path.key("timeout"),
        Duration::from_secs(1),
        false,
    );
    let rise = cx.int(raw.rise, &path.key("rise"), 2, 1, 100);
    let fall = cx.int(raw.fall, &path.key("fall"), 3, 1, 100);
    let expect_status = cx.int(raw.expect_status, &path.key("expect_status"), 200, 100, 599);
    let version_header = match raw.version_header {
        None => Some(None),
        Some(h)
            if !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
        {
            Some(Some(h.to_ascii_lowercase()))
        }
        Some(h) => {
            cx.err(
                &path.key("version_header"),
                format!("{h:?} is not a header name"),
            );
            None
        }
    };
    Some(ActiveHealthCheck {
        path: path_ok.then_some(hc_path)?,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
        expect_status: expect_status?,
        version_header: version_header?,
    })
}

fn pools(
    cx: &mut Ctx<'_, '_>,
    raw: Option<BTreeMap<String, crate::raw::RawPool>>,
    upstream: &KeyPath,
) -> Option<BTreeMap<String, Pool>> {
    let path = upstream.key("pools");
    let raw = match raw {
        Some(p) if !p.is_empty() => p,
        _ => {
            cx.err(
                &path,
                "an upstream needs at least one pool, e.g. [http.upstreams.NAME.pools.blue]",
            );
            return None;
        }
    };
    let mut out = Some(BTreeMap::new());
    let mut seen: HashMap<String, KeyPath> = HashMap::new();
    let mut weight_sum = 0u64;
    for (name, pool) in raw {
        let pp = path.key(name.clone());
        let valid_name = cx.name(Some(name.clone()), &pp);
        let weight = cx.int::<u32>(pool.weight, &pp.key("weight"), 100, 0, 10_000);
        weight_sum += u64::from(weight.unwrap_or(1));
        let raw_backends = pool.backends.unwrap_or_default();
        if raw_backends.is_empty() {
            cx.err(&pp.key("backends"), "a pool needs at least one backend");
        }
        let mut backends = (!raw_backends.is_empty()).then(Vec::new);
        for (i, b) in raw_backends.into_iter().enumerate() {
            let bp = pp.key("backends").index(i);
            let addr = cx.address(b.addr, &bp.key("addr"));
            if let Some(a) = &addr {
                if let Some(first) = seen.insert(a.to_string(), bp.clone()) {
                    cx.err(&bp, format!("backend {a} is already listed at {first}"));
                }
            }
            let weight = cx.int(b.weight, &bp.key("weight"), 1, 1, 1000);
            let state = cx.choice(
                b.state,
                &bp.key("state"),
                Some(BackendState::Enabled),
                &[
                    ("enabled", BackendState::Enabled),
                    ("drain", BackendState::Drain),
                ],
            );
            match (addr, weight, state, backends.as_mut()) {
                (Some(addr), Some(weight), Some(state), Some(list)) => list.push(Backend {
                    addr,
                    weight,
                    state,
                }),
                _ => backends = None,
            }
        }
        match (valid_name, weight, backends, out.as_mut()) {
            (Some(n), Some(weight), Some(backends), Some(map)) => {
                map.insert(n, Pool { weight, backends });
            }
            _ => out = None,
        }
    }
    if weight_sum == 0 {
        cx.err(
            &path,
            "pool weights sum to 0: at least one pool needs a weight above 0",
        );
        return None;
    }
    out
}
