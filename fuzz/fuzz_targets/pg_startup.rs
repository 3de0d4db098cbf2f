//! The packets that open a connection: the length check (`body_len`) and `parse` of
//! `SSLRequest`, `GSSENCRequest`, `CancelRequest` and `StartupMessage`.
//!
//! Properties: a declared length is accepted only within PostgreSQL's bounds; every refusal
//! has a client error unless the client is gone; a parsed packet re-encoded with
//! `postgres-protocol`'s writers (what a real client sends) parses back to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postgres_protocol::message::frontend;
use switchyard_pgwire::startup::{self, Packet, MAX_STARTUP_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((header, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    match startup::body_len(*header) {
        Ok(len) => {
            assert!((4..=MAX_STARTUP_LEN - 4).contains(&len));
            assert_eq!(len + 4, i32::from_be_bytes(*header) as usize);
        }
        Err(e) => assert!(e.to_client().is_some()),
    }
    match startup::parse(body) {
        Err(e) => {
            assert!(
                e.to_client().is_some(),
                "a refusal the client is not told about"
            );
        }
        Ok(packet) => round_trip(&packet),
    }
});

fn reparse(wire: &BytesMut) -> Packet {
    let header = [wire[0], wire[1], wire[2], wire[3]];
    let len = startup::body_len(header).unwrap_or_else(|e| panic!("our own packet: {e}"));
    assert_eq!(len, wire.len() - 4);
    startup::parse(&wire[4..]).unwrap_or_else(|e| panic!("our own packet: {e}"))
}

fn round_trip(packet: &Packet) {
    let mut wire = BytesMut::new();
    match packet {
        Packet::SslRequest => frontend::ssl_request(&mut wire),
        Packet::GssEncRequest => return,
        Packet::Cancel { pid, secret } => {
            frontend::cancel_request(*pid as i32, *secret as i32, &mut wire)
        }
        Packet::Startup(p) => {
            let _ = (
                p.user(),
                p.database(),
                p.protocol_options(),
                p.is_replication(),
            );
            if let Err(e) = p.user() {
                assert!(e.to_client().is_some());
            }
            let params = p.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            if frontend::startup_message(params, &mut wire).is_err() {
                // postgres-protocol refuses only strings with a NUL, which parse never yields.
                panic!("parse yielded a parameter with a NUL: {p:?}");
            }
            if wire.len() > MAX_STARTUP_LEN {
                return;
            }
            // Protocol 3.0: compare the parameters (the minor version asked may differ).
            match reparse(&wire) {
                Packet::Startup(q) => assert_eq!((q.minor, &q.params), (0, &p.params)),
                other => panic!("re-encoded startup reads as {other:?}"),
            }
            return;
        }
    }
    assert_eq!(&reparse(&wire), packet);
    let ours = startup::ssl_request();
    assert_eq!(reparse(&BytesMut::from(&ours[..])), Packet::SslRequest);
}
