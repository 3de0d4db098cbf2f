//! A real 3-member etcd cluster on loopback (Debian's `etcd-server`), on free ports in a
//! temporary directory; members can be killed and restarted one by one, and every member
//! is killed on drop. [`EtcdCluster::start`] returns `None` (with a message) when the
//! binary is not installed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// The TLS client port, with [`EtcdCluster::start_tls`].
    secure: Option<u16>,
    peer: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
    token: String,
    bin: String,
    dir: TempDir,
    /// `--cert-file` and `--key-file` of the TLS client listeners.
    tls: Option<(PathBuf, PathBuf)>,
}

impl EtcdCluster {
    /// Start `n` members and wait until the cluster answers linearizable reads.
    pub fn start(n: usize) -> anyhow::Result<Option<EtcdCluster>> {
        Self::start_with(n, None)
    }

    /// [`EtcdCluster::start`] with a second client listener on each member speaking TLS with
    /// `cert` and `key` ([`EtcdCluster::tls_endpoints`]); the plain one stays for the test's
    /// own requests.
    pub fn start_tls(n: usize, cert: &Path, key: &Path) -> anyhow::Result<Option<EtcdCluster>> {
        Self::start_with(n, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(
        n: usize,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> anyhow::Result<Option<EtcdCluster>> {
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
                secure: match tls {
                    Some(_) => Some(free_port()?),
                    None => None,
                },
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
            tls,
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
        let mut client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut cmd = Command::new(&self.bin);
        if let (Some(port), Some((cert, key))) = (m.secure, &self.tls) {
            client.push_str(&format!(",https://127.0.0.1:{port}"));
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
        let child = cmd
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
        toml_list(&self.endpoints())
    }

    /// `https://127.0.0.1:PORT` of every member's TLS listener, as a TOML array.
    pub fn tls_endpoints_toml(&self) -> String {
        let list: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| m.secure)
            .map(|p| format!("https://127.0.0.1:{p}"))
            .collect();
        toml_list(&list)
    }

    /// Turn authentication on: users `root` and `user` (with `password`), `user` allowed to
    /// read and write the keys under `prefix` only. Afterwards every request needs a login,
    /// so the plain helpers of this type no longer work.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) -> anyhow::Result<()> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let steps = [
            (
                "/v3/auth/user/add",
                serde_json::json!({ "name": "root", "password": password }),
            ),
            ("/v3/auth/role/add", serde_json::json!({ "name": "root" })),
            (
                "/v3/auth/user/grant",
                serde_json::json!({ "user": "root", "role": "root" }),
            ),
            (
                "/v3/auth/user/add",
                serde_json::json!({ "name": user, "password": password }),
            ),
            ("/v3/auth/role/add", serde_json::json!({ "name": user })),
            (
                "/v3/auth/role/grant",
                serde_json::json!({ "name": user, "perm": {
                    "permType": "READWRITE",
                    "key": B64.encode(prefix),
                    "range_end": B64.encode(&end),
                }}),
            ),
            (
                "/v3/auth/user/grant",
                serde_json::json!({ "user": user, "role": user }),
            ),
            ("/v3/auth/enable", serde_json::json!({})),
        ];
        for (path, body) in steps {
            let r = Request::post(path, body.to_string()).send(self.addr(0))?;
            anyhow::ensure!(r.status == 200, "etcd {path}: {}", r.describe());
        }
        Ok(())
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

fn toml_list(items: &[String]) -> String {
    let list: Vec<String> = items.iter().map(|e| format!("{e:?}")).collect();
    format!("[{}]", list.join(", "))
}
