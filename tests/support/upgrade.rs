//! Binary upgrades in the end-to-end tests: [`Upgrades`] runs `switchyard upgrade` against a
//! running process and kills every process the upgrades started when dropped;
//! [`KeepAliveLoad`] is a steady stream of HTTP/1.1 requests on kept-alive connections that
//! reopens a connection only when the server says `Connection: close`, and counts every
//! failed request and refused connection (no retries: a request the server drops is a
//! failure).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::conn::Conn;
use super::{eventually, BIN};

/// The pause between two requests of one client.
const PACE: Duration = Duration::from_millis(2);

/// What one `switchyard upgrade` run printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    /// The process that serves afterwards, when it succeeded.
    pub pid: Option<u32>,
    /// How long the command took.
    pub took: Duration,
}

/// The processes upgrades started; each is killed when this is dropped.
#[derive(Default)]
pub struct Upgrades {
    pids: Mutex<Vec<u32>>,
}

impl Upgrades {
    /// `switchyard upgrade --config <config> <extra…>`.
    pub fn run(&self, config: &Path, extra: &[&str]) -> anyhow::Result<Outcome> {
        let start = Instant::now();
        let out = Command::new(BIN)
            .arg("upgrade")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env_remove("SWITCHYARD_UPGRADE_SOCKET")
            .output()
            .context("running switchyard upgrade")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // Every process it started, killed at the end whatever happened to it.
        for pid in pids_after(&stdout, "started pid ") {
            self.track(pid);
        }
        let pid = pids_after(&stdout, "upgraded: pid ").into_iter().next();
        Ok(Outcome {
            ok: out.status.success(),
            stdout,
            stderr,
            pid,
            took: start.elapsed(),
        })
    }

    /// Kill `pid` when this is dropped.
    pub fn track(&self, pid: u32) {
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
    }
}

impl Drop for Upgrades {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn pids_after(text: &str, prefix: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The upgrade socket a process logged at start (`upgrade_socket=…`), for a command that
/// cannot read it from the config (a broken one).
pub fn socket_in_log(stderr: &str) -> Option<String> {
    let rest = stderr.split("upgrade_socket=").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Whether `pid` runs (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Wait until `pid` has exited.
pub fn wait_gone(pid: u32, within: Duration) -> anyhow::Result<()> {
    eventually(within, || {
        anyhow::ensure!(!alive(pid), "pid {pid} still runs");
        Ok(())
    })
}

/// What a [`KeepAliveLoad`] saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    /// Requests that got no 200 (an error, a close before the response, another status).
    pub failed: Vec<String>,
    /// Connections refused.
    pub refused: u64,
    /// Connections opened after a `Connection: close`.
    pub reopened: u64,
    /// `(sent, latency)` of every answered request.
    pub latencies: Vec<(Instant, Duration)>,
}

impl Tally {
    /// Fail, naming a few, unless every request got a 200 and no connection was refused.
    pub fn ensure_clean(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.failed.is_empty() && self.refused == 0,
            "{} failed, {} refused of {} requests; e.g. {:?}",
            self.failed.len(),
            self.refused,
            self.ok,
            &self.failed[..self.failed.len().min(5)]
        );
        Ok(())
    }
}

/// Clients sending `GET path` on kept-alive connections until finished.
pub struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Tally>>,
}

impl KeepAliveLoad {
    pub fn start(addr: SocketAddr, clients: usize, path: &str) -> KeepAliveLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let request = format!("GET {path} HTTP/1.1\r\nHost: upgrade.test\r\n\r\n").into_bytes();
        let clients = (0..clients)
            .map(|_| {
                let (stop, done, request) = (stop.clone(), done.clone(), request.clone());
                std::thread::spawn(move || client(addr, &request, &stop, &done))
            })
            .collect();
        KeepAliveLoad {
            stop,
            done,
            clients,
        }
    }

    /// Wait until `more` further requests are done.
    pub fn wait_for(&self, more: u64, within: Duration) -> anyhow::Result<()> {
        super::load::wait_for_more(&self.done, more, within)
    }

    /// Stop the clients and add up what they saw.
    pub fn finish(mut self) -> anyhow::Result<Tally> {
        self.stop.store(true, SeqCst);
        let mut all = Tally::default();
        for c in std::mem::take(&mut self.clients) {
            let t = c.join().map_err(|_| anyhow!("a load client panicked"))?;
            all.ok += t.ok;
            all.failed.extend(t.failed);
            all.refused += t.refused;
            all.reopened += t.reopened;
            all.latencies.extend(t.latencies);
        }
        all.latencies.sort_by_key(|(sent, _)| *sent);
        Ok(all)
    }
}

impl Drop for KeepAliveLoad {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

fn client(addr: SocketAddr, request: &[u8], stop: &AtomicBool, done: &AtomicU64) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Conn> = None;
    while !stop.load(SeqCst) {
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(addr) {
                Ok(c) => c,
                Err(e) => {
                    let refused = e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
                    });
                    if refused {
                        t.refused += 1;
                    } else {
                        t.failed.push(format!("connect: {e:#}"));
                    }
                    done.fetch_add(1, SeqCst);
                    std::thread::sleep(PACE);
                    continue;
                }
            },
        };
        let mut c = c;
        let sent = Instant::now();
        let r = c
            .send(request)
            .map_err(anyhow::Error::from)
            .and_then(|()| c.response());
        done.fetch_add(1, SeqCst);
        match r {
            Ok(resp) if resp.status == 200 => {
                t.ok += 1;
                t.latencies.push((sent, sent.elapsed()));
                if resp
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    t.reopened += 1;
                } else {
                    conn = Some(c);
                }
            }
            Ok(resp) => t.failed.push(format!("status {}", resp.status)),
            Err(e) => t.failed.push(format!("{e:#}")),
        }
        std::thread::sleep(PACE);
    }
    t
}

/// The `q`-quantile (0..=1) of `latencies`.
pub fn quantile(latencies: &[Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let mut v = latencies.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}
