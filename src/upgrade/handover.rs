//! The running process's side of an upgrade: it answers `switchyard upgrade` on the upgrade
//! socket, starts the new binary, hands it every listening socket and waits until it serves.
//!
//! The order is Envoy's and nginx's, not pingora's: the new process applies its config,
//! builds its planes and serves on the sockets it was given *before* this process stops
//! accepting, and the two accept from the same kernel queues meanwhile, so no connection is
//! refused. If the new process reports an error, exits, is killed, or is not ready within
//! the timeout, this process never stopped accepting: it carries on and tells the command
//! why. Only once the new one is ready does this one call [`Release`], which stops every
//! accept loop and drains.
//!
//! The new process is started by this one (so under systemd it runs in the service's
//! cgroup) with `run --takeover`, the running config path and log format, and one end of a
//! socketpair as its standard input: that channel has no path anyone else could connect to.

use std::os::fd::{AsFd, OwnedFd};

use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_dbrouter::closing::HandoffSink;

use super::sockets::{borrowed, Listening};
use super::wire::{self, Message, WireError};

/// How long a new process that failed may take to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// What the old process does once the new one serves: stop accepting everywhere and drain,
/// HTTP requests for up to `grace`, Postgres sessions for up to `pg_drain`; sessions that
/// can move go to `sessions` (to the new process) at their next transaction boundary.
pub trait Release: Send + Sync {
    fn release(&self, grace: Duration, pg_drain: Duration, sessions: HandoffSink);
}

/// How long handing one session to the new process may block.
const SESSION_SEND: Duration = Duration::from_secs(1);

/// Sends handed-over Postgres sessions to the new process, one at a time.
fn session_sink(channel: UnixStream) -> HandoffSink {
    let _ = channel.set_write_timeout(Some(SESSION_SEND));
    let channel = Mutex::new(channel);
    Arc::new(move |state: Vec<u8>, socket: OwnedFd| {
        let Ok(state) = String::from_utf8(state) else {
            return false;
        };
        let channel = channel.lock().unwrap_or_else(|p| p.into_inner());
        match wire::send(&channel, &Message::Client { state }, &[socket.as_fd()]) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "upgrade: cannot hand a Postgres session over; it is closed instead");
                false
            }
        }
    })
}

/// Everything a handover needs from the running process.
pub struct Handover {
    pub listening: Arc<Listening>,
    pub config_path: PathBuf,
    pub log_format: &'static str,
    pub upgrade_socket: PathBuf,
    pub release: Arc<dyn Release>,
    /// The Postgres router, for the cancels the new process passes back.
    pub postgres: Option<switchyard_dbrouter::Adopter>,
    /// One upgrade at a time; `true` once this process has handed over.
    pub busy: Mutex<bool>,
}

