//! Tests of [`parse`]: valid files with their defaults, and host matching here; invalid
//! files in [`errors`]; size limits and section shapes in [`limits`].

mod access_log;
mod errors;
mod limits;
mod rollout;

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::error::ConfigError;
use crate::model::{
    BackendState, Balance, HostMatch, Http1Engine, NodeRole, PoolMode, ReplicaFallback, Secret,
};

const EXAMPLE: &str = include_str!("../../examples/switchyard.toml");

/// The config in `text`, or a panic listing its errors.
fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got {errors}"),
    }
}

/// The errors in `text`, or a panic when it is valid.
fn parse_err(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("expected errors, got a valid config: {}", config.summary()),
        Err(errors) => errors.0,
    }
}

/// 1-based line of the only line of `text` containing `needle`.
fn line(text: &str, needle: &str) -> usize {
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{needle:?} must be on exactly one line, found on {found:?}"
    );
    found[0]
}

/// Asserts `errors` is exactly `expected`, in order: same line and path, and a message
/// containing the given fragment.
fn assert_errors(errors: &[ConfigError], expected: &[(usize, &str, &str)]) {
    let listing: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let listing = listing.join("\n");
    assert_eq!(errors.len(), expected.len(), "got:\n{listing}");
    for (e, (line, path, fragment)) in errors.iter().zip(expected) {
        assert_eq!(
            (e.line, e.path.as_str()),
            (Some(*line), *path),
            "got:\n{listing}"
        );
        assert!(
            e.message.contains(fragment),
            "{e} should mention {fragment:?}; got:\n{listing}"
        );
    }
}

fn host_of(route_host: &str) -> HostMatch {
    let text = format!(
        "[[http.routes]]\nhost = {route_host:?}\nupstream = \"api\"\n\
         [http.upstreams.api.pools.blue]\nbackends = [\"127.0.0.1:9001\"]\n"
    );
    parse_ok(&text).http.routes[0].host.clone()
}

#[test]
fn example_file_parses() {
    let config = parse_ok(EXAMPLE);
    assert_eq!(
        config.summary(),
        "1 listener(s), 1 route(s), 1 upstream(s) with 3 backend(s), 1 Postgres cluster(s) with 2 node(s), 2 control token(s)"
    );
    let api = &config.http.upstreams["jobs-api"];
    assert_eq!(api.max_fails, 3);
    assert_eq!(api.fail_timeout, Duration::from_secs(30));
    assert_eq!(
        (api.pools["blue"].weight, api.pools["green"].weight),
        (100, 0)
    );
    let blue = &api.pools["blue"].backends;
    assert_eq!(blue[1].addr.to_string(), "127.0.0.1:9002");
    assert_eq!((blue[0].weight, blue[1].weight), (1, 2));
    let hc = api
        .health_check
        .as_ref()
        .map(|h| (h.path.as_str(), h.interval, h.expect_status));
    assert_eq!(hc, Some(("/health", Duration::from_secs(2), 200)));

    let jobs = &config.postgres.clusters[0];
    assert_eq!(
        jobs.listen,
        "127.0.0.1:6432".parse::<SocketAddr>().expect("literal")
    );
    assert_eq!(jobs.nodes[0].role, NodeRole::Primary);
    assert_eq!(
        jobs.users[0].password,
        Some(Secret::Env("JOBS_DB_PASSWORD".into()))
    );
    assert_eq!(jobs.pool.idle_timeout, Duration::from_secs(600));
    assert_eq!(jobs.routing.max_replica_lag_bytes, Some(16 * 1024 * 1024));
    assert_eq!(jobs.failover.check_interval, Duration::from_millis(300));

    // The comment above the dashboard token says which token it is the hash of.
    use sha2::{Digest, Sha256};
    let expected: [u8; 32] = Sha256::digest(b"dashboard-secret").into();
    assert_eq!(
        config.control.tokens[1].credential,
        TokenCredential::Sha256(expected)
    );
    assert_eq!(
        config.control.tokens[0].credential,
        TokenCredential::Env("SWITCHYARD_ADMIN_TOKEN".into())
    );
}

#[test]
fn empty_file_is_all_defaults() {
    let config = parse_ok("");
    let control = &config.control;
    assert_eq!(control.listen, SocketAddr::from(([127, 0, 0, 1], 9901)));
    assert_eq!(control.audit_log, PathBuf::from("-"));
    assert!(control.tokens.is_empty() && control.tls.is_none());
    assert_eq!(control.history_limit, 50);
    assert_eq!(control.reload_check_interval, Duration::from_secs(10));
    assert_eq!(control.reload_debounce, Duration::from_millis(150));
    assert_eq!(config.http, crate::model::HttpConfig::default());
    assert_eq!(config.postgres, crate::model::PostgresConfig::default());
    assert_eq!(
        config.summary(),
        "0 listener(s), 0 route(s), 0 upstream(s) with 0 backend(s), 0 Postgres cluster(s) with 0 node(s), 0 control token(s)"
    );
}

