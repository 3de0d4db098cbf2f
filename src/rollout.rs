//! `switchyard rollout`: start, follow, resume and abort a rolling release of an upstream
//! through the control API (`/v1/upstreams/{name}/rollout`), printing its progress batch
//! by batch. `follow` (and `start --follow`) exits 0 when the rollout succeeds and 1 when it
//! fails or is aborted, so a deploy script (Ansible's `command`) can gate on it.
//!
//! The client is plain HTTP/1.1 on a `std` socket, one request per connection: the
//! control API on loopback or a private network. A TLS control API is not supported here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// What to ask of the rollout.
pub enum Action {
    /// Start with this request body, then follow when asked.
    Start {
        body: Value,
        follow: bool,
    },
    Status,
    Follow,
    Abort,
    Resume,
}

/// The control API and the upstream.
pub struct Target {
    /// `http://host:port`.
    pub api: String,
    pub token: String,
    pub upstream: String,
}

pub fn run(target: &Target, action: Action) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/upstreams/{}/rollout", target.upstream);
    match action {
        Action::Start { body, follow } => {
            let (status, answer) = call(target, "POST", &path, Some(&body))?;
            if status != 201 {
                bail!("the rollout was refused ({status}): {}", answer["error"]);
            }
            let r = &answer["rollout"];
            println!(
                "rollout of {} started: {} batch(es)",
                target.upstream,
                r["batches"].as_array().map(Vec::len).unwrap_or(0)
            );
            if follow {
                return follow_rollout(target, &path);
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Status => {
            let (status, answer) = call(target, "GET", &path, None)?;
            if status != 200 {
                bail!("{status}: {}", answer["error"]);
            }
            let mut printer = Printer::default();
            printer.show(&answer);
            Ok(ExitCode::SUCCESS)
        }
        Action::Follow => follow_rollout(target, &path),
        Action::Abort | Action::Resume => {
            let verb = if matches!(action, Action::Abort) {
                "abort"
            } else {
                "resume"
            };
            let (status, answer) =
                call(target, "POST", &format!("{path}/{verb}"), Some(&json!({})))?;
            if status != 200 {
                bail!("{verb} refused ({status}): {}", answer["error"]);
            }
            let r = &answer["rollout"];
            println!("{verb}: the rollout is {}: {}", r["state"], r["reason"]);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print the progress until the rollout is over.
fn follow_rollout(target: &Target, path: &str) -> anyhow::Result<ExitCode> {
    let mut printer = Printer::default();
    loop {
        let (status, r) = call(target, "GET", path, None)?;
        if status != 200 {
            bail!("{status}: {}", r["error"]);
        }
        printer.show(&r);
        match r["state"].as_str() {
            Some("succeeded") => return Ok(ExitCode::SUCCESS),
            Some("failed" | "aborted") => return Ok(ExitCode::from(1)),
            // Every batch replaced, but not every one verified.
            Some("unverified") => return Ok(ExitCode::from(2)),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Prints each step of each batch once, and the rollout's state when it changes.
#[derive(Default)]
struct Printer {
    seen: Vec<String>,
}

impl Printer {
    fn show(&mut self, r: &Value) {
        let n = r["batches"].as_array().map(Vec::len).unwrap_or(0);
        for b in r["batches"].as_array().into_iter().flatten() {
            let backends: Vec<&str> = b["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for s in b["steps"].as_array().into_iter().flatten() {
                let line = match s["note"].as_str() {
                    Some(note) => format!("  {}: {note}", s["step"].as_str().unwrap_or("?")),
                    None => format!("  {}…", s["step"].as_str().unwrap_or("?")),
                };
                let key = format!("{}|{line}", b["index"]);
                if !self.seen.contains(&key) {
                    let header = format!("batch {}/{n} [{}]", b["index"], backends.join(" "));
                    if !self.seen.contains(&header) {
                        println!("{header}");
                        self.seen.push(header);
                    }
                    println!("{line}");
                    self.seen.push(key);
                }
            }
        }
        let state = format!(
            "rollout {}: {}",
            r["state"].as_str().unwrap_or("?"),
            r["reason"].as_str().unwrap_or("")
        );
        if self.seen.last() != Some(&state) && !r["reason"].is_null() {
            println!("{state}");
            self.seen.push(state);
        }
    }
}

/// One request to the control API: the status and the JSON answer.
fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let hostport = target
        .api
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--api must be http://host:port, not {:?}", target.api))?
        .trim_end_matches('/');
    let mut stream =
        TcpStream::connect(hostport).with_context(|| format!("connecting to {hostport}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.token,
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("reading the answer")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head:?}"))?;
    let json = serde_json::from_str(body).unwrap_or_else(|_| json!({ "error": body }));
    Ok((status, json))
}
