//! The HTTP access log, end to end: the real binary in front of real backends on 127.0.0.1,
//! two of them failing (one answers 503, one refuses connections) so that some requests are
//! retried. For each format, under concurrent load, every request has exactly one line with
//! its fields right (JSON parsed, `combined` by a regex); the `X-Request-Id` in the line is
//! the client's when it sent one and Switchyard's otherwise, and the backend received it; no
//! credential (Authorization, Cookie, a token in the query or the Referer) is written.
//! SIGUSR1 after a rename writes new lines to the new file; a graceful stop (SIGTERM) writes
//! what was still buffered. A writer that cannot write (a FIFO nobody reads) makes lines drop
//! and be counted, while requests are answered as usual.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use regex::Regex;
use serde_json::Value;
use support::backend::Backend;
use support::http::Request;
use support::proxy::Proxy;
use support::{eventually, free_port, lines_with, metric};

/// Client threads, and requests each sends.
const CLIENTS: usize = 6;
const PER_CLIENT: usize = 50;

/// Secrets the clients send; none may appear in a log.
const SECRETS: [&str; 4] = ["sekrit", "topsecret", "cookiesecret", "refsecret"];

/// Backends of the upstream: two good ones, one answering 503, one refusing connections.
struct Backends {
    good: Vec<Backend>,
    failing: Backend,
    dead: String,
}

impl Backends {
    fn start() -> anyhow::Result<Self> {
        let failing = Backend::start("failing")?;
        failing.set_status(503);
        Ok(Backends {
            good: Backend::start_many("good", 2)?,
            failing,
            dead: format!("127.0.0.1:{}", free_port()?),
        })
    }

    fn addrs(&self) -> Vec<String> {
        let mut all: Vec<String> = self.good.iter().map(Backend::addr_str).collect();
        all.push(self.failing.addr_str());
        all.push(self.dead.clone());
        all
    }
}

/// The log file beside the config directory (not in it: the watcher would see every write).
fn log_path(conf_dir: &Path) -> PathBuf {
    conf_dir.parent().unwrap_or(conf_dir).join("access.log")
}

/// Listener `public` logging as `access_log` (a TOML inline table), round robin over every
/// backend, retries enough to get past both failing ones, no ejection (so retries go on).
fn config(port: u16, access_log: &str, backends: &[String]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"
[[http.listeners]]
name = "public"
addr = "127.0.0.1:{port}"
access_log = {access_log}

[[http.routes]]
host = "*"
upstream = "api"
retries = 3
connect_timeout = "1s"

[http.upstreams.api]
balance = "round_robin"
max_fails = 0
retry_budget = 1.0

[http.upstreams.api.pools.blue]
backends = [{list}]
"#,
        list = list.join(", ")
    )
}

fn start(backends: &Backends, format: &str, extra: &str) -> anyhow::Result<(Proxy, PathBuf)> {
    let addrs = backends.addrs();
    let proxy = Proxy::start(|dir, port| {
        let table = format!(
            "{{ format = \"{format}\", path = \"{}\"{extra} }}",
            log_path(dir).display()
        );
        Ok(config(port, &table, &addrs))
    })?;
    let path = log_path(&proxy.conf_dir());
    Ok((proxy, path))
}

/// Request `i` of client `t`: a unique path, a token in the query, credentials in headers;
/// every other one brings its own request id.
fn request(t: usize, i: usize) -> (String, Option<String>, Request) {
    let path = format!("/r/{t}/{i}");
    let id = (i % 2 == 0).then(|| format!("client-{t}-{i}"));
    let mut req = Request::get(&format!("{path}?page={i}&access_token=sekrit{t}x{i}"))
        .header("Authorization", "Bearer topsecret")
        .header("Cookie", "session=cookiesecret")
        .header("User-Agent", format!("loadtest/{t}"))
        .header("Referer", "https://ref.example/start?token=refsecret&x=1");
    if let Some(id) = &id {
        req = req.header("X-Request-Id", id);
    }
    (path, id, req)
}