#[test]
fn omitted_fields_take_their_defaults() {
    let config = parse_ok(
        r#"
[[http.listeners]]
name = "public"
addr = "127.0.0.1:8080"

[[http.routes]]
upstream = "api"

[http.upstreams.api.pools.blue]
backends = ["127.0.0.1:9001"]

[[postgres.clusters]]
name = "db"
listen = "127.0.0.1:6432"
nodes = [{ addr = "db.internal:5432", role = "primary" }]
users = [{ name = "app", password = "pw" }]
"#,
    );
    let listener = &config.http.listeners[0];
    assert_eq!(
        (listener.health_path.as_str(), listener.max_header_bytes),
        ("/health", 64 * 1024)
    );
    let route = &config.http.routes[0];
    assert_eq!(
        (&route.host, route.path_prefix.as_str(), route.retries),
        (&HostMatch::Any, "/", 2)
    );
    assert_eq!(route.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        (route.read_timeout, route.write_timeout),
        (Duration::from_secs(60), Duration::from_secs(60))
    );
    assert_eq!(
        (route.gzip, route.max_body_bytes),
        (false, 10 * 1024 * 1024)
    );
    let api = &config.http.upstreams["api"];
    assert_eq!(
        (api.balance, api.max_fails, api.max_ejected_percent),
        (Balance::LeastConn, 1, 50)
    );
    assert_eq!(api.failure_statuses, vec![502, 503, 504]);
    assert_eq!(
        (api.retry_budget, api.slow_start, api.health_check.is_none()),
        (0.2, None, true)
    );
    let blue = &api.pools["blue"];
    assert_eq!(
        (blue.weight, blue.backends[0].weight, blue.backends[0].state),
        (100, 1, BackendState::Enabled)
    );

    let db = &config.postgres.clusters[0];
    assert_eq!(db.pool_mode, PoolMode::Transaction);
    assert_eq!(db.nodes[0].addr.to_string(), "db.internal:5432");
    assert_eq!(
        (db.nodes[0].priority, db.nodes[0].fenced.as_deref()),
        (100, None)
    );
    assert_eq!(db.users[0].password, Some(Secret::Value("pw".into())));
    assert_eq!((db.pool.min_size, db.pool.max_size), (0, 20));
    assert_eq!(db.pool.checkout_timeout, Duration::from_secs(5));
    assert!(db.routing.read_write_split && !db.routing.read_your_writes);
    assert_eq!(db.routing.fallback, ReplicaFallback::Primary);
    assert!(db.failover.auto_promote);
    assert_eq!(
        (
            db.failover.failure_threshold,
            db.failover.write_pause_timeout
        ),
        (3, Duration::from_secs(10))
    );
}

#[test]
fn host_matching() {
    assert_eq!(host_of("*"), HostMatch::Any);
    assert_eq!(
        host_of("API.Example.com"),
        HostMatch::Exact("api.example.com".into())
    );
    assert_eq!(
        host_of("*.example.com"),
        HostMatch::Suffix(".example.com".into())
    );
    assert_eq!(
        host_of("*.EXAMPLE.com"),
        HostMatch::Suffix(".example.com".into())
    );
    for bad in [
        "",
        "*.",
        "example.com:8080",
        "a..b",
        "*.*.com",
        "ex ample.com",
        "example.com.",
    ] {
        let text = format!("[[http.routes]]\nhost = {bad:?}\nupstream = \"api\"\n[http.upstreams.api.pools.blue]\nbackends = [\"127.0.0.1:9001\"]\n");
        let expected =
            format!("invalid host {bad:?}: expected \"*\", a host name, or \"*.suffix\"");
        assert_errors(&parse_err(&text), &[(2, "http.routes[0].host", &expected)]);
    }
}

#[test]
fn the_http1_engine_is_pingora_unless_set() {
    let listener = |engine: &str| {
        format!("[[http.listeners]]\nname = \"web\"\naddr = \"127.0.0.1:8080\"\n{engine}\n")
    };
    let config = parse_ok(&listener(""));
    assert_eq!(config.http.listeners[0].http1, Http1Engine::Pingora);
    let config = parse_ok(&listener("http1 = \"hyper\""));
    assert_eq!(config.http.listeners[0].http1, Http1Engine::Hyper);

    let text = listener("http1 = \"h2o\"");
    assert_errors(
        &parse_err(&text),
        &[(
            line(&text, "h2o"),
            "http.listeners[0].http1",
            "expected one of pingora, hyper",
        )],
    );
}
