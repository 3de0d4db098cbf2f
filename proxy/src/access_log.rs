//! The HTTP access log: one line per request, per listener, `combined` or JSON, to a file or
//! to stderr, written off the request path.
//!
//! [`AccessLogs`] lives in the plane and outlives reloads: it hands out each listener's
//! [`Sink`] (its destination, bounded buffer and writer thread), reusing the open one while
//! the listener's destination and buffer size are unchanged, and reopens every file on
//! SIGUSR1. A runtime holds a [`ListenerLog`] per logging listener: the format, and the sink.
//! A sink whose last runtime is gone ends its thread after writing what is left.
//!
//! Series: `switchyard_http_access_log_lines_total{listener}` (written),
//! `switchyard_http_access_log_dropped_total{listener, reason}` (`full`: the writer had
//! fallen `buffer_lines` behind; `write_error`).

mod line;
mod sink;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use switchyard_config::{AccessLog, AccessLogFormat};

pub use line::{redact_query, secret_param, Entry, REDACTED};
pub use sink::{Sink, SHARDS, TICK};

/// One listener's access log in a runtime: how lines are written and where they go.
#[derive(Debug)]
pub struct ListenerLog {
    pub format: AccessLogFormat,
    sink: Arc<Sink>,
}

impl ListenerLog {
    /// Format `entry` into the writer's buffer (dropped and counted if it is behind).
    pub fn write(&self, entry: &Entry<'_>) {
        match self.format {
            AccessLogFormat::Combined => self.sink.append(|out| entry.combined(out)),
            AccessLogFormat::Json => self.sink.append(|out| entry.json(out)),
        }
    }
}

/// Every listener's sink, for reuse across reloads and for reopening.
#[derive(Debug, Default)]
pub struct AccessLogs {
    /// Sinks handed out; the dead ones are pruned when a new one is made.
    sinks: Mutex<Vec<Weak<Sink>>>,
}

impl AccessLogs {
    fn live(&self) -> Vec<Arc<Sink>> {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        sinks.iter().filter_map(Weak::upgrade).collect()
    }

    /// The log of `listener` for `config`: its open sink if one has the same destination and
    /// buffer size, else a new one (the file is opened now, so a bad path fails the apply).
    pub fn listener_log(&self, listener: &str, config: &AccessLog) -> std::io::Result<ListenerLog> {
        let same = |s: &Arc<Sink>| {
            s.listener == listener
                && s.config.destination == config.destination
                && s.config.buffer_lines == config.buffer_lines
        };
        let sink = match self.live().into_iter().find(same) {
            Some(s) => s,
            None => {
                let s = Arc::new(Sink::open(listener, config)?);
                let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
                sinks.retain(|w| w.strong_count() > 0);
                sinks.push(Arc::downgrade(&s));
                s
            }
        };
        Ok(ListenerLog {
            format: config.format,
            sink,
        })
    }

    /// Reopen every log file (at each writer's next tick), for logrotate. Returns how many
    /// sinks were asked.
    pub fn reopen(&self) -> usize {
        let live = self.live();
        live.iter().for_each(|s| s.reopen());
        live.len()
    }

    /// Write every waiting line, waiting up to `timeout` in all (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let acks: Vec<_> = self.live().iter().map(|s| s.flush()).collect();
        for ack in acks {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = ack.recv_timeout(left);
        }
    }
}

#[cfg(test)]
mod tests;
