//! Validation of `[rollout]`: the replace commands and webhooks a rolling release may use,
//! each under a name (`[rollout.commands.restart] argv = ["/usr/local/bin/restart"]`).
//!
//! A command is a program and its arguments, run without a shell: the batch's addresses
//! reach it in its environment, never in its command line, so no address can become code.

use std::collections::BTreeMap;
use std::time::Duration;

use super::fields::Ctx;
use crate::error::KeyPath;
use crate::model::{RolloutCommand, RolloutConfig, RolloutWebhook};
use crate::raw::RawRollout;
use crate::source::Node;

/// Longest timeout of a replace command or webhook.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn validate(cx: &mut Ctx<'_, '_>, node: Option<Node<'_>>) -> Option<RolloutConfig> {
    let path = KeyPath::root().key("rollout");
    let raw: RawRollout = match node {
        Some(node) => cx.src.unit(node, &path, &mut cx.errors)?,
        None => RawRollout::default(),
    };
    let mut ok = true;
    let mut commands = BTreeMap::new();
    for (name, c) in raw.commands.unwrap_or_default() {
        let cp = path.key("commands").key(name.clone());
        let name = cx.name(Some(name), &cp);
        let argv = c.argv.unwrap_or_default();
        if argv.is_empty() || argv[0].is_empty() {
            cx.err(
                &cp.key("argv"),
                "a command needs a program: argv = [\"/usr/local/bin/replace\", \"--flag\"]",
            );
            ok = false;
        }
        if argv.iter().any(|a| a.contains('\0')) {
            cx.err(&cp.key("argv"), "an argument contains a NUL byte");
            ok = false;
        }
        let timeout = timeout(cx, c.timeout, &cp.key("timeout"));
        match (name, timeout) {
            (Some(n), Some(timeout)) => {
                commands.insert(n, RolloutCommand { argv, timeout });
            }
            _ => ok = false,
        }
    }
    let mut webhooks = BTreeMap::new();
    for (name, w) in raw.webhooks.unwrap_or_default() {
        let wp = path.key("webhooks").key(name.clone());
        let name = cx.name(Some(name), &wp);
        let url = cx.required(w.url, &wp.key("url"));
        let url = match url {
            Some(u) if u.starts_with("http://") && u.len() > "http://".len() => Some(u),
            Some(u) => {
                cx.err(
                    &wp.key("url"),
                    format!("{u:?} is not an http://host:port/path URL"),
                );
                None
            }
            None => None,
        };
        let timeout = timeout(cx, w.timeout, &wp.key("timeout"));
        match (name, url, timeout) {
            (Some(n), Some(url), Some(timeout)) => {
                webhooks.insert(n, RolloutWebhook { url, timeout });
            }
            _ => ok = false,
        }
    }
    ok.then_some(RolloutConfig { commands, webhooks })
}

/// A timeout above zero and at most [`MAX_TIMEOUT`] (5 minutes when not given).
fn timeout(cx: &mut Ctx<'_, '_>, raw: Option<String>, path: &KeyPath) -> Option<Duration> {
    let d = cx.duration(raw, path, Duration::from_secs(300), false)?;
    if d > MAX_TIMEOUT {
        cx.err(path, "at most 1h");
        return None;
    }
    Some(d)
}
