//! [`Sink`]: one listener's access log destination, a bounded buffer of lines and the thread
//! that writes them.
//!
//! A request only formats its line and offers it to the buffer ([`Sink::send`]): when the
//! buffer is full the line is dropped and counted, so a slow disk or a blocked stderr never
//! holds a request. The writer thread wakes every [`TICK`], takes every line waiting, writes
//! them in as few `write` calls as it can and sleeps again. It does not block on the buffer:
//! a receiver that waits must be woken by a sender, a system call on the request path for
//! nearly every line when traffic is light. Files are opened for appending and written in
//! batches of whole lines, so two sinks on one file (two listeners, or the old and the new
//! sink across a reload) never cut each other's lines.
//!
//! Reopen (SIGUSR1, after logrotate renamed the file) and flush (at shutdown) are control
//! messages the thread takes at its next tick.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;
use std::time::Duration;

use metrics::Counter;
use switchyard_config::{AccessLog, LogDestination};

/// How often the writer takes the waiting lines: the longest a line waits to be written.
pub const TICK: Duration = Duration::from_millis(50);

/// Lines are written in batches of about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// What the writer is asked to do besides writing lines.
enum Control {
    /// Close the file and open the path again (it was renamed by logrotate).
    Reopen,
    /// Write what is waiting, then answer.
    Flush(SyncSender<()>),
}

/// One listener's access log destination and its writer.
pub struct Sink {
    pub(super) listener: String,
    pub(super) config: AccessLog,
    lines: SyncSender<String>,
    control: Mutex<Sender<Control>>,
    dropped_full: Counter,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish()
    }
}

/// Where the writer writes.
enum Output {
    Stderr,
    File(File),
}

impl Output {
    fn open(destination: &LogDestination) -> io::Result<Output> {
        match destination {
            LogDestination::Stderr => Ok(Output::Stderr),
            // Client addresses and paths are personal data: not readable by everyone.
            LogDestination::File(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(path)
                .map(Output::File),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stderr => io::stderr().lock().write_all(bytes),
            Output::File(f) => f.write_all(bytes),
        }
    }
}

impl Sink {
    /// Open `config`'s destination for `listener` and start its writer thread. The thread
    /// ends, after writing what is left, once the sink is dropped.
    pub(super) fn open(listener: &str, config: &AccessLog) -> io::Result<Sink> {
        let output = Output::open(&config.destination)?;
        let (lines, rx) = mpsc::sync_channel(config.buffer_lines);
        let (control, control_rx) = mpsc::channel();
        let writer = Writer {
            listener: listener.to_string(),
            destination: config.destination.clone(),
            output,
            written: metrics::counter!("switchyard_http_access_log_lines_total", "listener" => listener.to_string()),
            dropped_write: metrics::counter!("switchyard_http_access_log_dropped_total", "listener" => listener.to_string(), "reason" => "write_error"),
            failing: false,
        };
        std::thread::Builder::new()
            .name(format!("access-log-{listener}"))
            .spawn(move || writer.run(rx, control_rx))?;
        Ok(Sink {
            listener: listener.to_string(),
            config: config.clone(),
            lines,
            control: Mutex::new(control),
            dropped_full: metrics::counter!("switchyard_http_access_log_dropped_total", "listener" => listener.to_string(), "reason" => "full"),
        })
    }

    /// Offer a line to the writer; dropped (and counted) when the buffer is full.
    pub fn send(&self, line: String) {
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped_full.increment(1)
            }
        }
    }

    fn control(&self, c: Control) {
        let tx = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(c);
    }

    /// Ask the writer to reopen its file at its next tick.
    pub(super) fn reopen(&self) {
        self.control(Control::Reopen);
    }

    /// Ask the writer to write what is waiting; the answer arrives on the returned channel.
    pub(super) fn flush(&self) -> Receiver<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.control(Control::Flush(tx));
        rx
    }
}

/// The writer thread's side.
struct Writer {
    listener: String,
    destination: LogDestination,
    output: Output,
    written: Counter,
    dropped_write: Counter,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<String>, control: Receiver<Control>) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        loop {
            std::thread::sleep(TICK);
            let mut flushed = Vec::new();
            while let Ok(c) = control.try_recv() {
                match c {
                    Control::Reopen => self.reopen(),
                    Control::Flush(ack) => flushed.push(ack),
                }
            }
            let closed = self.drain(&rx, &mut batch);
            for ack in flushed {
                let _ = ack.try_send(());
            }
            if closed {
                return;
            }
        }
    }

    /// Write every line waiting; `true` when the sink is gone (all is written then).
    fn drain(&mut self, rx: &Receiver<String>, batch: &mut Vec<u8>) -> bool {
        let mut count = 0u64;
        let closed = loop {
            match rx.try_recv() {
                Ok(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    count += 1;
                    if batch.len() >= BATCH_BYTES {
                        self.write(batch, count);
                        count = 0;
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        self.write(batch, count);
        closed
    }

    fn write(&mut self, batch: &mut Vec<u8>, count: u64) {
        if count == 0 {
            return;
        }
        match self.output.write_all(batch) {
            Ok(()) => {
                self.written.increment(count);
                self.failing = false;
            }
            Err(e) => {
                self.dropped_write.increment(count);
                if !self.failing {
                    tracing::warn!(listener = %self.listener, error = %e, "access log lines lost: write failed");
                }
                self.failing = true;
            }
        }
        batch.clear();
    }

    fn reopen(&mut self) {
        match Output::open(&self.destination) {
            Ok(o) => {
                self.output = o;
                tracing::info!(listener = %self.listener, "access log reopened");
            }
            // Keep writing to the file that is open: lines are not lost, only misplaced.
            Err(e) => {
                tracing::warn!(listener = %self.listener, error = %e, "access log not reopened")
            }
        }
    }
}
