//! The audit log: one JSON line per change attempt, accepted or not.
//!
//! Lines carry who (token name and remote address), what (action), the versions before and
//! after, the result and the error. Secrets never reach this file: actions name keys and
//! versions, not values.
//!
//! The log is a file, or standard output when the path is [`STDOUT`] (`-`, the default:
//! Switchyard's own logs go to standard error, so standard output carries only audit lines,
//! which a journal or a container runtime keeps).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// What was attempted: `config.put`, `config.rollback`, `config.reload`, `start`, …
    pub action: String,
    pub version_before: u64,
    pub version_after: u64,
    /// `applied`, `unchanged`, `dry_run`, `rejected`, `denied`, `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The `audit_log` path that means standard output.
pub const STDOUT: &str = "-";

/// An append-only JSON-lines file, or standard output.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    sink: Mutex<Sink>,
}

#[derive(Debug)]
enum Sink {
    File(File),
    Stdout,
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(line).and_then(|_| f.flush()),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line).and_then(|_| out.flush())
            }
        }
    }
}

impl AuditLog {
    /// Open (creating) the log for appending; [`STDOUT`] is standard output.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if path == Path::new(STDOUT) {
            return Ok(AuditLog {
                path: path.to_path_buf(),
                sink: Mutex::new(Sink::Stdout),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            sink: Mutex::new(Sink::File(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line. A write failure is logged, not returned: the change it records has
    /// already happened or been refused.
    pub fn record(&self, entry: &AuditEntry) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode audit entry");
                return;
            }
        };
        line.push(b'\n');
        let mut sink = match self.sink.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = sink.write_line(&line) {
            tracing::error!(error = %e, path = %self.path.display(), "cannot write audit log");
        }
    }
}
