//! The configs the end-to-end tests run with, and the tokens they call the API with.
//!
//! [`Conf`] renders a small but complete config: three tokens (admin, operator, viewer, by
//! SHA-256), one upstream `api` whose single blue backend is the knob tests turn to make a
//! new version, a route to it, and a Postgres cluster with a plain-text password so that
//! redaction has something to hide.

use sha2::{Digest, Sha256};

/// Bearer tokens the config accepts, by role.
pub const ADMIN: &str = "e2e-admin-token-3f9a";
pub const OPERATOR: &str = "e2e-operator-token-71c2";
pub const VIEWER: &str = "e2e-viewer-token-0d4e";

/// The Postgres password in every test config: it must never come back out of the API.
pub const PG_PASSWORD: &str = "pg-pass-hunter2-e2e";

/// The audit log's file name, in the config directory.
pub const AUDIT_LOG: &str = "audit.jsonl";

/// Hex SHA-256 of a token, as `[[control.tokens]] sha256` wants it.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Every secret value the test configs contain (the password and the token hashes).
pub fn secrets() -> Vec<String> {
    vec![
        PG_PASSWORD.to_string(),
        sha256_hex(ADMIN),
        sha256_hex(OPERATOR),
        sha256_hex(VIEWER),
    ]
}

/// A test config, rendered by [`Conf::render`].
#[derive(Debug, Clone)]
pub struct Conf {
    /// Control API port.
    pub port: u16,
    /// Port of the single blue backend of upstream `api` (nothing listens there: the HTTP
    /// plane does not serve yet, and a config is applied without contacting backends).
    pub backend: u16,
    pub check_interval: &'static str,
    pub debounce: &'static str,
}

impl Conf {
    pub fn new(port: u16) -> Self {
        Conf {
            port,
            backend: 9001,
            check_interval: "10s",
            debounce: "50ms",
        }
    }

    pub fn backend(mut self, port: u16) -> Self {
        self.backend = port;
        self
    }

    /// The safety-net re-read period (`control.reload_check_interval`).
    pub fn check_interval(mut self, interval: &'static str) -> Self {
        self.check_interval = interval;
        self
    }

    pub fn render(&self) -> String {
        let Conf {
            port,
            backend,
            check_interval,
            debounce,
        } = self;
        format!(
            r#"# Switchyard end-to-end test config.
{control}
[http.upstreams.api]
balance = "least_conn"

[http.upstreams.api.pools.blue]
backends = ["127.0.0.1:{backend}"]

[[http.routes]]
host = "*"
path_prefix = "/"
upstream = "api"

[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:0"
nodes = [{{ addr = "127.0.0.1:5432", role = "primary" }}]
users = [{{ name = "app", password = "{PG_PASSWORD}" }}]
"#,
            control = control_section(*port, check_interval, debounce),
        )
    }
}

/// The `[control]` table on `port` with the three test tokens (admin, operator, viewer).
pub fn control_section(port: u16, check_interval: &str, debounce: &str) -> String {
    format!(
        r#"[control]
listen = "127.0.0.1:{port}"
audit_log = "{AUDIT_LOG}"
history_limit = 20
reload_check_interval = "{check_interval}"
reload_debounce = "{debounce}"

[[control.tokens]]
name = "admin"
role = "admin"
sha256 = "{admin}"

[[control.tokens]]
name = "operator"
role = "operator"
sha256 = "{operator}"

[[control.tokens]]
name = "viewer"
role = "viewer"
sha256 = "{viewer}"
"#,
        admin = sha256_hex(ADMIN),
        operator = sha256_hex(OPERATOR),
        viewer = sha256_hex(VIEWER),
    )
}

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
