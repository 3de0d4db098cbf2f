//! A steady stream of requests through the proxy, from several client threads, each request
//! on its own connection, with every outcome kept: when it was sent, when it was answered,
//! the status and the backend that answered (`x-backend`), or the error.
//!
//! Tests wait on the stream's progress ([`Load::wait_for`]) instead of sleeping, then stop it
//! and judge the [`Report`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};

use super::http::Request;

/// The pause between two requests of one client, so that the stream leaves CPU to the
/// proxy and the test on a small machine.
const PACE: Duration = Duration::from_millis(5);

/// One request of the stream.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: Instant,
    pub answered: Instant,
    /// The status, or the error that took its place.
    pub result: Result<u16, String>,
    pub backend: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.result == Ok(200)
    }
}

/// A running stream of requests.
pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// Start `clients` threads sending `req` to `addr` until [`Load::finish`].
    pub fn start(addr: SocketAddr, clients: usize, req: Request) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let clients = (0..clients)
            .map(|_| {
                let (stop, done, req) = (stop.clone(), done.clone(), req.clone());
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    while !stop.load(SeqCst) {
                        let sent = Instant::now();
                        let r = req.send(addr);
                        outcomes.push(Outcome {
                            sent,
                            answered: Instant::now(),
                            backend: r
                                .as_ref()
                                .ok()
                                .and_then(|r| r.header("x-backend").map(str::to_string)),
                            result: r.map(|r| r.status).map_err(|e| format!("{e:#}")),
                        });
                        done.fetch_add(1, SeqCst);
                        std::thread::sleep(PACE);
                    }
                    outcomes
                })
            })
            .collect();
        Load {
            stop,
            done,
            clients,
        }
    }

    /// Requests answered (or failed) so far.
    pub fn done(&self) -> u64 {
        self.done.load(SeqCst)
    }

    /// Wait until `more` further requests have been answered (the stream has run a while).
    pub fn wait_for(&self, more: u64, within: Duration) -> anyhow::Result<()> {
        wait_for_more(&self.done, more, within)
    }

    /// Stop the clients and collect every outcome.
    pub fn finish(mut self) -> anyhow::Result<Report> {
        self.stop.store(true, SeqCst);
        let mut outcomes = Vec::new();
        for c in std::mem::take(&mut self.clients) {
            outcomes.extend(c.join().map_err(|_| anyhow!("a load client panicked"))?);
        }
        outcomes.sort_by_key(|o| o.sent);
        Ok(Report { outcomes })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// Wait until `done` has counted `more` further requests.
pub fn wait_for_more(done: &AtomicU64, more: u64, within: Duration) -> anyhow::Result<()> {
    let target = done.load(SeqCst) + more;
    super::eventually(within, || {
        let now = done.load(SeqCst);
        ensure!(now >= target, "{now} of {target} requests");
        Ok(())
    })
}

/// Every outcome of a stream, in the order the requests were sent.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// The requests that did not get a 200.
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| !o.ok()).collect()
    }

    /// Fail, listing a few, if any request did not get a 200.
    pub fn assert_no_failures(&self) -> anyhow::Result<()> {
        let failed = self.failures();
        ensure!(
            failed.is_empty(),
            "{} of {} requests failed, e.g. {:?}",
            failed.len(),
            self.len(),
            &failed[..failed.len().min(5)]
        );
        Ok(())
    }

    /// Requests answered by each backend.
    pub fn by_backend(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for o in &self.outcomes {
            *m.entry(o.backend.clone().unwrap_or_default()).or_default() += 1;
        }
        m
    }

    /// The requests sent at or after `t`.
    pub fn sent_after(&self, t: Instant) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(move |o| o.sent >= t)
    }
}