impl Handover {
    /// Serve one command connection (blocking).
    pub fn answer(&self, cmd: UnixStream) {
        if let Err(e) = wire::check_peer(&cmd) {
            tracing::warn!(error = %e, "upgrade request refused");
            return;
        }
        let _ = cmd.set_read_timeout(Some(Duration::from_secs(10)));
        let request = match wire::recv(&cmd) {
            Ok((m, _)) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable upgrade request");
                return;
            }
        };
        let Message::Upgrade {
            binary,
            grace_ms,
            pg_drain_ms,
            timeout_ms,
        } = request
        else {
            done(
                &cmd,
                false,
                std::process::id(),
                "expected an upgrade request".into(),
            );
            return;
        };
        let mut busy = match self.busy.try_lock() {
            Ok(b) if !*b => b,
            _ => {
                done(
                    &cmd,
                    false,
                    std::process::id(),
                    "an upgrade of this process is already under way or done".into(),
                );
                return;
            }
        };
        let binary = match binary.map_or_else(running_binary, Ok) {
            Ok(b) => b,
            Err(e) => {
                done(
                    &cmd,
                    false,
                    std::process::id(),
                    format!("cannot tell the running binary's path: {e}"),
                );
                return;
            }
        };
        let started = Instant::now();
        match self.hand_over(&cmd, &binary, Duration::from_millis(timeout_ms)) {
            Ok((pid, channel)) => {
                *busy = true;
                let grace = Duration::from_millis(grace_ms);
                let pg_drain = Duration::from_millis(pg_drain_ms);
                let took = started.elapsed();
                tracing::info!(
                    new_pid = pid,
                    took_ms = took.as_millis() as u64,
                    "upgrade: handed over; draining"
                );
                // Told first: once drained (at once, with nothing open) this process exits.
                done(
                    &cmd,
                    true,
                    pid,
                    format!(
                        "pid {pid} serves (handover took {} ms); pid {} stops accepting and drains (HTTP grace {grace:?}, Postgres drain {pg_drain:?})",
                        took.as_millis(),
                        std::process::id()
                    ),
                );
                let _ = wire::send(&channel, &Message::Released, &[]);
                if let (Some(pg), Ok(reader)) = (self.postgres.clone(), channel.try_clone()) {
                    std::thread::spawn(move || cancels_from(reader, pg));
                }
                self.release.release(grace, pg_drain, session_sink(channel));
            }
            Err(why) => {
                tracing::warn!(reason = %why, "upgrade failed; this process goes on serving");
                done(
                    &cmd,
                    false,
                    std::process::id(),
                    format!(
                        "upgrade failed: {why}; pid {} goes on serving",
                        std::process::id()
                    ),
                );
            }
        }
    }

    /// Start the new process and hand over; its pid once it serves, and the channel to it.
    fn hand_over(
        &self,
        cmd: &UnixStream,
        binary: &std::path::Path,
        timeout: Duration,
    ) -> Result<(u32, UnixStream), String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        // Absolute (symlinks kept: a Kubernetes config map swaps a link under the file).
        let config =
            std::path::absolute(&self.config_path).unwrap_or_else(|_| self.config_path.clone());
        let mut child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--log-format")
            .arg(self.log_format)
            .arg("--upgrade-socket")
            .arg(&self.upgrade_socket)
            .arg("--takeover")
            .env_remove("SWITCHYARD_CONFIG")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = child.id();
        progress(cmd, format!("started pid {pid} ({})", binary.display()));
        let offer = Message::Offer {
            old_pid: std::process::id(),
            sockets: self
                .listening
                .entries()
                .iter()
                .map(|e| e.info.clone())
                .collect(),
        };
        if let Err(e) = wire::send(&ours, &offer, &borrowed(&self.listening)) {
            return Err(fail(
                &mut child,
                format!("handing the sockets to pid {pid}: {e}"),
            ));
        }
        progress(
            cmd,
            format!(
                "handed {} listening sockets to pid {pid}",
                self.listening.entries().len()
            ),
        );
        let _ = ours.set_read_timeout(Some(timeout));
        match wire::recv(&ours) {
            Ok((Message::Ready { .. }, _)) => {
                // Not waited for: it is the server now, and outlives this process.
                drop(child);
                Ok((pid, ours))
            }
            Ok((Message::Failed { error }, _)) => Err(fail(&mut child, error)),
            Ok((other, _)) => Err(fail(&mut child, format!("unexpected answer {other:?}"))),
            Err(WireError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(fail(
                    &mut child,
                    format!("pid {pid} was not ready within {timeout:?}"),
                ))
            }
            Err(e) => Err(fail(
                &mut child,
                format!("pid {pid} did not become ready ({e})"),
            )),
        }
    }
}

/// The path of the running executable. Once a package replaced the file, Linux names it
/// `… (deleted)`: the new file at the same path is the one to start, which is the upgrade.
fn running_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Serve the cancels the new process passes back (for sessions still here) until it closes
/// the channel or this process exits.
fn cancels_from(channel: UnixStream, pg: switchyard_dbrouter::Adopter) {
    let _ = channel.set_read_timeout(None);
    while let Ok((msg, _)) = wire::recv(&channel) {
        if let Message::Cancel {
            cluster,
            pid,
            secret,
        } = msg
        {
            pg.cancel(&cluster, pid, secret);
        }
    }
}

/// End a new process that will not serve, and say how it ended.
fn fail(child: &mut Child, why: String) -> String {
    let pid = child.id();
    let deadline = Instant::now() + EXIT_WAIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    let ended = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("ended ({s})"),
        },
        None => "could not be waited for".into(),
    };
    format!("{why} (new process pid {pid} {ended})")
}

fn progress(cmd: &UnixStream, text: String) {
    let _ = wire::send(cmd, &Message::Progress { text }, &[]);
}

/// The outcome; `pid` serves now.
fn done(cmd: &UnixStream, ok: bool, pid: u32, text: String) {
    let _ = wire::send(cmd, &Message::Done { ok, pid, text }, &[]);
}

/// Accept `switchyard upgrade` connections on `listener` until the process stops; each is
/// answered on a blocking thread.
pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    handover: Arc<Handover>,
    stopping: crate::drain::Stopping,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "upgrade socket");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = stopping.stopped() => break,
            a = listener.accept() => a,
        };
        let conn = match accepted.and_then(|(s, _)| s.into_std()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "upgrade socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let h = handover.clone();
        tokio::task::spawn_blocking(move || {
            if conn.set_nonblocking(false).is_ok() {
                h.answer(conn);
            }
        });
    }
}