/// Send every request from [`CLIENTS`] threads at once; each must be answered 200 by a good
/// backend. Returns the request id each path was sent with (`None`: none).
fn load(proxy: &Proxy) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let addr = proxy.http_addr();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            std::thread::spawn(move || -> anyhow::Result<Vec<(String, Option<String>)>> {
                let mut sent = Vec::new();
                for i in 0..PER_CLIENT {
                    let (path, id, req) = request(t, i);
                    let r = req.send(addr)?;
                    ensure!(r.status == 200, "{path}: {}", r.describe());
                    sent.push((path, id));
                }
                Ok(sent)
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for t in threads {
        let sent = t.join().map_err(|_| anyhow!("client thread panicked"))??;
        all.extend(sent);
    }
    Ok(all)
}

/// One line, whatever its format.
#[derive(Debug)]
struct Line {
    client: String,
    method: String,
    path: String,
    query: String,
    protocol: String,
    status: u16,
    bytes: u64,
    referer: String,
    user_agent: String,
    request_time: f64,
    upstream_time: Option<f64>,
    upstream: String,
    pool: String,
    backend: String,
    attempts: u32,
    retries: Vec<String>,
    request_id: String,
}

fn combined_regex() -> anyhow::Result<Regex> {
    Ok(Regex::new(concat!(
        r#"^(?P<client>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "#,
        r#""(?P<method>[A-Z]+) (?P<path>[^ ?"]+)(?:\?(?P<query>[^ "]*))? (?P<protocol>HTTP/\d\.\d)" "#,
        r#"(?P<status>\d{3}) (?P<bytes_sent>\d+) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)" "#,
        r#"request_time=(?P<request_time>\d+\.\d{3}) upstream_time=(?P<upstream_time>\d+\.\d{3}|-) "#,
        r#"upstream=(?P<upstream>\S+) pool=(?P<pool>\S+) backend=(?P<backend>\S+) "#,
        r#"attempts=(?P<attempts>\d+) retries=(?P<retries>\S+) request_id=(?P<request_id>\S+)$"#,
    ))?)
}

impl Line {
    /// A line from its fields as text, by their JSON names (`-` or absent: none; `retries`
    /// comma-separated).
    fn from_fields(field: impl Fn(&str) -> Option<String>) -> anyhow::Result<Line> {
        let s = |k: &str| field(k).unwrap_or_else(|| "-".to_string());
        let n = |k: &str| {
            s(k).parse::<f64>()
                .with_context(|| format!("{k}: {:?}", s(k)))
        };
        Ok(Line {
            client: s("client"),
            method: s("method"),
            path: s("path"),
            query: s("query"),
            protocol: s("protocol"),
            status: s("status").parse()?,
            bytes: s("bytes_sent").parse()?,
            referer: s("referer"),
            user_agent: s("user_agent"),
            request_time: n("request_time")?,
            upstream_time: n("upstream_time").ok(),
            upstream: s("upstream"),
            pool: s("pool"),
            backend: s("backend"),
            attempts: s("attempts").parse()?,
            retries: match s("retries").as_str() {
                "-" | "" => Vec::new(),
                v => v.split(',').map(str::to_string).collect(),
            },
            request_id: s("request_id"),
        })
    }
}

fn parse_combined(re: &Regex, text: &str) -> anyhow::Result<Line> {
    let c = re
        .captures(text)
        .ok_or_else(|| anyhow!("not a combined line: {text:?}"))?;
    Line::from_fields(|k| c.name(k).map(|m| m.as_str().to_string()))
}

fn parse_json(text: &str) -> anyhow::Result<Line> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("line {text:?}"))?;
    let time = v["time"].as_str().unwrap_or("");
    ensure!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "time {time:?}"
    );
    ensure!(v["listener"] == "public", "listener in {text}");
    ensure!(v["retries"].is_array(), "retries in {text}");
    Line::from_fields(|k| match &v[k] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => Some(
            a.iter()
                .map(|r| r.as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    })
}

/// The lines of the file at `path` for the load's paths (`/r/...`).
fn load_lines(path: &Path, format: &str) -> anyhow::Result<Vec<Line>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let re = combined_regex()?;
    text.lines()
        .map(|l| match format {
            "json" => parse_json(l),
            _ => parse_combined(&re, l),
        })
        .filter(|l| l.as_ref().map_or(true, |l| l.path.starts_with("/r/")))
        .collect()
}

