//! Tests of invalid files: every problem is reported at once, each at its exact key path
//! and line.

use super::*;

/// One file with one of each problem: all are reported, each at its key path and line.
const MANY_ERRORS: &str = r#"bogus = 1

[control]
colour = "blue"
listen = "127.0.0.1:7000"
reload_check_interval = "soon"
history_limit = 5000

[[control.tokens]]
name = "ops"
role = "admin"

[[control.tokens]]
name = "ops"
role = "viewer"
sha256 = "a0b238445c55f52ef8a5e3a8b6317e00c75ecbcad5018ee00003d7e31fe51ed0"
env = "OPS_TOKEN"

[[control.tokens]]
name = "ci"
role = "operator"
sha256 = "not-hex"

[[http.listeners]]
name = "public"
addr = "127.0.0.1:7000"

[[http.listeners]]
name = "public"
addr = "localhost:8080"

[[http.routes]]
upstream = "api"
retries = 11

[[http.routes]]
upstream = "missing"

[http.upstreams.api]
colour = "red"
max_fails = "three"

[http.upstreams.web]
max_ejected_percent = 101

[http.upstreams.web.pools.blue]
weight = 0
backends = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", wieght = 2 }, "127.0.0.1:9001", "no-port"]

[http.upstreams.web.pools.green]
weight = 0
backends = []

[http.upstreams.empty]
balance = "round_robin"

[[postgres.clusters]]
name = "jobs"
listen = "127.0.0.1:7000"
extra = true
nodes = [{ addr = "127.0.0.1:5432", role = "replica" }]

[[postgres.clusters]]
name = "jobs"
listen = "127.0.0.1:6433"
nodes = [
  { addr = "127.0.0.1:5432", role = "primary" },
  { addr = "127.0.0.1:5433", role = "primary" },
]

[[postgres.clusters]]
name = "fenced"
listen = "127.0.0.1:6434"
nodes = [{ addr = "127.0.0.1:5434", role = "primary", fenced = "failover 7" }]
"#;

#[test]
fn every_problem_is_reported_at_once() {
    let t = MANY_ERRORS;
    let tokens_1 = line(t, "env = \"OPS_TOKEN\"") - 4;
    let listeners_0 = line(t, "addr = \"127.0.0.1:7000\"") - 2;
    let routes_1 = line(t, "upstream = \"missing\"") - 1;
    let pools = line(t, "[http.upstreams.web.pools.blue]");
    let backends = line(t, "wieght");
    assert_errors(
        &parse_err(t),
        &[
            (1, "bogus", "unknown key: expected control, http or postgres"),
            (line(t, "colour = \"blue\""), "control.colour", "unknown key"),
            (line(t, "\"soon\""), "control.reload_check_interval", "invalid duration \"soon\""),
            (line(t, "5000"), "control.history_limit", "5000 is out of range: expected 1 to 1000"),
            (tokens_1 - 4, "control.tokens[0]", "token has no hash"),
            (tokens_1, "control.tokens[1]", "set only one of sha256, sha256_env and env"),
            (tokens_1 + 1, "control.tokens[1].name", "duplicate token name \"ops\" (also control.tokens[0])"),
            (line(t, "\"not-hex\""), "control.tokens[2].sha256", "expected 64 hex digits"),
            (listeners_0 + 2, "http.listeners[0].addr", "127.0.0.1:7000 is already used by control.listen"),
            (listeners_0 + 5, "http.listeners[1].name", "duplicate listener name \"public\""),
            (line(t, "localhost:8080"), "http.listeners[1].addr", "invalid listen address \"localhost:8080\""),
            (line(t, "retries = 11"), "http.routes[0].retries", "11 is out of range: expected 0 to 10"),
            (routes_1, "http.routes[1]", "same host and path_prefix as http.routes[0]"),
            (routes_1 + 1, "http.routes[1].upstream", "no upstream named \"missing\" (defined: api, empty, web)"),
            (line(t, "colour = \"red\""), "http.upstreams.api.colour", "unknown key"),
            (line(t, "\"three\""), "http.upstreams.api.max_fails", "invalid type: string \"three\""),
            (line(t, "101"), "http.upstreams.web.max_ejected_percent", "101 is out of range: expected 0 to 100"),
            (pools, "http.upstreams.web.pools", "pool weights sum to 0"),
            (backends, "http.upstreams.web.pools.blue.backends[1].wieght", "unknown key"),
            (
                backends,
                "http.upstreams.web.pools.blue.backends[2]",
                "backend 127.0.0.1:9001 is already listed at http.upstreams.web.pools.blue.backends[0]",
            ),
            (backends, "http.upstreams.web.pools.blue.backends[3].addr", "invalid address \"no-port\": expected host:port"),
            (line(t, "backends = []"), "http.upstreams.web.pools.green.backends", "a pool needs at least one backend"),
            (line(t, "[http.upstreams.empty]"), "http.upstreams.empty.pools", "an upstream needs at least one pool"),
            (line(t, "extra = true") - 1, "postgres.clusters[0].listen", "already used by control.listen"),
            (line(t, "extra = true"), "postgres.clusters[0].extra", "unknown key"),
            (line(t, "role = \"replica\""), "postgres.clusters[0].nodes", "exactly one node with role = \"primary\"; found none"),
            (line(t, "127.0.0.1:6433") - 1, "postgres.clusters[1].name", "duplicate cluster name \"jobs\""),
            (
                line(t, "127.0.0.1:6433") + 1,
                "postgres.clusters[1].nodes",
                "exactly one primary; found 2: 127.0.0.1:5432, 127.0.0.1:5433",
            ),
            (line(t, "fenced = "), "postgres.clusters[2].nodes", "the primary 127.0.0.1:5434 is fenced"),
        ],
    );
}

