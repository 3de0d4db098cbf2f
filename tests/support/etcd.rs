//! A real single-member etcd for tests (Debian's `etcd-server`), on free loopback ports in a
//! temporary directory, killed on drop. [`Etcd::start`] returns `None` (with a message) when
//! the binary is not installed.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tempfile::TempDir;

use super::free_port;
use super::http::Request;

pub struct Etcd {
    pub addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Etcd {
    pub fn start() -> anyhow::Result<Option<Etcd>> {
        let Ok(bin) = which("etcd") else {
            eprintln!("SKIPPED: no etcd binary (install the `etcd-server` package: scripts/install-deps.sh)");
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("switchyard-etcd-")
            .tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "test"])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("test=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log"))?)
            .spawn()
            .context("starting etcd")?;
        let etcd = Etcd {
            addr: SocketAddr::from(([127, 0, 0, 1], client)),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while etcd.get("/probe").is_err() {
            if Instant::now() > deadline {
                bail!("etcd did not answer on {}", etcd.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(etcd))
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value at `key`, `None` when absent.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let body = serde_json::json!({ "key": B64.encode(key) }).to_string();
        let r = Request::post("/v3/kv/range", body).send(self.addr)?;
        anyhow::ensure!(r.status == 200, "etcd answered {}", r.describe());
        let v = r.json()?;
        Ok(v["kvs"][0]["value"]
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn which(name: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    anyhow::ensure!(!path.is_empty(), "{name} not found");
    Ok(path)
}
