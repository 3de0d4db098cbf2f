//! [`Sink`]: one listener's access log destination, the buffers lines wait in and the thread
//! that writes them.
//!
//! A request formats its line straight into a buffer of the sink ([`Sink::append`]) and goes
//! on: no allocation, no channel, no wake-up. The sink has [`SHARDS`] buffers, each behind its
//! own lock, and a worker thread always appends to the same one, so two workers rarely meet on
//! a lock and one worker's lines stay in order. When [`AccessLog::buffer_lines`] lines wait
//! unwritten, a new line is dropped and counted, so a slow disk or a blocked stderr never
//! holds a request. The writer thread wakes every [`TICK`], swaps each buffer for an empty
//! one (their capacity is kept, so a steady load allocates nothing) and writes what it took,
//! a batch of whole lines per `write` call. It does not block waiting for lines: a waiting
//! thread must be woken by the request path, a system call for nearly every line when
//! traffic is light. Files are opened for appending and written in whole lines, so two sinks
//! on one file (two listeners, or the old and the new sink across a reload) never cut each
//! other's lines.
//!
//! Reopen (SIGUSR1, after logrotate renamed the file) and flush (at shutdown) are control
//! messages the thread takes at its next tick; the sink's end (its control channel closing)
//! makes the thread write what is left and stop.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;
use switchyard_config::{AccessLog, LogDestination};

/// How often the writer takes the waiting lines: the longest a line waits to be written.
pub const TICK: Duration = Duration::from_millis(50);

/// Buffers per sink: more than a runtime has worker threads, so each worker has its own.
pub const SHARDS: usize = 8;

/// A buffer that grew past this (a burst) is given back after it is written.
const KEEP_BYTES: usize = 1 << 20;

/// Lines waiting in one shard.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// What the request path and the writer share.
struct Buffers {
    shards: [Mutex<Batch>; SHARDS],
    /// Lines appended and not yet taken by the writer.
    waiting: AtomicUsize,
}

/// This thread's shard, the same for every sink: given out round robin on first use.
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

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
    limit: usize,
    buffers: Arc<Buffers>,
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
        let buffers = Arc::new(Buffers {
            shards: Default::default(),
            waiting: AtomicUsize::new(0),
        });
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
            .spawn({
                let buffers = buffers.clone();
                move || writer.run(&buffers, control_rx)
            })?;
        Ok(Sink {
            listener: listener.to_string(),
            config: config.clone(),
            limit: config.buffer_lines,
            buffers,
            control: Mutex::new(control),
            dropped_full: metrics::counter!("switchyard_http_access_log_dropped_total", "listener" => listener.to_string(), "reason" => "full"),
        })
    }

    /// Append one line, written by `format` (which ends it with a newline), to this thread's
    /// buffer; dropped (and counted) when `buffer_lines` lines already wait.
    pub fn append(&self, format: impl FnOnce(&mut Vec<u8>)) {
        if self.buffers.waiting.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.buffers.waiting.fetch_sub(1, Ordering::Relaxed);
            self.dropped_full.increment(1);
            return;
        }
        let shard = &self.buffers.shards[my_shard()];
        let mut batch = shard.lock().unwrap_or_else(|p| p.into_inner());
        format(&mut batch.bytes);
        batch.lines += 1;
    }

    /// Append `line` as it is (tests, and lines formatted elsewhere).
    pub fn send(&self, line: &str) {
        self.append(|out| out.extend_from_slice(line.as_bytes()))
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
    fn run(mut self, buffers: &Buffers, control: Receiver<Control>) {
        let mut spare = Batch::default();
        loop {
            std::thread::sleep(TICK);
            let mut flushed = Vec::new();
            let closed = loop {
                match control.try_recv() {
                    Ok(Control::Reopen) => self.reopen(),
                    Ok(Control::Flush(ack)) => flushed.push(ack),
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            self.drain(buffers, &mut spare);
            for ack in flushed {
                let _ = ack.try_send(());
            }
            if closed {
                return;
            }
        }
    }

    /// Take and write every shard's waiting lines.
    fn drain(&mut self, buffers: &Buffers, spare: &mut Batch) {
        for shard in &buffers.shards {
            {
                let mut batch = shard.lock().unwrap_or_else(|p| p.into_inner());
                if batch.lines == 0 {
                    continue;
                }
                std::mem::swap(&mut *batch, spare);
            }
            let lines = usize::try_from(spare.lines).unwrap_or(usize::MAX);
            buffers.waiting.fetch_sub(lines, Ordering::Relaxed);
            self.write(&spare.bytes, spare.lines);
            spare.bytes.clear();
            spare.lines = 0;
            if spare.bytes.capacity() > KEEP_BYTES {
                spare.bytes = Vec::new();
            }
        }
    }

    fn write(&mut self, bytes: &[u8], count: u64) {
        match self.output.write_all(bytes) {
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