/// Every request of the load has exactly one line, each with its fields right.
fn check_lines(
    lines: &[Line],
    sent: &BTreeMap<String, Option<String>>,
    backends: &Backends,
) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    let good: BTreeMap<String, &Backend> =
        backends.good.iter().map(|b| (b.addr_str(), b)).collect();
    let received: BTreeMap<String, Vec<(String, Option<String>)>> = good
        .iter()
        .map(|(a, b)| (a.clone(), b.request_ids()))
        .collect();
    let (mut generated, mut reasons) = (BTreeSet::new(), BTreeSet::new());
    for l in lines {
        ensure!(seen.insert(l.path.clone()), "two lines for {}", l.path);
        let Some(want_id) = sent.get(&l.path) else {
            bail!("a line for {} that was never sent", l.path);
        };
        let i: usize = l.path.rsplit('/').next().unwrap_or("").parse()?;
        ensure!(l.client == "127.0.0.1", "client in {l:?}");
        ensure!(l.method == "GET" && l.protocol == "HTTP/1.1", "{l:?}");
        ensure!(
            l.query == format!("page={i}&access_token=REDACTED"),
            "query in {l:?}"
        );
        ensure!(
            l.referer == "https://ref.example/start?token=REDACTED&x=1",
            "{l:?}"
        );
        ensure!(l.user_agent.starts_with("loadtest/"), "{l:?}");
        ensure!(
            l.status == 200 && l.bytes == "good1\n".len() as u64,
            "{l:?}"
        );
        let ut = l.upstream_time.context("no upstream time")?;
        ensure!(
            ut <= l.request_time,
            "upstream time over request time: {l:?}"
        );
        ensure!(l.upstream == "api" && l.pool == "blue", "{l:?}");
        ensure!(good.contains_key(&l.backend), "backend in {l:?}");
        ensure!(
            l.attempts as usize == l.retries.len() + 1,
            "attempts and retries in {l:?}"
        );
        for r in &l.retries {
            // A pooled connection the backend closed is retried too (`stale_connection`).
            ensure!(
                ["connect", "status", "stale_connection"].contains(&r.as_str()),
                "retry reason in {l:?}"
            );
            reasons.insert(r.clone());
        }
        match want_id {
            Some(id) => ensure!(&l.request_id == id, "request id in {l:?}"),
            None => {
                ensure!(
                    l.request_id.len() == 32 && l.request_id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "generated request id in {l:?}"
                );
                ensure!(generated.insert(l.request_id.clone()), "id reused: {l:?}");
            }
        }
        // The backend that answered received the same id.
        let got = received[&l.backend]
            .iter()
            .find(|(p, _)| p.split('?').next() == Some(l.path.as_str()))
            .with_context(|| format!("{} never reached {}", l.path, l.backend))?;
        ensure!(
            got.1.as_deref() == Some(l.request_id.as_str()),
            "backend got {:?} for {l:?}",
            got.1
        );
    }
    ensure!(
        seen.len() == sent.len(),
        "{} lines for {} requests",
        seen.len(),
        sent.len()
    );
    ensure!(
        reasons.contains("connect") && reasons.contains("status"),
        "retry reasons seen: {reasons:?}"
    );
    Ok(())
}

fn every_request_has_one_line(format: &str) -> anyhow::Result<()> {
    let backends = Backends::start()?;
    let (proxy, path) = start(&backends, format, "")?;
    let sent = load(&proxy)?;
    let lines = eventually(Duration::from_secs(15), || {
        let lines = load_lines(&path, format)?;
        ensure!(
            lines.len() >= sent.len(),
            "{} of {} lines",
            lines.len(),
            sent.len()
        );
        Ok(lines)
    })?;
    check_lines(&lines, &sent, &backends)?;
    eprintln!(
        "DEBUG {}",
        std::fs::read_to_string(&path)?
            .lines()
            .filter(|l| l.contains("retr"))
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let text = std::fs::read_to_string(&path)?;
    for secret in SECRETS {
        ensure!(!text.contains(secret), "{secret} in the log");
    }
    let m = proxy.metrics()?;
    let written = metric(
        &m,
        "switchyard_http_access_log_lines_total",
        &["listener=\"public\""],
    );
    ensure!(
        written == Some(text.lines().count() as f64),
        "lines_total {written:?}, {} lines in the file",
        text.lines().count()
    );
    Ok(())
}

#[test]
fn json_every_request_has_one_line_with_its_fields() -> anyhow::Result<()> {
    every_request_has_one_line("json")
}

#[test]
fn combined_every_request_has_one_line_with_its_fields() -> anyhow::Result<()> {
    every_request_has_one_line("combined")
}

#[test]
fn sigusr1_after_a_rename_writes_to_the_new_file() -> anyhow::Result<()> {
    let backends = Backends::start()?;
    let (proxy, path) = start(&backends, "combined", "")?;
    proxy.get_logged("/before/", 5, &path)?;
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated)?;
    proxy.signal("USR1")?;
    // The writer opens the path again: the new file appears.
    eventually(Duration::from_secs(10), || {
        ensure!(path.exists(), "{} not reopened", path.display());
        Ok(())
    })?;
    proxy.get_logged("/after/", 5, &path)?;
    ensure!(lines_with(&path, "/before/") == 0 && lines_with(&rotated, "/after/") == 0);
    ensure!(lines_with(&rotated, "/before/") == 5);
    ensure!(proxy
        .stderr()
        .contains("SIGUSR1: reopening the access logs"));
    Ok(())
}

