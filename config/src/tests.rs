//! Tests of what the control plane does with a validated config: [`content_hash`], [`diff`]
//! and the [`redact`] functions, with an eye on secrets never leaking.

use super::*;
use crate::redact::{redact_json, redact_toml, restore_redacted, REDACTED};

const EXAMPLE: &str = include_str!("../examples/switchyard.toml");

/// A token hash and passwords that must never be shown.
const TOKEN_HASH: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
const PASSWORD: &str = "hunter2-db";
const ENV_LOOKALIKE: &str = "env:not-a-variable";

/// A small config in its tersest form: defaults left out.
const TERSE: &str = r#"[[control.tokens]]
name = "ops"
role = "admin"
sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"

[[http.routes]]
upstream = "api"
host = "API.example.com"

[http.upstreams.api.pools.blue]
backends = ["127.0.0.1:9001"]

[http.upstreams.api.pools.green]
weight = 0
backends = ["127.0.0.1:9101"]

[[postgres.clusters]]
name = "db"
listen = "127.0.0.1:6432"
nodes = [{ addr = "127.0.0.1:5432", role = "primary" }]
users = [{ name = "app", password = "hunter2-db" }, { name = "ro", password_env = "RO_PASSWORD" }]
"#;

/// The same config with comments, other layout, other key order and defaults spelled out.
const VERBOSE: &str = r#"# The same config, written out.
[http.upstreams.api]                      # tables in another order
balance = "least_conn"
max_fails = 1
fail_timeout = "10s"
failure_statuses = [502, 503, 504]
retry_budget = 0.2

[http.upstreams.api.pools.green]
backends = [   "127.0.0.1:9101"   ]
weight = 0

[http.upstreams.api.pools.blue]
weight = 100
backends = [{ state = "enabled", weight = 1, addr = "127.0.0.1:9001" }]

[[http.routes]]
path_prefix = "/"
host = "api.example.com"
read_timeout = "1m"
upstream = "api"
retries = 2
gzip = false

[control]
listen = "127.0.0.1:9901"
history_limit = 50
reload_debounce = "150ms"

[[control.tokens]]
role = "admin"
name = "ops"
sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"

[[postgres.clusters]]
pool_mode = "transaction"
name = "db"
listen = "127.0.0.1:6432"
nodes = [{ role = "primary", addr = "127.0.0.1:5432", priority = 100 }]
users = [
  { name = "app", password = "hunter2-db", client_auth = "scram-sha-256" },
  { name = "ro", password_env = "RO_PASSWORD" },
]
pool = { min_size = 0, idle_timeout = "10m" }
failover = { auto_promote = true }
"#;

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got {errors}"),
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| panic!("serializing for the test: {e}"))
}

/// Panics when `shown` contains any secret of the configs used here.
fn assert_no_secrets(shown: &str) {
    for secret in [
        TOKEN_HASH,
        PASSWORD,
        ENV_LOOKALIKE,
        "not-a-variable",
        "other-secret",
    ] {
        assert!(!shown.contains(secret), "{secret:?} leaked in:\n{shown}");
    }
}

#[test]
fn hash_ignores_comments_layout_key_order_and_spelled_out_defaults() {
    let (terse, verbose) = (parse_ok(TERSE), parse_ok(VERBOSE));
    assert_eq!(terse, verbose);
    let hash = content_hash(&terse);
    assert_eq!(hash, content_hash(&verbose));
    assert_eq!(hash.len(), 64);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{hash}"
    );
    assert_eq!(
        content_hash(&parse_ok(EXAMPLE)),
        content_hash(&parse_ok(EXAMPLE))
    );
}

#[test]
fn hash_changes_with_any_effective_change() {
    let base = content_hash(&parse_ok(TERSE));
    let weight = TERSE.replace("weight = 0", "weight = 1");
    assert_ne!(base, content_hash(&parse_ok(&weight)));
    let password = TERSE.replace(PASSWORD, "other-secret");
    assert_ne!(base, content_hash(&parse_ok(&password)));
    // A password that happens to look like an environment reference is still a value.
    let as_value = TERSE.replace(
        "password_env = \"RO_PASSWORD\"",
        "password = \"env:RO_PASSWORD\"",
    );
    assert_ne!(base, content_hash(&parse_ok(&as_value)));
}

#[test]
fn diff_of_a_weight_change_is_one_change() {
    let old = parse_ok(TERSE);
    let new = parse_ok(&TERSE.replace("weight = 0", "weight = 10"));
    assert_eq!(
        diff(&old, &new),
        vec![Change {
            path: "http.upstreams.api.pools.green.weight".into(),
            op: "changed",
            from: Some(0.into()),
            to: Some(10.into()),
        }]
    );
    assert!(diff(&old, &old).is_empty());
    assert!(
        diff(&old, &parse_ok(VERBOSE)).is_empty(),
        "layout and defaults are no change"
    );
}

