//! What the access log costs a request, in a release build and without the machine's noise:
//! the work done on the request path by `ListenerLog::write` (format the line, hand it to the
//! writer's buffer), for each format.
//! - `format/combined`, `format/json`: formatting alone, into a reused buffer;
//! - `write/combined`, `write/json`: a line formatted straight into a real sink's buffer, whose
//!   writer thread appends to `/dev/null` (the buffer is sized so that nothing is dropped).
//!
//! `benches/http_compare.sh` with `ACCESS_LOG` measures the same cost end to end, in
//! requests/s and CPU per request. Run: `cargo bench --bench access_log`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use switchyard_config::{AccessLog, AccessLogFormat, LogDestination};
use switchyard_proxy::access_log::{AccessLogs, Entry};

/// A typical proxied request: a query, a browser's user agent, a generated request id.
fn entry() -> Entry<'static> {
    Entry {
        time: SystemTime::now(),
        listener: "public",
        client: Some([203, 0, 113, 7].into()),
        method: "GET",
        path: "/api/v1/orders/48213",
        query: Some("page=2&sort=desc"),
        protocol: "HTTP/1.1",
        status: 200,
        bytes_sent: 1834,
        referer: Some(b"https://shop.example.com/orders"),
        user_agent: Some(
            b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        ),
        request_time: Duration::from_micros(2_345),
        upstream_time: Some(Duration::from_micros(2_101)),
        upstream: Some("api"),
        pool: Some("blue"),
        backend: Some("10.0.3.17:8080"),
        attempts: 1,
        retries: &[],
        request_id: Some(b"4f0c1d6e9b2a47c3a1e5d8f7b6c4a392"),
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(50);
    let e = entry();
    let mut line = Vec::with_capacity(512);
    c.bench_function("format/combined", |b| {
        b.iter(|| {
            line.clear();
            black_box(&e).combined(&mut line);
            black_box(line.len())
        })
    });
    c.bench_function("format/json", |b| {
        b.iter(|| {
            line.clear();
            black_box(&e).json(&mut line);
            black_box(line.len())
        })
    });
    let logs = AccessLogs::default();
    for (name, format) in [
        ("write/combined", AccessLogFormat::Combined),
        ("write/json", AccessLogFormat::Json),
    ] {
        let config = AccessLog {
            format,
            destination: LogDestination::File(PathBuf::from("/dev/null")),
            buffer_lines: 1 << 20,
        };
        let log = match logs.listener_log(name, &config) {
            Ok(log) => log,
            Err(err) => panic!("opening /dev/null: {err}"),
        };
        c.bench_function(name, |b| b.iter(|| log.write(black_box(&e))));
        logs.flush(Duration::from_secs(5));
    }
    c.final_summary();
}
