//! Zero-downtime binary upgrade: `switchyard upgrade` makes the running process start a new
//! binary on the running config and hand it every listening socket (HTTP, Postgres, control
//! API, the upgrade socket itself) with `SCM_RIGHTS`; the new one serves on them and says so
//! before the old one stops accepting and drains.
//!
//! - [`wire`]: the messages and their framing (magic, version, `SCM_RIGHTS`, peer check).
//! - [`sockets`]: every listening socket of the process, bound here or taken over.
//! - [`handover`]: the running process's side; [`takeover`]: the new process's side.
//! - [`command`]: the `switchyard upgrade` command.
//!
//! The sequence and why it is not pingora's own `--upgrade` are in `handover` and in
//! `switchyard_proxy::takeover`.

pub mod command;
pub mod handover;
pub mod sockets;
pub mod takeover;
pub mod wire;

use std::path::{Path, PathBuf};

/// The upgrade socket when none is given: `$RUNTIME_DIRECTORY/upgrade.sock` under systemd
/// (`RuntimeDirectory=switchyard`), else `.<config file name>.upgrade.sock` beside the
/// config file, so that each config has its own and it goes when its directory does (the
/// watcher looks only at the config file's own name there).
pub fn default_socket(config: &Path) -> PathBuf {
    if let Some(dirs) = std::env::var_os("RUNTIME_DIRECTORY") {
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return PathBuf::from(first).join("upgrade.sock");
    }
    let name = config
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "switchyard".into());
    let dir = std::path::absolute(config)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(format!(".{name}.upgrade.sock"))
}