#[test]
fn a_graceful_stop_writes_the_lines_still_buffered() -> anyhow::Result<()> {
    let backends = Backends::start()?;
    let (mut proxy, path) = start(&backends, "json", "")?;
    let n = 20;
    for i in 0..n {
        ensure!(proxy.get(&format!("/last/{i}"))?.status == 200);
    }
    // At once: most of these lines are still in the buffer (the writer wakes every 50 ms).
    proxy.signal("TERM")?;
    eventually(Duration::from_secs(20), || {
        ensure!(!proxy.is_running(), "still running");
        Ok(())
    })?;
    ensure!(
        lines_with(&path, "/last/") == n,
        "{} of {n} lines",
        lines_with(&path, "/last/")
    );
    Ok(())
}

#[test]
fn a_writer_that_cannot_write_drops_and_counts_lines_and_requests_go_on() -> anyhow::Result<()> {
    let backends = Backends::start()?;
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    ensure!(made.success(), "mkfifo: {made}");
    // Held open for reading (and writing, so that opening it never waits) and not read: once
    // the pipe's 64 KiB are full, the writer's `write` blocks.
    let pipe = OpenOptions::new().read(true).write(true).open(&fifo)?;
    let good: Vec<String> = backends.good.iter().map(Backend::addr_str).collect();
    let proxy = Proxy::start(|_, port| {
        let table = format!(
            "{{ format = \"combined\", path = \"{}\", buffer_lines = 64 }}",
            fifo.display()
        );
        Ok(config(port, &table, &good))
    })?;
    let requests = 1000;
    let addr = proxy.http_addr();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0..requests / 4 {
                    let r = Request::get(&format!("/r/{t}/{i}")).send(addr)?;
                    ensure!(r.status == 200, "{}", r.describe());
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow!("client thread panicked"))??;
    }
    let dropped = |m: &str| {
        metric(
            m,
            "switchyard_http_access_log_dropped_total",
            &["listener=\"public\"", "reason=\"full\""],
        )
        .unwrap_or(0.0)
    };
    let m = proxy.metrics()?;
    ensure!(dropped(&m) > 0.0, "nothing dropped:\n{m}");

    // Now read the pipe: what was held is written, and every request is either a line or a
    // drop.
    let read = Arc::new(Mutex::new(Vec::new()));
    let mut reader = pipe.try_clone()?;
    let sink = read.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    let re = combined_regex()?;
    eventually(Duration::from_secs(15), || {
        let m = proxy.metrics()?;
        let text = String::from_utf8(read.lock().unwrap_or_else(|p| p.into_inner()).clone())?;
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines {
            parse_combined(&re, l)?;
        }
        let load_lines = lines.iter().filter(|l| l.contains("\"GET /r/")).count();
        let written = metric(
            &m,
            "switchyard_http_access_log_lines_total",
            &["listener=\"public\""],
        );
        ensure!(
            written == Some(lines.len() as f64),
            "lines_total {written:?}, read {}",
            lines.len()
        );
        ensure!(
            load_lines as f64 + dropped(&m) == requests as f64,
            "{load_lines} lines + {} dropped != {requests}",
            dropped(&m)
        );
        Ok(())
    })?;
    drop(proxy);
    drop(pipe);
    Ok(())
}