#[test]
fn errors_display_with_line_and_path() {
    let errors = match parse("[control]\nlisten = \"nowhere\"\n") {
        Ok(_) => panic!("a bad listen address must not parse"),
        Err(e) => e,
    };
    assert_eq!(
        errors.to_string(),
        "1 config error\n  line 2: control.listen: invalid listen address \"nowhere\": expected ip:port, e.g. \"127.0.0.1:8080\""
    );
}

#[test]
fn missing_keys_point_at_their_table() {
    let t =
        "[[http.listeners]]\nname = \"a\"\n\n[[postgres.clusters]]\nlisten = \"127.0.0.1:6432\"\n\
             nodes = [{ addr = \"127.0.0.1:5432\" }]\n";
    assert_errors(
        &parse_err(t),
        &[
            (1, "http.listeners[0].addr", "missing required key"),
            (4, "postgres.clusters[0].name", "missing required key"),
            (
                6,
                "postgres.clusters[0].nodes[0].role",
                "missing required key",
            ),
        ],
    );
}

#[test]
fn type_errors_point_into_arrays_and_inline_tables() {
    let t = r#"[[http.routes]]
upstream = "api"
retries = "two"

[http.upstreams.api]
health_check = { path = "/hc", interval = 5 }
pools.blue.backends = ["127.0.0.1:9001"]
"#;
    assert_errors(
        &parse_err(t),
        &[
            (
                3,
                "http.routes[0].retries",
                "invalid type: string \"two\", expected i64",
            ),
            (
                6,
                "http.upstreams.api.health_check.interval",
                "invalid type: integer `5`, expected a string",
            ),
        ],
    );
}

#[test]
fn postgres_nodes_users_and_pool_errors() {
    let t = r#"[[postgres.clusters]]
name = "db"
listen = "127.0.0.1:6432"
pool_mode = "statement"
nodes = [
  { addr = "127.0.0.1:5432", role = "primary" },
  { addr = "127.0.0.1:5432", role = "replica", priority = -1 },
  { addr = "[::1]:5433", role = "standby" },
]
users = [
  { name = "a" },
  { name = "a", password = "x", password_env = "Y" },
  { name = "b", password_env = "1BAD" },
  { name = "t", client_auth = "trust" },
]
pool = { min_size = 30, max_size = 20 }
routing = { max_replica_lag = "forever", fallback = "nowhere" }
failover = { check_interval = "0ms", failure_threshold = 0, write_pause_timeout = "8 days" }
"#;
    let nodes = line(t, "nodes = [");
    let users = line(t, "users = [");
    assert_errors(
        &parse_err(t),
        &[
            (
                4,
                "postgres.clusters[0].pool_mode",
                "unknown value \"statement\": expected one of transaction, session",
            ),
            (
                nodes + 2,
                "postgres.clusters[0].nodes[1].addr",
                "node 127.0.0.1:5432 is already listed at index 0",
            ),
            (
                nodes + 2,
                "postgres.clusters[0].nodes[1].priority",
                "-1 is out of range: expected 0 to 1000000",
            ),
            (
                nodes + 3,
                "postgres.clusters[0].nodes[2].role",
                "unknown value \"standby\": expected one of primary, replica",
            ),
            (
                users + 1,
                "postgres.clusters[0].users[0]",
                "set password or password_env (or client_auth = \"trust\")",
            ),
            (
                users + 2,
                "postgres.clusters[0].users[1].name",
                "duplicate user \"a\"",
            ),
            (
                users + 2,
                "postgres.clusters[0].users[1]",
                "set only one of password and password_env",
            ),
            (
                users + 3,
                "postgres.clusters[0].users[2].password_env",
                "invalid environment variable name \"1BAD\"",
            ),
            (
                line(t, "min_size"),
                "postgres.clusters[0].pool.min_size",
                "min_size 30 is larger than max_size 20",
            ),
            (
                line(t, "forever"),
                "postgres.clusters[0].routing.max_replica_lag",
                "invalid duration \"forever\"",
            ),
            (
                line(t, "forever"),
                "postgres.clusters[0].routing.fallback",
                "expected one of primary, error",
            ),
            (
                line(t, "0ms"),
                "postgres.clusters[0].failover.check_interval",
                "must be longer than zero",
            ),
            (
                line(t, "0ms"),
                "postgres.clusters[0].failover.failure_threshold",
                "0 is out of range: expected 1 to 100",
            ),
            (
                line(t, "0ms"),
                "postgres.clusters[0].failover.write_pause_timeout",
                "\"8 days\" is longer than a week",
            ),
        ],
    );
}

