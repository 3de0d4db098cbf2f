//! A real PostgreSQL cluster for end-to-end tests: a primary and N streaming replicas in a
//! temporary directory, on free ports, stopped and removed on drop.
//!
//! - Server binaries come from `/usr/lib/postgresql/<newest>/bin` (Debian's `postgresql`
//!   package, which `scripts/install-deps.sh` installs), or `SWITCHYARD_PG_BIN`. Without
//!   them [`PgCluster::start`] returns `None` and says so: the only reason a Postgres test
//!   skips.
//! - `initdb` refuses to run as root, so when the tests run as root every server program runs
//!   as the `postgres` user (the child's uid and gid are set; the directory is chowned).
//! - The primary runs with `wal_level = replica`, `fsync = off`, TCP on `127.0.0.1` with
//!   SCRAM passwords (superuser [`SUPERUSER`] / [`SUPERUSER_PASSWORD`]), its socket in the
//!   temporary directory; replicas are `pg_basebackup -R -X stream` copies, and start returns
//!   once `pg_stat_replication` on the primary shows each one streaming.
//! - Drop sends each postmaster SIGQUIT (immediate shutdown), SIGKILL if it lingers, then
//!   removes the directory.
//! - [`client::Router`] runs the `switchyard` binary with a cluster over these nodes;
//!   [`client::connect`] opens a tokio-postgres client to a node or through the router.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tempfile::TempDir;

use super::free_port;

use client::{client_config, connect};

pub mod bench;
pub mod client;
pub mod ha;

/// The superuser every node has, and its password (TCP logins need it).
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "fixture-superuser-pw-7c1e";

/// How long a node may take to accept queries, and a replica to stream.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of every node (replicas inherit the primary's file through the base backup).
const COMMON_CONF: &str = "
listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '128MB'
hot_standby = on
max_connections = 100
shared_buffers = '16MB'
password_encryption = 'scram-sha-256'
logging_collector = off
";

