//! The new process's side of an upgrade (`run --takeover`): its standard input is a
//! socketpair to the old process, which sends an [`Message::Offer`] with every listening
//! socket. The new process serves on them and answers [`Message::Ready`] once it does, or
//! [`Message::Failed`] with the error (a config error keeps its key path) before it exits,
//! and the old process goes on serving. After `Ready` the old one answers
//! [`Message::Released`] once it no longer accepts.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Context;

use super::sockets::Inherited;
use super::wire::{self, Message};

/// How long the old process may take to send its sockets.
const OFFER_WAIT: Duration = Duration::from_secs(10);

/// `SWITCHYARD_UPGRADE_PAUSE_MS`: hold the taken sockets this long before building
/// anything, to rehearse a new process that dies halfway through a handover (the tests kill
/// it there).
fn rehearsal_pause() {
    let pause = std::env::var("SWITCHYARD_UPGRADE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = pause {
        tracing::warn!(
            ms,
            "upgrade: pausing with the taken sockets (SWITCHYARD_UPGRADE_PAUSE_MS)"
        );
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// The channel to the old process, until this process serves.
pub struct Takeover {
    channel: UnixStream,
    old_pid: u32,
}

impl Takeover {
    /// Read the old process's offer from standard input.
    pub fn receive() -> anyhow::Result<(Takeover, Inherited)> {
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("--takeover: standard input")?;
        let channel = UnixStream::from(fd);
        wire::check_peer(&channel)
            .context("--takeover: standard input is not a same-user socket")?;
        channel.set_read_timeout(Some(OFFER_WAIT))?;
        let (msg, fds) =
            wire::recv(&channel).context("--takeover: reading the old process's offer")?;
        let Message::Offer { old_pid, sockets } = msg else {
            anyhow::bail!("--takeover: expected the listening sockets, got {msg:?}");
        };
        anyhow::ensure!(
            sockets.len() == fds.len(),
            "--takeover: {} sockets described, {} received",
            sockets.len(),
            fds.len()
        );
        tracing::info!(
            old_pid,
            sockets = fds.len(),
            "upgrade: took the listening sockets"
        );
        rehearsal_pause();
        Ok((Takeover { channel, old_pid }, Inherited::new(sockets, fds)))
    }

    /// Tell the old process this one serves; once it has stopped accepting, take in the
    /// Postgres sessions it hands over (into `sessions`) until it is gone.
    pub fn ready(
        self,
        sessions: Option<switchyard_dbrouter::Adopter>,
        cancels: &switchyard_dbrouter::cancel::CancelRegistry,
    ) {
        let pid = std::process::id();
        if let Err(e) = wire::send(&self.channel, &Message::Ready { pid }, &[]) {
            tracing::warn!(error = %e, "upgrade: cannot tell the old process this one serves");
            return;
        }
        // Cancels for the old process's sessions (still draining there) reach this
        // process's listeners from now on: pass them back (after `Ready`, which the old
        // process reads first).
        if let Ok(back) = self.channel.try_clone() {
            let back = std::sync::Mutex::new(back);
            cancels.forward_unknown_to(std::sync::Arc::new(move |cluster: &str, pid, secret| {
                let msg = Message::Cancel {
                    cluster: cluster.to_string(),
                    pid,
                    secret,
                };
                let back = back.lock().unwrap_or_else(|p| p.into_inner());
                let _ = wire::send(&back, &msg, &[]);
            }));
        }
        let _ = self.channel.set_read_timeout(Some(Duration::from_secs(30)));
        match wire::recv(&self.channel) {
            Ok((Message::Released, _)) => {
                tracing::info!(
                    old_pid = self.old_pid,
                    "upgrade: the old process stopped accepting"
                )
            }
            Ok((other, _)) => tracing::warn!(?other, "upgrade: unexpected message"),
            Err(e) => {
                tracing::warn!(error = %e, "upgrade: no word from the old process");
                return;
            }
        }
        let _ = self.channel.set_read_timeout(None);
        let mut taken = 0u64;
        loop {
            match wire::recv(&self.channel) {
                Ok((Message::Client { state }, mut fds)) if fds.len() == 1 => {
                    let Some(adopter) = &sessions else {
                        tracing::warn!("upgrade: a Postgres session handed over, and no Postgres listener here");
                        continue;
                    };
                    if let Some(fd) = fds.pop() {
                        match adopter.adopt(state.as_bytes(), fd) {
                            Ok(()) => taken += 1,
                            Err(e) => {
                                tracing::warn!(error = %e, "upgrade: handed-over session refused")
                            }
                        }
                    }
                }
                Ok((other, _)) => tracing::warn!(?other, "upgrade: unexpected message"),
                Err(_) => break,
            }
        }
        tracing::info!(
            old_pid = self.old_pid,
            sessions = taken,
            "upgrade: the old process is gone; Postgres sessions taken over"
        );
    }

    /// Tell the old process why this one cannot serve.
    pub fn failed(self, error: &anyhow::Error) {
        let _ = wire::send(
            &self.channel,
            &Message::Failed {
                error: format!("{error:#}"),
            },
            &[],
        );
    }
}
