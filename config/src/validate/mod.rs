//! Validation: raw TOML units in, a [`Config`] out, or every problem at once.

mod access_log;
mod fields;
mod http;
mod postgres;
mod rollout;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ConfigErrors, KeyPath};
use crate::model::{Config, ControlConfig, Role, TokenConfig, TokenCredential};
use crate::raw::RawControl;
use crate::source::{Node, Source};

pub(crate) use fields::tls_files;
use fields::Ctx;
pub use fields::{parse_address, MAX_BACKENDS};

/// Largest config text accepted (a config with 10,000 backends is about 600 KB).
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Parse and validate a config from TOML text.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigErrors::single(
            "(file)",
            format!(
                "config is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                text.len()
            ),
        ));
    }
    let src = Source::parse(text)?;
    let mut cx = Ctx::new(&src);
    let root = KeyPath::root();
    let mut control_node = None;
    let mut http_node = None;
    let mut postgres_node = None;
    let mut store_node = None;
    let mut rollout_node = None;
    for (key, _, node) in src.root().entries().unwrap_or_default() {
        match key {
            "control" => control_node = Some(node),
            "http" => http_node = Some(node),
            "postgres" => postgres_node = Some(node),
            "store" => store_node = Some(node),
            "rollout" => rollout_node = Some(node),
            other => cx.err(
                &root.key(other.to_string()),
                "unknown key: expected control, http or postgres (or store, rollout)",
            ),
        }
    }
    let control = validate_control(&mut cx, control_node);
    let http = http::validate(&mut cx, http_node);
    let postgres = postgres::validate(&mut cx, postgres_node);
    let store = store::validate(&mut cx, store_node);
    let rollout = rollout::validate(&mut cx, rollout_node);
    check_listen_conflicts(&mut cx);
    let mut errors = cx.errors;
    if errors.is_empty() {
        if let (Some(control), Some(http), Some(postgres), Some(store), Some(rollout)) =
            (control, http, postgres, store, rollout)
        {
            return Ok(Config {
                control,
                http,
                postgres,
                store,
                rollout,
            });
        }
        // Every `None` above records an error, so this is unreachable in practice; say so
        // rather than panic.
        return Err(ConfigErrors::single("(root)", "config is incomplete"));
    }
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errors.dedup();
    Err(ConfigErrors(errors))
}

fn validate_control(cx: &mut Ctx<'_, '_>, node: Option<Node<'_>>) -> Option<ControlConfig> {
    let path = KeyPath::root().key("control");
    let raw: RawControl = match node {
        Some(node) => cx.src.unit(node, &path, &mut cx.errors)?,
        None => RawControl::default(),
    };
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 9901));
    let listen = cx.listen_addr(raw.listen, &path.key("listen"), Some(default_listen));
    let audit_log = match raw.audit_log {
        Some(p) => cx
            .required(Some(p), &path.key("audit_log"))
            .map(PathBuf::from),
        // Standard output: a file beside the config would be written in the directory the
        // reload watcher watches, which may be read-only (a ConfigMap) besides.
        None => Some(PathBuf::from("-")),
    };
    let tls = match raw.tls {
        Some(t) => tls_files(cx, t, &path.key("tls")),
        None => Some(None),
    };
    let history_limit = cx.int(raw.history_limit, &path.key("history_limit"), 50, 1, 1000);
    let reload_check_interval = cx.duration(
        raw.reload_check_interval,
        &path.key("reload_check_interval"),
        Duration::from_secs(10),
        false,
    );
    let reload_debounce = cx.duration(
        raw.reload_debounce,
        &path.key("reload_debounce"),
        Duration::from_millis(150),
        true,
    );
    let mut tokens = Some(Vec::new());
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, t) in raw.tokens.unwrap_or_default().into_iter().enumerate() {
        let tp = path.key("tokens").index(i);
        let name = cx.name(t.name, &tp.key("name"));
        if let Some(n) = &name {
            if let Some(first) = names.insert(n.clone(), i) {
                cx.err(
                    &tp.key("name"),
                    format!("duplicate token name {n:?} (also control.tokens[{first}])"),
                );
            }
        }
        let role = cx.choice(
            t.role,
            &tp.key("role"),
            None,
            &[
                ("viewer", Role::Viewer),
                ("operator", Role::Operator),
                ("admin", Role::Admin),
            ],
        );
        let credential = match (t.sha256, t.sha256_env, t.env) {
            (Some(h), None, None) => {
                sha256_hex(cx, &h, &tp.key("sha256")).map(TokenCredential::Sha256)
            }
            (None, Some(e), None) => cx
                .env_name(e, &tp.key("sha256_env"))
                .map(TokenCredential::Sha256Env),
            (None, None, Some(e)) => cx.env_name(e, &tp.key("env")).map(TokenCredential::Env),
            (None, None, None) => {
                cx.err(
                    &tp,
                    "token has no hash: set sha256 = \"<hex sha-256 of the token>\", sha256_env = \"VAR\" or env = \"VAR\" (plain-text tokens are not accepted)",
                );
                None
            }
            _ => {
                cx.err(&tp, "set only one of sha256, sha256_env and env");
                None
            }
        };
        match (name, role, credential, tokens.as_mut()) {
            (Some(name), Some(role), Some(credential), Some(list)) => list.push(TokenConfig {
                name,
                role,
                credential,
            }),
            _ => tokens = None,
        }
    }
    Some(ControlConfig {
        listen: listen?,
        audit_log: audit_log?,
        tokens: tokens?,
        tls: tls?,
        history_limit: history_limit?,
        reload_check_interval: reload_check_interval?,
        reload_debounce: reload_debounce?,
    })
}

fn sha256_hex(cx: &mut Ctx<'_, '_>, s: &str, path: &KeyPath) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() == 64 && hex::decode_to_slice(s, &mut out).is_ok() {
        return Some(out);
    }
    cx.err(
        path,
        "expected 64 hex digits (e.g. from `printf %s \"$TOKEN\" | sha256sum` or `switchyard hash-token`)",
    );
    None
}

/// Every listening address in the file must be distinct (port 0 excepted: the OS picks).
///
/// Uses every address that parsed, not only those of valid sections, so a conflict is
/// reported together with the file's other problems.
fn check_listen_conflicts(cx: &mut Ctx<'_, '_>) {
    let mut seen: HashMap<SocketAddr, KeyPath> = HashMap::new();
    for (addr, path) in std::mem::take(&mut cx.listens) {
        if addr.port() == 0 {
            continue;
        }
        if let Some(first) = seen.get(&addr) {
            let msg = format!("listen address {addr} is already used by {first}");
            cx.err(&path, msg);
        } else {
            seen.insert(addr, path);
        }
    }
}

#[cfg(test)]
mod tests;
