//! Replacing a batch: run a named `[rollout.commands.NAME]` or call a named
//! `[rollout.webhooks.NAME]`, with the batch in the environment or the JSON body.
//!
//! A command runs without a shell; its environment carries `SWITCHYARD_ROLLOUT_BACKENDS`
//! (the batch's addresses, space separated), `SWITCHYARD_ROLLOUT_UPSTREAM`,
//! `SWITCHYARD_ROLLOUT_BATCH` (from 1) and `SWITCHYARD_ROLLOUT_VERSION` (when the request
//! named one). Its output is kept (the last [`KEEP_OUTPUT`] bytes); it is killed at its
//! timeout. The process is waited for, not its pipes: a daemon it leaves behind that
//! keeps stdout open does not hold the step up.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use switchyard_config::{RolloutCommand, RolloutWebhook};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::applier::lock;

/// Output kept of a replace command.
pub const KEEP_OUTPUT: usize = 8 * 1024;

/// What a replace did: `Ok` with its output, or why it failed (with its output).
pub type Replaced = Result<String, String>;

/// The batch, as a command or webhook receives it.
pub struct Batch<'a> {
    pub upstream: &'a str,
    /// From 1.
    pub number: usize,
    pub backends: &'a [String],
    pub version: Option<&'a str>,
}

/// Run `cmd` for `batch` and wait for it (at most its timeout).
pub async fn run_command(
    cmd: &RolloutCommand,
    batch: &Batch<'_>,
    abort: &watch::Receiver<bool>,
) -> Replaced {
    let mut command = Command::new(&cmd.argv[0]);
    command
        .args(&cmd.argv[1..])
        .env("SWITCHYARD_ROLLOUT_BACKENDS", batch.backends.join(" "))
        .env("SWITCHYARD_ROLLOUT_UPSTREAM", batch.upstream)
        .env("SWITCHYARD_ROLLOUT_BATCH", batch.number.to_string())
        .env("SWITCHYARD_ROLLOUT_VERSION", batch.version.unwrap_or(""))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.argv[0]))?;
    let output = Arc::new(Mutex::new(Vec::new()));
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let output = output.clone();
        std::thread::spawn(move || keep(pipe, &output));
    }
    let deadline = Instant::now() + cmd.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if *abort.borrow() => {
                let _ = child.kill();
                let _ = child.wait();
                break Err("killed: the rollout was aborted".to_string());
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "killed after its timeout of {}",
                    humantime::format_duration(cmd.timeout)
                ));
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => break Err(format!("cannot wait for it: {e}")),
        }
    };
    // Let the readers catch the last lines (not the pipes of a daemon it left behind).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = String::from_utf8_lossy(&lock(&output)).into_owned();
    match status {
        Ok(s) if s.success() => Ok(text),
        Ok(s) => Err(format!("exited with {s}; output: {text}")),
        Err(why) => Err(format!("{why}; output: {text}")),
    }
}

/// Append what `pipe` says to `output`, keeping the last [`KEEP_OUTPUT`] bytes.
fn keep(mut pipe: Box<dyn Read + Send>, output: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        let mut out = lock(output);
        out.extend_from_slice(&buf[..n]);
        let over = out.len().saturating_sub(KEEP_OUTPUT);
        out.drain(..over);
    }
}

/// `POST` the batch to `hook` as JSON; a 2xx answer within its timeout is a success.
pub async fn call_webhook(hook: &RolloutWebhook, batch: &Batch<'_>) -> Replaced {
    let body = serde_json::json!({
        "upstream": batch.upstream,
        "batch": batch.number,
        "backends": batch.backends,
        "version": batch.version,
    });
    let attempt = async {
        let uri: http::Uri = hook.url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = http::Request::post(path)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(KEEP_OUTPUT)]).into_owned();
        let answer = format!("{status}: {text}");
        if status.is_success() {
            Ok(answer)
        } else {
            Err(answer)
        }
    };
    match tokio::time::timeout(hook.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(hook.timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> (Vec<String>, &'static str) {
        (vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()], "api")
    }

    #[tokio::test]
    async fn a_command_sees_the_batch_in_its_environment_not_its_arguments() {
        let (backends, upstream) = batch();
        let b = Batch {
            upstream,
            number: 1,
            backends: &backends,
            version: Some("v2"),
        };
        let cmd = RolloutCommand {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo \"$SWITCHYARD_ROLLOUT_BACKENDS|$SWITCHYARD_ROLLOUT_VERSION|$#\"".into(),
            ],
            timeout: Duration::from_secs(5),
        };
        let out = run_command(&cmd, &b, &watch::channel(false).1).await;
        assert_eq!(out, Ok("127.0.0.1:1 127.0.0.1:2|v2|0\n".into()));
        let fail = RolloutCommand {
            argv: vec!["/bin/sh".into(), "-c".into(), "echo no >&2; exit 3".into()],
            timeout: Duration::from_secs(5),
        };
        let out = run_command(&fail, &b, &watch::channel(false).1)
            .await
            .err()
            .unwrap_or_default();
        assert!(
            out.contains("exit status: 3") && out.contains("no"),
            "{out}"
        );
        let slow = RolloutCommand {
            argv: vec!["/bin/sleep".into(), "10".into()],
            timeout: Duration::from_millis(200),
        };
        let started = Instant::now();
        let out = run_command(&slow, &b, &watch::channel(false).1)
            .await
            .err()
            .unwrap_or_default();
        assert!(out.contains("timeout"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