#[test]
fn listen_conflicts_include_the_default_control_address_but_not_port_zero() {
    let t = "[[http.listeners]]\nname = \"a\"\naddr = \"127.0.0.1:9901\"\n\n\
             [[http.listeners]]\nname = \"b\"\naddr = \"127.0.0.1:0\"\n\n\
             [[http.listeners]]\nname = \"c\"\naddr = \"127.0.0.1:0\"\n";
    assert_errors(
        &parse_err(t),
        &[(
            3,
            "http.listeners[0].addr",
            "127.0.0.1:9901 is already used by control.listen",
        )],
    );
    // The same address on another interface is not a conflict.
    parse_ok("[[http.listeners]]\nname = \"a\"\naddr = \"0.0.0.0:9901\"\n");
}

#[test]
fn unknown_keys_under_dotted_and_numeric_names_keep_their_path() {
    // Pool names may contain '.' or be all digits; the path must still name the pool.
    let t = r#"[http.upstreams.api.pools."v1.2"]
backends = ["127.0.0.1:9001"]
wieght = 3

[http.upstreams.api.pools.2]
backends = [{ addr = "127.0.0.1:9002", sate = "drain" }]
"#;
    assert_errors(
        &parse_err(t),
        &[
            (3, "http.upstreams.api.pools.\"v1.2\".wieght", "unknown key"),
            (
                6,
                "http.upstreams.api.pools.2.backends[0].sate",
                "unknown key",
            ),
        ],
    );
}

#[test]
fn etcd_lease_settings_are_checked() {
    let t = r#"
[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:6432"
nodes = [{ addr = "127.0.0.1:5432", role = "primary" }]
users = [{ name = "a", password = "x" }]
failover = { etcd = { endpoints = ["https://etcd:2379", "etcd:2379"], prefix = "sy", lease_ttl = "1s" } }
"#;
    let at = line(t, "etcd =");
    let errors = parse_err(t);
    for (path, message) in [
        (
            "failover.etcd.endpoints[0]",
            "TLS to etcd is not supported yet",
        ),
        (
            "failover.etcd.endpoints[1]",
            "is not an http://host:port endpoint",
        ),
        ("failover.etcd.prefix", "must start with \"/\""),
        ("failover.etcd.lease_ttl", "must be at least 2s"),
    ] {
        let path = format!("postgres.clusters[0].{path}");
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(message) && e.line == Some(at)),
            "no {path}: {message} in {errors:?}"
        );
    }
    let ok = t.replace(
        r#"["https://etcd:2379", "etcd:2379"], prefix = "sy", lease_ttl = "1s""#,
        r#"["http://etcd:2379/"]"#,
    );
    let etcd = crate::parse(&ok).map(|c| c.postgres.clusters[0].failover.etcd.clone());
    let Ok(Some(etcd)) = etcd else {
        panic!("defaults not applied: {etcd:?}");
    };
    assert_eq!(etcd.endpoints, ["http://etcd:2379"]);
    assert_eq!(etcd.prefix, "/switchyard");
    assert_eq!(etcd.lease_ttl, std::time::Duration::from_secs(10));
}
