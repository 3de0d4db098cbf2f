//! SCRAM-SHA-256, both sides.
//!
//! - Server side (a client logging in to the router): `ScramServer` fed arbitrary
//!   client-first and client-final messages must refuse or answer, never panic; and a real
//!   client (`postgres-protocol`'s, what libpq-compatible drivers do) with a fuzzed password
//!   must authenticate against keys derived from that password, and fail with any other.
//! - Client side (the router logging in to a server): the `Login` machine fed an arbitrary
//!   server stream (its SASL messages included) must finish, refuse or wait, never panic.
//!
//! Iterations are kept small (the harness skips server-first messages asking for more than
//! 4096, PostgreSQL's default): PBKDF2's cost is the point of SCRAM, not a bug.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use sha2::Sha256;
use switchyard_pgwire::frame;
use switchyard_pgwire::login::Login;
use switchyard_pgwire::scram::{ScramError, ScramKeys, ScramServer};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => server_messages(rest),
        1 => real_client(rest, mode),
        _ => client_side(rest, mode),
    }
});

fn keys(password: &str, iterations: u32) -> ScramKeys {
    ScramKeys::derive::<Sha256>(password, b"fuzz-salt", iterations)
}

fn server_messages(data: &[u8]) {
    let mut parts = data.splitn(2, |&b| b == 0xff);
    let first = parts.next().unwrap_or(b"");
    let last = parts.next().unwrap_or(b"");
    let mut server = ScramServer::<Sha256>::with_nonce(keys("pencil", 1), "SERVERNONCE".into());
    match server.server_first(first) {
        Ok(reply) => {
            assert!(
                reply.starts_with("r=") && reply.contains("SERVERNONCE,s="),
                "{reply}"
            );
            // Nobody knows the proof for random bytes: anything but a match is fine, and a
            // match would mean the proof check is broken.
            match server.server_final(last) {
                Ok(_) => panic!(
                    "a forged client-final was accepted: {:?}",
                    String::from_utf8_lossy(last)
                ),
                Err(e) => drop(e.to_string()),
            }
        }
        Err(e) => {
            drop(e.to_string());
            assert!(matches!(
                server.server_final(last),
                Err(ScramError::OutOfOrder)
            ));
        }
    }
}

fn real_client(data: &[u8], mode: u8) {
    let (password, other) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"x"[..]),
    };
    let (Ok(password), Ok(other)) = (std::str::from_utf8(password), std::str::from_utf8(other))
    else {
        return;
    };
    let iterations = 1 + u32::from(mode >> 4);
    let server_keys = keys(password, iterations);
    for (tried, should_pass) in [(password, true), (other, false)] {
        // Two texts that SASLprep makes equal are the same password.
        if !should_pass && keys(tried, iterations).stored_key == server_keys.stored_key {
            continue;
        }
        let mut server =
            ScramServer::<Sha256>::with_nonce(server_keys.clone(), "SERVERNONCE".into());
        let mut client = ScramSha256::new(tried.as_bytes(), ChannelBinding::unsupported());
        let first = server
            .server_first(client.message())
            .unwrap_or_else(|e| panic!("our server refuses a real client-first: {e}"));
        client
            .update(first.as_bytes())
            .unwrap_or_else(|e| panic!("a real client refuses our server-first {first:?}: {e}"));
        match server.server_final(client.message()) {
            Ok(fin) if should_pass => {
                client
                    .finish(fin.as_bytes())
                    .unwrap_or_else(|e| panic!("a real client refuses our signature: {e}"));
            }
            Ok(_) => panic!("password {tried:?} accepted for {password:?}"),
            Err(ScramError::WrongProof) if !should_pass => {}
            Err(e) => panic!("password {tried:?} for {password:?}: {e}"),
        }
    }
}

fn client_side(data: &[u8], mode: u8) {
    let mut buf = BytesMut::from(data);
    let mut login = Login::new("app", Some("pencil"), mode & 8 != 0);
    let mut out = BytesMut::new();
    let mut notices = BytesMut::new();
    while let Ok(Some(f)) = frame::decode(&mut buf, frame::backend_limit) {
        if f.tag == b'R' && asks_many_iterations(&f.body) {
            return;
        }
        match login.step(f, &mut out, &mut notices) {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return,
        }
    }
}

/// A `SASLContinue` whose server-first asks for more than 4096 iterations.
fn asks_many_iterations(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body.get(4..).unwrap_or(b""));
    text.split(',')
        .filter_map(|a| a.strip_prefix("i="))
        .any(|i| i.parse::<u64>().map_or(true, |n| n > 4096))
}