#[test]
fn diff_reports_added_and_removed_entries_by_path() {
    let old = parse_ok(TERSE);
    let new = parse_ok(&TERSE.replace(
        "[\"127.0.0.1:9101\"]",
        "[\"127.0.0.1:9101\", \"127.0.0.1:9102\"]",
    ));
    let changes = diff(&old, &new);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].path.as_str(), changes[0].op),
        ("http.upstreams.api.pools.green.backends[1]", "added")
    );
    assert_eq!(
        changes[0].to,
        Some(serde_json::json!({"addr": "127.0.0.1:9102", "weight": 1, "state": "enabled"}))
    );

    let back = diff(&new, &old);
    assert_eq!(
        (back[0].path.as_str(), back[0].op, back[0].to.is_none()),
        (changes[0].path.as_str(), "removed", true)
    );

    let without_green = parse_ok(&TERSE.replace(
        "[http.upstreams.api.pools.green]\nweight = 0\nbackends = [\"127.0.0.1:9101\"]\n",
        "",
    ));
    let removed = diff(&old, &without_green);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(
        (removed[0].path.as_str(), removed[0].op),
        ("http.upstreams.api.pools.green", "removed")
    );
}

#[test]
fn diff_never_shows_secrets() {
    let old = parse_ok(TERSE);
    let new_text = TERSE
        .replace(PASSWORD, "other-secret")
        .replace(
            "password_env = \"RO_PASSWORD\"",
            &format!("password = {ENV_LOOKALIKE:?}"),
        )
        .replace(TOKEN_HASH, &"ab".repeat(32))
        .replace("weight = 0", "weight = 5");
    let new = parse_ok(&new_text);
    let changes = diff(&old, &new);
    assert!(
        changes
            .iter()
            .any(|c| c.path == "http.upstreams.api.pools.green.weight"),
        "{changes:?}"
    );
    let shown = json(&changes);
    assert_no_secrets(&shown);
    assert!(!shown.contains(&"ab".repeat(32)), "{shown}");
    // Whole added sections are redacted too.
    let added = diff(&parse_ok(""), &new);
    assert!(
        added
            .iter()
            .any(|c| c.path == "postgres.clusters[0]" && c.op == "added"),
        "{added:?}"
    );
    assert_no_secrets(&json(&added));
}

#[test]
fn redact_toml_hides_every_secret_value() {
    let shown = redact_toml(TERSE);
    assert_no_secrets(&shown);
    assert_eq!(shown.matches(REDACTED).count(), 2, "{shown}");
    assert!(
        shown.contains("password_env = \"RO_PASSWORD\""),
        "env names stay: {shown}"
    );

    // Secrets in array-of-tables, dotted keys and with comments beside them.
    let text = format!(
        "[[postgres.clusters]]\nname = \"db\"\n[[postgres.clusters.users]]\nname = \"app\"\n\
         password = {PASSWORD:?} # rotate monthly\n[[postgres.clusters.users]]\nname = \"x\"\n\
         password = {ENV_LOOKALIKE:?}\n[control]\ntokens = [{{ name = \"a\", sha256 = {TOKEN_HASH:?} }}]\n"
    );
    let shown = redact_toml(&text);
    assert_no_secrets(&shown);
    assert_eq!(shown.matches(REDACTED).count(), 3, "{shown}");
    assert!(shown.contains("# rotate monthly"), "comments stay: {shown}");

    let shown = redact_toml(&format!("password = {PASSWORD:?}\n[broken"));
    assert_no_secrets(&shown);

    // A webhook's URL, which usually holds its token.
    let hook = "http://deploy.example/hooks/t0k3n-9f2";
    let text = format!("[rollout.webhooks.deploy]\nurl = {hook:?}\n");
    let shown = redact_toml(&text);
    assert!(!shown.contains(hook) && shown.contains(REDACTED), "{shown}");
    let mut v = serde_json::to_value(parse_ok(&text)).unwrap_or_else(|e| panic!("{e}"));
    redact_json(&mut v);
    assert!(!v.to_string().contains(hook), "{v}");
    assert_eq!(restore_redacted(&shown, &text), text);
}

