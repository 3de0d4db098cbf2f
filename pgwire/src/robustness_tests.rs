//! Every entry point of the crate fed random bytes: none may panic, whatever comes in. (The
//! fuzz targets of issue 15 go further; this keeps the promise checked on every test run.)

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use rand::Rng;

use crate::frame::{self, Frame, Scanner};
use crate::login::Login;
use crate::scram::{ScramKeys, ScramServer};
use crate::{backend, frontend, startup};

/// Random bytes, biased towards the values parsers branch on.
fn noise(rng: &mut impl Rng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..max);
    (0..len)
        .map(|_| match rng.random_range(0..4) {
            0 => 0,
            1 => [b'S', b'Z', b'E', b'R', b'p', b'Q', b'=', b',', 0xff][rng.random_range(0..9)],
            _ => rng.random(),
        })
        .collect()
}

#[test]
fn framing_and_packets_never_panic() {
    let mut rng = rand::rng();
    let limits: [fn(u8) -> Option<usize>; 3] = [
        frame::frontend_limit,
        frame::backend_limit,
        frame::auth_limit,
    ];
    for _ in 0..20_000 {
        let bytes = noise(&mut rng, 64);
        for limit in limits {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = frame::decode(&mut buf, limit) {}
            let _ = frame::peek(&mut BytesMut::from(&bytes[..]), limit);
            let mut scanner = Scanner::new(limit);
            let _ = scanner.feed(&bytes, |t| t == b'X');
        }
        let _ = startup::parse(&bytes);
        if let Some(head) = bytes.first_chunk::<4>() {
            let _ = startup::body_len(*head);
        }
        let _ = (
            frontend::parse(&bytes),
            frontend::bind(&bytes),
            frontend::target(b'C', &bytes),
            frontend::query(&bytes),
            frontend::sasl_initial_response(&bytes),
            frontend::password(&bytes),
        );
        let _ = (
            backend::parameter_status_fields(&bytes),
            backend::data_row(&bytes),
            backend::first_column(&bytes),
            backend::error_message(&bytes),
            backend::error_code(&bytes),
            backend::error_is_fatal(&bytes),
        );
    }
}

#[test]
fn authentication_exchanges_never_panic() {
    let mut rng = rand::rng();
    let keys = ScramKeys::derive::<sha2::Sha256>("pw", b"salt", 16);
    for _ in 0..5_000 {
        let mut server = ScramServer::<sha2::Sha256>::with_nonce(keys.clone(), "nonce".into());
        let first = noise(&mut rng, 48);
        let _ = server.server_first(&first);
        let _ = server.server_final(&noise(&mut rng, 96));
        let mut valid = ScramServer::<sha2::Sha256>::with_nonce(keys.clone(), "nonce".into());
        if valid.server_first(b"n,,n=u,r=abc").is_ok() {
            let _ = valid.server_final(&noise(&mut rng, 96));
        }

        let mut login = Login::new("app", Some("pw"), rng.random());
        let (mut out, mut notices) = (BytesMut::new(), BytesMut::new());
        for _ in 0..4 {
            let tag = [b'R', b'S', b'K', b'Z', b'E', b'N', b'v', b'D'][rng.random_range(0..8)];
            let frame = Frame {
                tag,
                body: BytesMut::from(&noise(&mut rng, 24)[..]),
            };
            if login.step(frame, &mut out, &mut notices).is_err() {
                break;
            }
        }
    }
}
