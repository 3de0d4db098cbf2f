//! Client → router bytes: the frame scanner and `decode`/`peek` under the logged-in and the
//! authentication limits, then every frontend reader on each whole message.
//!
//! Properties beyond "no panic":
//! - the streaming `Scanner` fed in arbitrary chunks finds the same boundaries, error and
//!   `ReadyForQuery` state as one feed of the whole stream, and agrees with `decode`;
//! - each reader's result re-encodes with the matching writer to bytes that read back the
//!   same (`Parse`, `Bind`, `Describe`/`Close` re-encode to the very same message).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_pgwire::frame::{self, Frame, Scanner, HEADER_LEN};
use switchyard_pgwire::frontend;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limit: fn(u8) -> Option<usize> = if mode & 1 == 0 {
        frame::frontend_limit
    } else {
        frame::auth_limit
    };
    // The low bits of the next byte choose chunk sizes for the chunked scan.
    let Some((&chunking, stream)) = rest.split_first() else {
        return;
    };
    let frames = decode_all(stream, limit);
    scan_agrees(stream, limit, chunking, &frames);
    for f in frames.iter().flatten() {
        readers(f);
    }
});

/// Every whole message `decode` takes off `stream`, then `Err(())` if it stopped at a bad
/// header (nothing after an incomplete message).
fn decode_all(stream: &[u8], limit: fn(u8) -> Option<usize>) -> Vec<Result<Frame, ()>> {
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    loop {
        let before = buf.len();
        match frame::peek(&mut buf, limit) {
            Ok(Some((tag, len))) => assert!(buf.len() >= HEADER_LEN + len && buf[0] == tag),
            Ok(None) => {}
            Err(_) => {}
        }
        assert_eq!(buf.len(), before, "peek consumes nothing");
        match frame::decode(&mut buf, limit) {
            Ok(Some(f)) => {
                assert_eq!(before - buf.len(), HEADER_LEN + f.body.len());
                out.push(Ok(f));
            }
            Ok(None) => return out,
            Err(_) => {
                out.push(Err(()));
                return out;
            }
        }
    }
}

fn scan_agrees(
    stream: &[u8],
    limit: fn(u8) -> Option<usize>,
    chunking: u8,
    frames: &[Result<Frame, ()>],
) {
    // One feed of everything.
    let mut whole = Scanner::new(limit);
    let one = whole.feed(stream, |_| false);
    // The same bytes in chunks, carrying what was left over as a relay does.
    let mut chunked = Scanner::new(limit);
    let mut pending: Vec<u8> = Vec::new();
    let mut forwarded = 0usize;
    let mut failed = false;
    let mut at = 0;
    let mut step = 0u32;
    while at < stream.len() {
        let size = 1 + ((chunking as usize >> (step % 4 * 2)) & 3) * 3;
        step += 1;
        let end = (at + size).min(stream.len());
        pending.extend_from_slice(&stream[at..end]);
        at = end;
        match chunked.feed(&pending, |_| false) {
            Ok(scan) => {
                assert!(!scan.stopped && scan.forward <= pending.len());
                forwarded += scan.forward;
                pending.drain(..scan.forward);
                assert!(
                    pending.len() < HEADER_LEN,
                    "only a partial header is held back"
                );
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    match one {
        Ok(scan) => {
            assert!(!failed, "chunked scan failed where the whole scan did not");
            assert_eq!(scan.forward, forwarded);
            assert_eq!(whole.ready_status(), chunked.ready_status());
            assert_eq!(whole.at_boundary(), chunked.at_boundary());
        }
        Err(_) => {
            assert!(failed, "the whole scan failed, the chunked one did not");
            assert!(
                matches!(frames.last(), Some(Err(()))),
                "decode saw no bad header"
            );
        }
    }
    // `decode` fails exactly at a bad header, which the scanner reaches too.
    if matches!(frames.last(), Some(Err(()))) {
        assert!(one.is_err());
    }
    // Stopping at each message type: the scanner stops at a header `decode` also found.
    let complete: usize = frames
        .iter()
        .flatten()
        .map(|f| HEADER_LEN + f.body.len())
        .sum();
    if let Ok(scan) = one {
        assert!(scan.forward >= complete);
    }
    if let Some(Ok(first)) = frames.first() {
        let mut s = Scanner::new(limit);
        let tag = first.tag;
        if let Ok(scan) = s.feed(stream, |t| t == tag) {
            assert!(scan.stopped && scan.forward == 0);
        }
    }
}

fn readers(f: &Frame) {
    let body = &f.body[..];
    let wire = f.to_wire();
    assert_eq!(&wire[HEADER_LEN..], body);
    match f.tag {
        b'P' => {
            if let Ok(p) = frontend::parse(body) {
                let mut out = BytesMut::new();
                frontend::put_parse(&mut out, p.name, p.query, p.types);
                assert_eq!(out, wire, "Parse re-encodes to the same message");
                assert_eq!(frontend::parse(&out[HEADER_LEN..]), Ok(p));
            }
        }
        b'B' => {
            if let Ok(b) = frontend::bind(body) {
                let mut out = BytesMut::new();
                frontend::put_bind(&mut out, b.portal, b.statement, b.rest);
                assert_eq!(out, wire, "Bind re-encodes to the same message");
            }
        }
        b'D' | b'C' => {
            if let Ok(t) = frontend::target(f.tag, body) {
                let mut out = BytesMut::new();
                frontend::put_target(&mut out, f.tag, t.kind, t.name);
                assert_eq!(out, wire, "Describe/Close re-encodes to the same message");
            }
        }
        b'Q' => {
            if let Ok(q) = frontend::query(body) {
                if let Ok(sql) = std::str::from_utf8(q) {
                    let mut out = BytesMut::new();
                    frontend::put_query(&mut out, sql);
                    assert_eq!(frontend::query(&out[HEADER_LEN..]), Ok(q));
                }
            }
        }
        b'p' => {
            if let Ok(r) = frontend::sasl_initial_response(body) {
                if let Ok(d) = r.data {
                    assert!(d.len() <= body.len());
                }
            }
            let pw = frontend::password(body);
            assert!(pw.len() + 1 >= body.len());
        }
        _ => {}
    }
    // Any reader on any body: an error, never a panic.
    let _ = (
        frontend::parse(body),
        frontend::bind(body),
        frontend::target(b'D', body),
        frontend::query(body),
        frontend::sasl_initial_response(body),
    );
}