#[test]
fn redact_json_hides_every_secret_value() {
    let text = TERSE.replace(
        "password_env = \"RO_PASSWORD\"",
        &format!("password = {ENV_LOOKALIKE:?}"),
    );
    let mut v = serde_json::to_value(parse_ok(&text)).unwrap_or_else(|e| panic!("{e}"));
    redact_json(&mut v);
    assert_no_secrets(&v.to_string());
    let users = &v["postgres"]["clusters"][0]["users"];
    assert_eq!(
        (&users[0]["password"], &users[1]["password"]),
        (&REDACTED.into(), &REDACTED.into())
    );
    assert_eq!(v["control"]["tokens"][0]["credential"]["sha256"], REDACTED);

    // Environment variable names are not secrets and stay visible.
    let mut v = serde_json::to_value(parse_ok(TERSE)).unwrap_or_else(|e| panic!("{e}"));
    redact_json(&mut v);
    assert_eq!(
        v["postgres"]["clusters"][0]["users"][1]["password"],
        serde_json::json!({"env": "RO_PASSWORD"})
    );
    let mut v = serde_json::to_value(parse_ok(EXAMPLE)).unwrap_or_else(|e| panic!("{e}"));
    redact_json(&mut v);
    assert_eq!(
        v["control"]["tokens"][0]["credential"]["env"],
        "SWITCHYARD_ADMIN_TOKEN"
    );
    assert_eq!(v["control"]["tokens"][1]["credential"]["sha256"], REDACTED);
}

#[test]
fn debug_output_hides_passwords() {
    let shown = format!("{:?}", parse_ok(TERSE));
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(
        shown.contains("Secret(<redacted>)") && shown.contains("Secret(env RO_PASSWORD)"),
        "{shown}"
    );
}

mod store {
    use crate::store::{overlay, strip_local};
    use crate::{StoreConfig, StoreKind};

    const LOCAL_FILE: &str = r#"
[control]
listen = "127.0.0.1:9911"
history_limit = 3

[store]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379"]
"#;

    const SHARED: &str = r#"
[control]
listen = "0.0.0.0:1"
history_limit = 20

[[control.tokens]]
name = "ops"
role = "admin"
env = "OPS_TOKEN"

[store]
kind = "file"
"#;

    #[test]
    fn overlay_takes_node_keys_from_the_local_file_and_the_rest_from_the_shared_one() {
        let text = overlay(SHARED, LOCAL_FILE).unwrap_or_default();
        let config = crate::parse(&text).map_err(|e| e.to_string());
        let config = config.as_ref().map_err(|e| e.as_str());
        let Ok(config) = config else {
            panic!("{config:?}\n{text}");
        };
        assert_eq!(config.control.listen.port(), 9911);
        assert_eq!(config.control.history_limit, 20, "shared, not local");
        assert_eq!(config.control.tokens.len(), 1);
        assert_eq!(config.store.kind, StoreKind::Etcd);
    }

    #[test]
    fn strip_local_keeps_only_what_is_shared() {
        let text = strip_local(LOCAL_FILE).unwrap_or_default();
        assert!(
            !text.contains("store") && !text.contains("listen"),
            "{text}"
        );
        assert!(text.contains("history_limit = 3"), "{text}");
        assert!(strip_local("[control\n").is_err());
        assert!(overlay("x = = 1", LOCAL_FILE).is_err());
    }

    #[test]
    fn store_section_is_validated_with_key_paths() {
        let paths = |text: &str| -> Vec<String> {
            match crate::parse(text) {
                Ok(_) => vec![],
                Err(e) => e.0.into_iter().map(|e| e.path).collect(),
            }
        };
        assert_eq!(
            paths("[store]\nkind = \"file\"\nendpoints = [\"http://a:1\"]\n"),
            ["store.endpoints"]
        );
        assert_eq!(paths("[store]\nkind = \"etcd\"\n"), ["store.endpoints"]);
        assert_eq!(paths("[store]\nkind = \"zk\"\n"), ["store.kind"]);
        assert_eq!(
            paths("[store]\nkind = \"etcd\"\nendpoints = [\"http://a:1\"]\nuser_env = \"U\"\n"),
            ["store"]
        );
        assert_eq!(
            paths("[store]\nkind = \"etcd\"\nendpoints = [\"https://a:1\"]\n"),
            ["store.endpoints[0]"]
        );
        let ok = crate::parse(
            "[store]\nkind = \"etcd\"\nendpoints = [\"http://a:1/\"]\nprefix = \"/sy/\"\nuser_env = \"U\"\npassword_env = \"P\"\n",
        );
        let etcd = ok.ok().and_then(|c| c.store.etcd);
        assert_eq!(etcd.as_ref().map(|e| e.prefix.as_str()), Some("/sy"));
        assert_eq!(
            etcd.map(|e| e.endpoints),
            Some(vec!["http://a:1".to_string()])
        );
        let default = crate::parse("").ok().map(|c| c.store);
        assert_eq!(default, Some(StoreConfig::default()));
    }
}
