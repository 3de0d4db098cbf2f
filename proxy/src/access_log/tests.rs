//! Sinks on real files: lines arrive whole and in order, a reopen follows a rename, reuse
//! across reloads, a full buffer drops instead of waiting.

use std::path::PathBuf;
use std::time::SystemTime;

use switchyard_config::LogDestination;

use super::*;

/// A fresh path in the temp directory, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sy-access-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        TempPath(dir.join(name))
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn config(path: &TempPath, buffer_lines: usize) -> AccessLog {
    AccessLog {
        format: AccessLogFormat::Combined,
        destination: LogDestination::File(path.0.clone()),
        buffer_lines,
    }
}

#[test]
fn lines_are_written_whole_and_in_order_then_follow_a_rename_on_reopen() {
    let path = TempPath::new("access.log");
    let logs = AccessLogs::default();
    let log = logs
        .listener_log("public", &config(&path, 1024))
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..100 {
        log.sink.send(&format!("line {i}\n"));
    }
    logs.flush(Duration::from_secs(5));
    let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    assert_eq!(path.lines(), want);

    // logrotate: rename, then SIGUSR1.
    let rotated = TempPath(path.0.with_extension("log.1"));
    std::fs::rename(&path.0, &rotated.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(logs.reopen(), 1);
    log.sink.send("after\n");
    logs.flush(Duration::from_secs(5));
    assert_eq!(path.lines(), vec!["after".to_string()]);
    assert_eq!(rotated.lines().len(), 100);
    std::mem::forget(rotated); // same directory as `path`, removed with it
}

#[test]
fn a_reload_with_the_same_destination_keeps_the_sink() {
    let path = TempPath::new("access.log");
    let logs = AccessLogs::default();
    let a = logs
        .listener_log("public", &config(&path, 8))
        .unwrap_or_else(|e| panic!("{e}"));
    let b = logs
        .listener_log("public", &config(&path, 8))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(Arc::ptr_eq(&a.sink, &b.sink));
    let c = logs
        .listener_log("public", &config(&path, 16))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!Arc::ptr_eq(&a.sink, &c.sink));
    let other = logs
        .listener_log("admin", &config(&path, 8))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!Arc::ptr_eq(&a.sink, &other.sink));
    drop((a, b, c, other));
    assert_eq!(logs.reopen(), 0);
}

#[test]
fn a_bad_path_is_an_error_not_a_panic() {
    let logs = AccessLogs::default();
    let bad = AccessLog {
        format: AccessLogFormat::Json,
        destination: LogDestination::File(PathBuf::from("/nonexistent-dir/x/access.log")),
        buffer_lines: 8,
    };
    assert!(logs.listener_log("public", &bad).is_err());
}

#[test]
fn a_full_buffer_drops_lines_without_waiting() {
    let path = TempPath::new("access.log");
    let logs = AccessLogs::default();
    let log = logs
        .listener_log("public", &config(&path, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for i in 0..10_000 {
        log.sink.send(&format!("line {i}\n"));
    }
    // Sending never waits for the writer (which sleeps for a tick between batches).
    assert!(started.elapsed() < TICK * 20, "{:?}", started.elapsed());
    logs.flush(Duration::from_secs(5));
    let written = path.lines().len();
    assert!((1..10_000).contains(&written), "{written} written");
}