/// One server of the cluster.
pub struct PgNode {
    pub name: String,
    pub port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

/// A primary (`node(0)`) and its streaming replicas.
pub struct PgCluster {
    // Dropped last, after the nodes are stopped.
    tmp: TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    nodes: Vec<PgNode>,
}

/// The server binaries' directory: `SWITCHYARD_PG_BIN`, or the newest
/// `/usr/lib/postgresql/*/bin` holding `initdb`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `(uid, gid)` of the `postgres` user when we are root (its programs must not run as root),
/// `None` otherwise.
fn owner() -> anyhow::Result<Option<(u32, u32)>> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").arg(flag).arg("postgres").output()?;
        anyhow::ensure!(
            out.status.success(),
            "no `postgres` user to run PostgreSQL as"
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

impl PgCluster {
    /// Start a primary and `replicas` streaming replicas, or `None` (with a message) when no
    /// PostgreSQL server binaries are installed.
    pub fn start(replicas: usize) -> anyhow::Result<Option<PgCluster>> {
        let Some(bin) = bin_dir() else {
            eprintln!(
                "SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin \
                 (install the `postgresql` package: scripts/install-deps.sh)"
            );
            return Ok(None);
        };
        let tmp = tempfile::Builder::new()
            .prefix("switchyard-pg-")
            .tempdir()?;
        let owner = owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid))?;
        }
        let mut cluster = PgCluster {
            tmp,
            bin,
            owner,
            nodes: Vec::new(),
        };
        cluster.init_primary()?;
        for i in 1..=replicas {
            cluster.add_replica(&format!("replica{i}"))?;
        }
        Ok(Some(cluster))
    }

    /// A server program of the installed version, as the `postgres` user if we are root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.tmp.path())
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER")
            .env_remove("PGDATABASE")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Run a program to completion; its output is in the error if it fails.
    fn run(&self, mut cmd: Command, what: &str) -> anyhow::Result<String> {
        let out = cmd.output().with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn init_primary(&mut self) -> anyhow::Result<()> {
        let dir = self.tmp.path().join("primary");
        let pwfile = self.tmp.path().join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(&dir)
            .args(["-U", SUPERUSER, "--no-sync", "--no-locale", "-E", "UTF8"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        self.run(initdb, "initdb")?;
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all all trust\n\
             local replication all trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host replication all 127.0.0.1/32 scram-sha-256\n",
        )?;
        append(&dir.join("postgresql.conf"), COMMON_CONF)?;
        self.start_node("primary", dir)
    }

    fn add_replica(&mut self, name: &str) -> anyhow::Result<()> {
        let dir = self.tmp.path().join(name);
        let primary = self.nodes[0].port.to_string();
        let mut backup = self.command("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &primary, "-U", SUPERUSER])
            .arg("-D")
            .arg(&dir)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        self.run(backup, "pg_basebackup")?;
        self.start_node(name, dir)?;
        let query = format!(
            "select count(*) from pg_stat_replication where application_name = '{name}' and state = 'streaming'"
        );
        self.wait_for(0, &query, "1", READY_TIMEOUT)
            .with_context(|| format!("{name} did not start streaming"))
    }

    /// Start a postmaster on a free port (another one if someone took it first) and wait
    /// until it answers queries.
    fn start_node(&mut self, name: &str, dir: PathBuf) -> anyhow::Result<()> {
        let mut last = anyhow!("not started");
        for _ in 0..5 {
            let port = free_port()?;
            let socket_dir = self.tmp.path().display().to_string();
            append(
                &dir.join("postgresql.conf"),
                &format!("\nport = {port}\nunix_socket_directories = '{socket_dir}'\ncluster_name = '{name}'\n"),
            )?;
            let log_path = self.tmp.path().join(format!("{name}.log"));
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))?;
            }
            let child = self
                .command("postgres")
                .arg("-D")
                .arg(&dir)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("spawning postgres")?;
            self.nodes.push(PgNode {
                name: name.to_string(),
                port,
                data_dir: dir.clone(),
                child: Some(child),
            });
            let index = self.nodes.len() - 1;
            match self.wait_for(index, "select 1", "1", READY_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let mut node = self.nodes.remove(index);
                    node.stop();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if !log.contains("could not bind") {
                        bail!("{name} did not start: {e:#}\n{log}");
                    }
                    last = e.context(format!("{name}: port {port} taken"));
                }
            }
        }
        Err(last)
    }

    /// The primary.
    pub fn primary(&self) -> &PgNode {
        &self.nodes[0]
    }

    /// Node `i`: 0 is the primary, 1.. the replicas in order.
    pub fn node(&self, i: usize) -> &PgNode {
        &self.nodes[i]
    }

    /// Number of nodes (primary and replicas).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Run `sql` with `psql` on node `i` as the superuser over TCP; its output, trimmed.
    pub fn psql(&self, i: usize, sql: &str) -> anyhow::Result<String> {
        let mut cmd = self.command("psql");
        cmd.args(["-h", "127.0.0.1", "-p", &self.nodes[i].port.to_string()])
            .args([
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql]);
        Ok(self
            .run(cmd, &format!("psql on {}", self.nodes[i].name))?
            .trim()
            .to_string())
    }

    /// Wait until `sql` on node `i` prints `want`.
    pub fn wait_for(
        &self,
        i: usize,
        sql: &str,
        want: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.psql(i, sql);
            match &got {
                Ok(out) if out == want => return Ok(()),
                _ if Instant::now() >= deadline => {
                    bail!(
                        "`{sql}` on {} gave {got:?}, not {want:?}, for {within:?}",
                        self.nodes[i].name
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    /// Connection settings for node `i` as the superuser.
    pub fn config(&self, i: usize) -> tokio_postgres::Config {
        client_config(
            self.nodes[i].port,
            SUPERUSER,
            SUPERUSER_PASSWORD,
            "postgres",
        )
    }

    /// A tokio-postgres client on node `i` as the superuser.
    pub async fn connect(&self, i: usize) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.config(i)).await
    }

    /// Everything a node wrote to its log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{}.log", self.nodes[i].name)))
            .unwrap_or_default()
    }

    /// The temporary directory holding every node.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Path of a binary of the installed PostgreSQL version (`psql`, `pgbench`).
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }

    /// Stop node `i` at once (SIGQUIT, as on drop); [`PgCluster::restart`] starts it again.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Crash node `i`: SIGKILL its postmaster and every process it started, as when its host
    /// dies. [`PgCluster::restart`] starts it again (crash recovery).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Rebuild node `i` as a streaming replica of node `from`, as an operator rebuilds an old
    /// primary before rejoining it: stopped, its data directory replaced by a fresh base
    /// backup of `from`, started again on its own port; returns once it is in recovery.
    pub fn rebuild_as_replica(&mut self, i: usize, from: usize) -> anyhow::Result<()> {
        self.nodes[i].kill();
        let (dir, port, name) = {
            let n = &self.nodes[i];
            (n.data_dir.clone(), n.port, n.name.clone())
        };
        std::fs::remove_dir_all(&dir)?;
        let source = self.nodes[from].port.to_string();
        let mut backup = self.command("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &source, "-U", SUPERUSER])
            .arg("-D")
            .arg(&dir)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        self.run(backup, "pg_basebackup")?;
        append(
            &dir.join("postgresql.conf"),
            &format!("\nport = {port}\ncluster_name = '{name}'\n"),
        )?;
        self.restart(i)?;
        self.wait_for(i, "select pg_is_in_recovery()", "t", READY_TIMEOUT)
    }

    /// Start node `i` again after [`PgCluster::stop`], on its port and data directory, and
    /// wait until it answers queries (a replica then resumes streaming by itself).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        anyhow::ensure!(node.child.is_none(), "{} is running", node.name);
        let log = OpenOptions::new()
            .append(true)
            .open(self.tmp.path().join(format!("{}.log", node.name)))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&node.data_dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning postgres")?;
        self.nodes[i].child = Some(child);
        self.wait_for(i, "select 1", "1", READY_TIMEOUT)
            .with_context(|| {
                format!(
                    "{} did not start again:\n{}",
                    self.nodes[i].name,
                    self.log(i)
                )
            })
    }
}

impl PgNode {
    /// SIGKILL the postmaster and its children (their PIDs are read before it dies, since
    /// they are orphaned after).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let _ = child.kill();
        let _ = child.wait();
        for c in children.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", c])
                .stderr(Stdio::null())
                .status();
        }
        // Their shared memory is gone only once every child has exited.
        let deadline = Instant::now() + Duration::from_secs(5);
        // A zombie (state Z) is dead already, whoever reaps it.
        let running = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
        };
        while Instant::now() < deadline && children.split_whitespace().any(running) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Immediate shutdown (SIGQUIT), then SIGKILL if the postmaster is still there.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-QUIT", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Replicas first, so none of them logs a lost primary on the way out.
        for node in self.nodes.iter_mut().rev() {
            node.stop();
        }
    }
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f: File = OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
