//! A real 3-member etcd cluster on loopback (Debian's `etcd-server`), on free ports in a
//! temporary directory; members can be killed and restarted one by one, and every member
//! is killed on drop. [`EtcdCluster::start`] returns `None` (with a message) when the
//! binary is not installed.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tempfile::TempDir;

use super::free_port;
use super::http::Request;

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
    token: String,
    bin: String,
    dir: TempDir,
}

impl EtcdCluster {
    /// Start `n` members and wait until the cluster answers linearizable reads.
    pub fn start(n: usize) -> anyhow::Result<Option<EtcdCluster>> {
        let Ok(bin) = super::etcd::which("etcd") else {
            eprintln!("SKIPPED: no etcd binary (install the `etcd-server` package: scripts/install-deps.sh)");
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("switchyard-etcd-cluster-")
            .tempdir()?;
        let mut members = Vec::new();
        for i in 1..=n {
            members.push(Member {
                name: format!("m{i}"),
                client: free_port()?,
                peer: free_port()?,
                child: None,
            });
        }
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "switchyard-test".into());
        let mut cluster = EtcdCluster {
            members,
            initial,
            token,
            bin,
            dir,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(Some(cluster))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// `http://127.0.0.1:PORT` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// The endpoints as a TOML array.
    pub fn endpoints_toml(&self) -> String {
        let list: Vec<String> = self.endpoints().iter().map(|e| format!("{e:?}")).collect();
        format!("[{}]", list.join(", "))
    }

    fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client))
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|i| self.members[*i].child.is_some())
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Start every member that is not running (same data, same ports) and wait for quorum.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        self.wait_ready(Duration::from_secs(30))
    }

    /// Wait until every running member answers a linearizable read.
    pub fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for i in self.running().collect::<Vec<_>>() {
            while self.range(i, "/probe").is_err() {
                if Instant::now() > deadline {
                    bail!("etcd member {} did not answer", self.members[i].name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn range(&self, i: usize, key: &str) -> anyhow::Result<serde_json::Value> {
        let body = serde_json::json!({ "key": B64.encode(key) }).to_string();
        let r = Request::post("/v3/kv/range", body).send(self.addr(i))?;
        anyhow::ensure!(r.status == 200, "etcd answered {}", r.describe());
        r.json()
    }

    /// The value and version of `key` (read from the first member that answers).
    pub fn get(&self, key: &str) -> anyhow::Result<Option<(String, u64)>> {
        let mut last = anyhow::anyhow!("no etcd member is running");
        for i in self.running().collect::<Vec<_>>() {
            match self.range(i, key) {
                Ok(v) => {
                    let kv = &v["kvs"][0];
                    let value = kv["value"]
                        .as_str()
                        .and_then(|v| B64.decode(v).ok())
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                    let version = kv["version"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    return Ok(value.map(|v| (v, version)));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Put `value` at `key` behind Switchyard's back (as an operator with etcdctl would).
    pub fn put(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let body =
            serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) }).to_string();
        let mut last = anyhow::anyhow!("no etcd member is running");
        for i in self.running().collect::<Vec<_>>() {
            match Request::post("/v3/kv/put", body.clone()).send(self.addr(i)) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = anyhow::anyhow!("etcd answered {}", r.describe()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Delete `key` behind Switchyard's back.
    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "key": B64.encode(key) }).to_string();
        let mut last = anyhow::anyhow!("no etcd member is running");
        for i in self.running().collect::<Vec<_>>() {
            match Request::post("/v3/kv/deleterange", body.clone()).send(self.addr(i)) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = anyhow::anyhow!("etcd answered {}", r.describe()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Compact etcd's history up to its current revision: watches from before it are
    /// canceled and must read the document in full again.
    pub fn compact(&self) -> anyhow::Result<()> {
        let i = self.running().next().context("no etcd member is running")?;
        // One more revision first: compacting at the revision of the last change would keep
        // that change, and a watcher resuming from just before it would not notice.
        let bump = serde_json::json!({ "key": B64.encode("/probe"), "value": B64.encode("x") })
            .to_string();
        let r = Request::post("/v3/kv/put", bump).send(self.addr(i))?;
        anyhow::ensure!(
            r.status == 200,
            "put before the compaction: {}",
            r.describe()
        );
        let v = self.range(i, "/probe")?;
        let rev = v["header"]["revision"]
            .as_str()
            .context("no revision")?
            .to_string();
        let body = serde_json::json!({ "revision": rev, "physical": true }).to_string();
        let r = Request::post("/v3/kv/compaction", body).send(self.addr(i))?;
        anyhow::ensure!(r.status == 200, "compaction: {}", r.describe());
        // Each member applies the compaction on its own: wait until every one refuses a
        // read below it, so a watch on any member sees it.
        let below = serde_json::json!({ "key": B64.encode("/probe"), "revision": "1" }).to_string();
        for m in self.running().collect::<Vec<_>>() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                // A read below the compaction is an error, which the gateway sends chunked
                // (this client refuses those); a 200 means not compacted yet.
                match Request::post("/v3/kv/range", below.clone()).send(self.addr(m)) {
                    Ok(r) if r.status == 200 => {}
                    _ => break,
                }
                if Instant::now() > deadline {
                    bail!(
                        "member {} did not apply the compaction",
                        self.members[m].name
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The index of the current leader (by each member's own status).
    pub fn leader(&self) -> anyhow::Result<usize> {
        for i in self.running().collect::<Vec<_>>() {
            let r = Request::post("/v3/maintenance/status", "{}").send(self.addr(i))?;
            let v = r.json()?;
            if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
                return Ok(i);
            }
        }
        bail!("no etcd leader")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
