//! Tests of the message framer: limits, whole-message decoding, and the streaming scanner fed
//! in every possible split of its input.

#![allow(clippy::unwrap_used)]

use super::*;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    Frame {
        tag,
        body: BytesMut::from(body),
    }
    .to_wire()
    .to_vec()
}

#[test]
fn decode_waits_for_the_whole_message() {
    let wire = msg(b'Q', b"select 1\0");
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(decode(&mut buf, frontend_limit), Ok(None), "cut at {cut}");
    }
    let mut buf = BytesMut::from(&wire[..]);
    buf.extend_from_slice(b"rest");
    let f = decode(&mut buf, frontend_limit).unwrap().unwrap();
    assert_eq!((f.tag, &f.body[..]), (b'Q', &b"select 1\0"[..]));
    assert_eq!(&buf[..], b"rest");
}

#[test]
fn decode_rejects_bad_headers_before_the_body_arrives() {
    // A declared 1 GB Sync: refused from the header alone.
    let mut buf = BytesMut::from(&[b'S', 0x40, 0, 0, 0][..]);
    assert!(matches!(
        decode(&mut buf, frontend_limit),
        Err(FrameError::TooLong { tag: b'S', .. })
    ));
    // A length below 4 cannot count itself.
    let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
    assert_eq!(
        decode(&mut buf, frontend_limit),
        Err(FrameError::BadLength { tag: b'Q', len: 3 })
    );
    let mut buf = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
    assert_eq!(
        decode(&mut buf, frontend_limit),
        Err(FrameError::BadLength { tag: b'Q', len: -1 })
    );
    // Garbage: 'h' is no client message.
    let mut buf = BytesMut::from(&b"hello world"[..]);
    assert_eq!(
        decode(&mut buf, frontend_limit),
        Err(FrameError::UnknownType(b'h'))
    );
    // A query may be large, a Sync may not.
    let mut big = [0u8; 5];
    big[0] = b'Q';
    big[1..].copy_from_slice(&(1_000_004i32).to_be_bytes());
    assert_eq!(check_header(&big, frontend_limit), Ok(1_000_000));
    big[0] = b'S';
    assert!(check_header(&big, frontend_limit).is_err());
}

#[test]
fn auth_limit_allows_only_password_messages() {
    assert_eq!(auth_limit(b'p'), Some(AUTH_LIMIT));
    assert_eq!(auth_limit(b'Q'), None);
    let mut buf = BytesMut::from(&msg(b'Q', b"select 1\0")[..]);
    assert_eq!(
        decode(&mut buf, auth_limit),
        Err(FrameError::UnknownType(b'Q'))
    );
}

/// Feed `wire` to a scanner in pieces the way the relay does: keep what it did not forward,
/// append the next piece. Returns the forwarded bytes and where it stopped.
fn relay(wire: &[u8], piece: usize, stop: u8) -> (Vec<u8>, bool, Option<u8>) {
    let mut scanner = Scanner::new(frontend_limit);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for chunk in wire.chunks(piece) {
        pending.extend_from_slice(chunk);
        let scan = scanner.feed(&pending, |t| t == stop).unwrap();
        out.extend_from_slice(&pending[..scan.forward]);
        pending.drain(..scan.forward);
        if scan.stopped {
            return (out, true, scanner.ready_status());
        }
    }
    assert!(pending.is_empty(), "left {pending:?}");
    assert!(scanner.at_boundary());
    (out, false, scanner.ready_status())
}

#[test]
fn scanner_passes_everything_in_any_split_and_stops_before_terminate() {
    let mut wire = msg(b'Q', b"select 1\0");
    wire.extend(msg(b'P', b"s1\0select $1\0\0\0"));
    wire.extend(msg(b'S', b""));
    let before_terminate = wire.len();
    wire.extend(msg(b'X', b""));
    wire.extend(msg(b'Q', b"never\0"));
    for piece in 1..=wire.len() {
        let (out, stopped, _) = relay(&wire, piece, b'X');
        assert!(stopped, "piece {piece}");
        assert_eq!(out, wire[..before_terminate], "piece {piece}");
    }
}

#[test]
fn scanner_remembers_the_last_ready_for_query_status() {
    let mut wire = msg(b'C', b"BEGIN\0");
    wire.extend(msg(b'Z', b"T"));
    wire.extend(msg(b'D', b"\0\x01\0\0\0\x01Z"));
    wire.extend(msg(b'Z', b"I"));
    let backend: fn(u8) -> Option<usize> = backend_limit;
    for piece in 1..=wire.len() {
        let mut scanner = Scanner::new(backend);
        let mut pending = Vec::new();
        let mut statuses = Vec::new();
        for chunk in wire.chunks(piece) {
            pending.extend_from_slice(chunk);
            let scan = scanner.feed(&pending, |_| false).unwrap();
            pending.drain(..scan.forward);
            statuses.push(scanner.ready_status());
        }
        assert_eq!(scanner.ready_status(), Some(b'I'), "piece {piece}");
        // 'T' was seen on the way whenever a chunk ended between the two ReadyForQuery.
        assert!(
            !statuses.contains(&Some(b'Z')),
            "a data byte was taken for a status"
        );
    }
}

#[test]
fn scanner_rejects_garbage_at_a_boundary() {
    let mut scanner = Scanner::new(frontend_limit);
    let mut wire = msg(b'Q', b"select 1\0");
    wire.extend_from_slice(b"\x01\x02\x03\x04\x05");
    assert_eq!(
        scanner.feed(&wire, |_| false),
        Err(FrameError::UnknownType(1))
    );
}
