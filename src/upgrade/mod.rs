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

use std::path::PathBuf;

/// The upgrade socket when none is given: `$RUNTIME_DIRECTORY/upgrade.sock` under systemd
/// (`RuntimeDirectory=switchyard`), else one per control API port in the temporary
/// directory, so that two instances on one machine do not share it.
pub fn default_socket(control_port: u16) -> PathBuf {
    match std::env::var_os("RUNTIME_DIRECTORY") {
        Some(dirs) => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            PathBuf::from(first).join("upgrade.sock")
        }
        None => std::env::temp_dir().join(format!(
            "switchyard-{}-{control_port}.upgrade.sock",
            rustix::process::getuid().as_raw()
        )),
    }
}
