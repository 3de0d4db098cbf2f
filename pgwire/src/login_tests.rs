//! The login machine against the router's own server side of each method (the writers of
//! [`crate::backend`] and the SCRAM server of [`crate::scram`]), and its refusals.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;

use super::*;
use crate::backend;
use crate::frame::{self, Frame};
use crate::scram::{ScramKeys, ScramServer};

/// The whole messages in `buf`, as a server's reader would take them.
fn frames(buf: &mut BytesMut, limit: fn(u8) -> Option<usize>) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(f) = frame::decode(buf, limit).unwrap() {
        out.push(f);
    }
    out
}

/// What a server says once the client is in: a parameter, its key, ready.
fn welcome(buf: &mut BytesMut) {
    backend::auth_ok(buf);
    backend::parameter_status(buf, "server_version", "15.0");
    backend::backend_key_data(buf, 7, 0xfeed);
    backend::ready_for_query(buf, b'I');
}

/// Feed every message of `server` to `login`; the answers it wrote come back.
fn feed(
    login: &mut Login<'_>,
    server: &mut BytesMut,
) -> (Result<Option<LoggedIn>, LoginError>, BytesMut) {
    let mut out = BytesMut::new();
    let mut notices = BytesMut::new();
    for f in frames(server, frame::backend_limit) {
        match login.step(f, &mut out, &mut notices) {
            Ok(None) => {}
            other => return (other, out),
        }
    }
    (Ok(None), out)
}

#[test]
fn scram_against_our_own_server() {
    let keys = ScramKeys::new("pencil");
    let mut server = ScramServer::new(keys);
    let mut login = Login::new("app", Some("pencil"), false);

    let mut s = BytesMut::new();
    backend::auth_sasl(&mut s, &[MECHANISM]);
    let (r, mut out) = feed(&mut login, &mut s);
    assert!(matches!(r, Ok(None)));
    let first = frames(&mut out, frame::auth_limit).remove(0);
    let initial = crate::frontend::sasl_initial_response(&first.body).unwrap();
    assert_eq!(initial.mechanism, MECHANISM.as_bytes());
    let server_first = server.server_first(initial.data.unwrap()).unwrap();

    let mut s = BytesMut::new();
    backend::auth_sasl_continue(&mut s, server_first.as_bytes());
    let (r, mut out) = feed(&mut login, &mut s);
    assert!(matches!(r, Ok(None)));
    let last = frames(&mut out, frame::auth_limit).remove(0);
    let server_final = server.server_final(&last.body).unwrap();

    let mut s = BytesMut::new();
    backend::auth_sasl_final(&mut s, server_final.as_bytes());
    welcome(&mut s);
    let (r, _) = feed(&mut login, &mut s);
    let done = r.unwrap().unwrap();
    assert_eq!((done.pid, done.secret, done.status), (7, 0xfeed, b'I'));
    assert_eq!(done.parameter_status.len(), 1);
}

#[test]
fn a_server_that_does_not_know_the_password_is_caught() {
    let mut server = ScramServer::new(ScramKeys::new("other"));
    let mut login = Login::new("app", Some("pencil"), false);
    let mut s = BytesMut::new();
    backend::auth_sasl(&mut s, &[MECHANISM]);
    let (_, mut out) = feed(&mut login, &mut s);
    let first = frames(&mut out, frame::auth_limit).remove(0);
    let initial = crate::frontend::sasl_initial_response(&first.body).unwrap();
    let server_first = server.server_first(initial.data.unwrap()).unwrap();
    let mut s = BytesMut::new();
    backend::auth_sasl_continue(&mut s, server_first.as_bytes());
    assert!(feed(&mut login, &mut s).0.unwrap().is_none());
    // A made-up signature: the server could not compute the real one.
    let mut s = BytesMut::new();
    backend::auth_sasl_final(&mut s, b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let (r, _) = feed(&mut login, &mut s);
    assert!(matches!(r, Err(LoginError::Failed(m)) if m.contains("signature")));
}

#[test]
fn md5_answers_with_the_hash_and_trust_needs_nothing() {
    let mut login = Login::new("app", Some("secret"), false);
    let mut s = BytesMut::new();
    backend::auth_md5(&mut s, [1, 2, 3, 4]);
    let (r, mut out) = feed(&mut login, &mut s);
    assert!(matches!(r, Ok(None)));
    let answer = frames(&mut out, frame::auth_limit).remove(0);
    let given = crate::frontend::password(&answer.body);
    assert!(crate::md5::verify("app", "secret", [1, 2, 3, 4], given));

    let mut trust = Login::new("app", None, false);
    let mut s = BytesMut::new();
    welcome(&mut s);
    let (r, out) = feed(&mut trust, &mut s);
    assert!(r.unwrap().is_some());
    assert!(out.is_empty());
}

#[test]
fn refusals() {
    // Cleartext over an unverified link.
    let mut login = Login::new("app", Some("secret"), false);
    let mut s = BytesMut::new();
    frame::put(&mut s, b'R', &[&3i32.to_be_bytes()]);
    let (r, out) = feed(&mut login, &mut s);
    assert!(matches!(r, Err(LoginError::Failed(m)) if m.contains("cleartext")));
    assert!(out.is_empty(), "no password went out");
    // ... but over a verified one it is sent.
    let mut login = Login::new("app", Some("secret"), true);
    let mut s = BytesMut::new();
    frame::put(&mut s, b'R', &[&3i32.to_be_bytes()]);
    let (r, out) = feed(&mut login, &mut s);
    assert!(r.is_ok() && !out.is_empty());

    // The server's own error is passed on as it is.
    let mut login = Login::new("app", Some("secret"), false);
    let mut s = BytesMut::new();
    crate::error::ClientError::auth_failed("app").write(&mut s);
    let (r, _) = feed(&mut login, &mut s);
    let Err(LoginError::Refused { message, frame }) = r else {
        panic!("not refused")
    };
    assert!(message.contains("password authentication failed"));
    assert_eq!(frame.tag, b'E');

    // Ready without a key; no password for md5; an unexpected message.
    let mut login = Login::new("app", None, false);
    let mut s = BytesMut::new();
    backend::ready_for_query(&mut s, b'I');
    assert!(matches!(
        feed(&mut login, &mut s).0,
        Err(LoginError::Failed(_))
    ));
    let mut s = BytesMut::new();
    backend::auth_md5(&mut s, [0; 4]);
    assert!(
        matches!(feed(&mut login, &mut s).0, Err(LoginError::Failed(m)) if m.contains("no password"))
    );
    let mut s = BytesMut::new();
    frame::put(&mut s, b'D', &[&0i16.to_be_bytes()]);
    assert!(matches!(
        feed(&mut login, &mut s).0,
        Err(LoginError::Failed(_))
    ));
}
