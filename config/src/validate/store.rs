//! Validation of `[store]`: the file (default) or a shared document in etcd.

use std::path::PathBuf;
use std::time::Duration;

use super::fields::Ctx;
use crate::error::KeyPath;
use crate::model::{EtcdStore, EtcdTls, StateFile, StoreConfig, StoreKind, TlsFiles};
use crate::raw::RawStore;
use crate::source::Node;

pub(super) fn validate(cx: &mut Ctx<'_, '_>, node: Option<Node<'_>>) -> Option<StoreConfig> {
    let path = KeyPath::root().key("store");
    let raw: RawStore = match node {
        Some(node) => cx.src.unit(node, &path, &mut cx.errors)?,
        None => RawStore::default(),
    };
    let kind = cx.choice(
        raw.kind.clone(),
        &path.key("kind"),
        Some(StoreKind::File),
        &[("file", StoreKind::File), ("etcd", StoreKind::Etcd)],
    )?;
    let state_file = match raw.state_file.clone() {
        None => Some(StateFile::BesideConfig),
        Some(p) if p == "off" => Some(StateFile::Off),
        Some(p) => cx
            .required(Some(p), &path.key("state_file"))
            .map(|p| StateFile::Path(PathBuf::from(p))),
    };
    let etcd = match kind {
        StoreKind::File => {
            let etcd_only = [
                ("endpoints", raw.endpoints.is_some()),
                ("prefix", raw.prefix.is_some()),
                ("node", raw.node.is_some()),
                ("timeout", raw.timeout.is_some()),
                ("lease_ttl", raw.lease_ttl.is_some()),
                ("user_env", raw.user_env.is_some()),
                ("password_env", raw.password_env.is_some()),
                ("tls", raw.tls.is_some()),
            ];
            for (key, set) in etcd_only {
                if set {
                    cx.err(&path.key(key), "only with kind = \"etcd\"");
                }
            }
            Some(None)
        }
        StoreKind::Etcd => etcd(cx, raw, &path).map(Some),
    };
    Some(StoreConfig {
        kind,
        state_file: state_file?,
        etcd: etcd?,
    })
}

fn etcd(cx: &mut Ctx<'_, '_>, raw: RawStore, path: &KeyPath) -> Option<EtcdStore> {
    let mut ok = true;
    let endpoints = raw.endpoints.unwrap_or_default();
    if endpoints.is_empty() {
        cx.err(
            &path.key("endpoints"),
            "at least one etcd endpoint is needed (\"http://host:2379\")",
        );
        ok = false;
    }
    let tls_wanted = raw.tls.is_some();
    for (i, e) in endpoints.iter().enumerate() {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .unwrap_or("");
        if rest.is_empty() || rest.trim_end_matches('/').contains('/') {
            cx.err(
                &path.key("endpoints").index(i),
                format!("{e:?} is not an http://host:port or https://host:port endpoint"),
            );
            ok = false;
        } else if e.starts_with("https://") != tls_wanted {
            cx.err(
                &path.key("endpoints").index(i),
                "use https:// endpoints exactly when [store.tls] is set",
            );
            ok = false;
        }
    }
    let prefix = raw.prefix.unwrap_or_else(|| "/switchyard".into());
    if !prefix.starts_with('/') || prefix.trim_end_matches('/').is_empty() {
        cx.err(
            &path.key("prefix"),
            format!("{prefix:?} must start with \"/\" and name a key prefix"),
        );
        ok = false;
    }
    let node = match raw.node {
        None => Some(None),
        Some(n) => cx.name(Some(n), &path.key("node")).map(Some),
    };
    let timeout = cx.duration(
        raw.timeout,
        &path.key("timeout"),
        Duration::from_secs(2),
        false,
    );
    let lease_ttl = cx.duration(
        raw.lease_ttl,
        &path.key("lease_ttl"),
        Duration::from_secs(10),
        false,
    );
    if lease_ttl.is_some_and(|t| t < Duration::from_secs(2)) {
        cx.err(&path.key("lease_ttl"), "must be at least 2s (etcd's floor)");
        ok = false;
    }
    let user_env = raw.user_env.map(|e| cx.env_name(e, &path.key("user_env")));
    let password_env = raw
        .password_env
        .map(|e| cx.env_name(e, &path.key("password_env")));
    if user_env.is_some() != password_env.is_some() {
        cx.err(path, "set both user_env and password_env, or neither");
        ok = false;
    }
    let tls = match raw.tls {
        None => Some(None),
        Some(t) => {
            let tp = path.key("tls");
            let ca = cx.required(t.ca, &tp.key("ca"));
            let client = match (t.cert, t.key) {
                (None, None) => Some(None),
                (Some(c), Some(k)) => Some(Some(TlsFiles {
                    cert: PathBuf::from(c),
                    key: PathBuf::from(k),
                })),
                _ => {
                    cx.err(
                        &tp,
                        "set both cert and key for a client certificate, or neither",
                    );
                    None
                }
            };
            match (ca, client) {
                (Some(ca), Some(client)) => Some(Some(EtcdTls {
                    ca: PathBuf::from(ca),
                    client,
                })),
                _ => None,
            }
        }
    };
    let (user_env, password_env) = match (user_env, password_env) {
        (Some(Some(u)), Some(Some(p))) => (Some(u), Some(p)),
        (None, None) => (None, None),
        _ => return None,
    };
    let (node, timeout, lease_ttl, tls) = (node?, timeout?, lease_ttl?, tls?);
    ok.then(|| EtcdStore {
        endpoints: endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect(),
        prefix: prefix.trim_end_matches('/').to_string(),
        node,
        timeout,
        lease_ttl,
        user_env,
        password_env,
        tls,
    })
}
