//! `switchyard upgrade`: ask the running process, over its upgrade socket, to start a new
//! binary on the running config and hand over to it; print each step and the outcome.
//!
//! Exit status 0 when the new process serves, 1 when the upgrade failed (the running
//! process goes on serving, and the message says why), 2 when the running process could not
//! be asked at all.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::wire::{self, Message};

/// What `switchyard upgrade` was asked to do.
pub struct Request {
    pub socket: PathBuf,
    pub binary: Option<PathBuf>,
    pub grace: Duration,
    pub pg_drain: Duration,
    pub timeout: Duration,
}

/// Run the command.
pub fn run(req: Request) -> ExitCode {
    let sock = match UnixStream::connect(&req.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "switchyard upgrade: cannot reach the running process at {}: {e}",
                req.socket.display()
            );
            return ExitCode::from(2);
        }
    };
    if let Err(e) = wire::check_peer(&sock) {
        eprintln!("switchyard upgrade: {}: {e}", req.socket.display());
        return ExitCode::from(2);
    }
    let binary = req.binary.map(|b| std::fs::canonicalize(&b).unwrap_or(b));
    let ask = Message::Upgrade {
        binary,
        grace_ms: millis(req.grace),
        pg_drain_ms: millis(req.pg_drain),
        timeout_ms: millis(req.timeout),
    };
    if let Err(e) = wire::send(&sock, &ask, &[]) {
        eprintln!("switchyard upgrade: sending the request: {e}");
        return ExitCode::from(2);
    }
    // The running process answers within the new process's timeout and its exit wait.
    let _ = sock.set_read_timeout(Some(req.timeout + Duration::from_secs(30)));
    loop {
        match wire::recv(&sock) {
            Ok((Message::Progress { text }, _)) => println!("{text}"),
            Ok((
                Message::Done {
                    ok: true,
                    pid,
                    text,
                },
                _,
            )) => {
                println!("{text}");
                println!("upgraded: pid {pid}");
                return ExitCode::SUCCESS;
            }
            Ok((
                Message::Done {
                    ok: false, text, ..
                },
                _,
            )) => {
                eprintln!("switchyard upgrade: {text}");
                return ExitCode::from(1);
            }
            Ok((other, _)) => {
                eprintln!("switchyard upgrade: unexpected answer {other:?}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("switchyard upgrade: no answer from the running process: {e}");
                return ExitCode::from(2);
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
