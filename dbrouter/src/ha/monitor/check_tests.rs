//! Checks against scripted servers on `127.0.0.1:0`: each failure kind from what the network
//! or the server actually does, and the connection kept between checks.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const TIMEOUT: Duration = Duration::from_millis(300);

fn login(port: u16) -> Login {
    Login {
        host: "127.0.0.1".into(),
        port,
        user: "monitor".into(),
        password: None,
        tls: Arc::new(crate::net::tls::ServerTls::disabled()),
    }
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(((body.len() + 4) as u32).to_be_bytes());
    out.extend(body);
    out
}

fn fatal(code: &str, text: &str) -> Vec<u8> {
    msg(
        b'E',
        format!("SFATAL\0VFATAL\0C{code}\0M{text}\0\0").as_bytes(),
    )
}

/// `AuthenticationOk` and `ReadyForQuery`.
fn logged_in() -> Vec<u8> {
    let mut out = msg(b'R', &0u32.to_be_bytes());
    out.extend(msg(b'Z', b"I"));
    out
}

/// The answer to the check query: one row of text columns, then `ReadyForQuery`.
fn answer(fields: &[Option<&str>; 6]) -> Vec<u8> {
    let mut desc = (fields.len() as i16).to_be_bytes().to_vec();
    let mut row = desc.clone();
    for (i, f) in fields.iter().enumerate() {
        desc.extend(format!("c{i}\0").as_bytes());
        desc.extend(0i32.to_be_bytes()); // table
        desc.extend(0i16.to_be_bytes()); // column
        desc.extend(25i32.to_be_bytes()); // text
        desc.extend((-1i16).to_be_bytes());
        desc.extend((-1i32).to_be_bytes());
        desc.extend(0i16.to_be_bytes()); // text format
        match f {
            Some(v) => {
                row.extend((v.len() as i32).to_be_bytes());
                row.extend(v.as_bytes());
            }
            None => row.extend((-1i32).to_be_bytes()),
        }
    }
    let mut out = msg(b'T', &desc);
    out.extend(msg(b'D', &row));
    out.extend(msg(b'C', b"SELECT 1\0"));
    out.extend(msg(b'Z', b"I"));
    out
}

async fn read_startup(s: &mut TcpStream) {
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
}

/// Read one message; its tag.
async fn read_message(s: &mut TcpStream) -> u8 {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    tag
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let (l, port) = listener().await;
    drop(l);
    let e = check(&mut None, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e:?}");
    assert!(
        e.message.contains("refused"),
        "the cause is in the message: {e:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Bound and listening, never accepting: the kernel completes the handshake.
    let (_l, port) = listener().await;
    let e = check(&mut None, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TimedOut, "{e:?}");
}

#[tokio::test]
async fn a_server_shutting_down_at_login_is_an_admin_shutdown() {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_startup(&mut s).await;
        let _ = s
            .write_all(&fatal("57P03", "the database system is shutting down"))
            .await;
    });
    let e = check(&mut None, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AdminShutdown, "{e:?}");
    assert!(e.message.starts_with("57P03: "), "{e:?}");
}

#[tokio::test]
async fn the_connection_is_kept_and_a_shutdown_then_refusal_is_reported_as_the_shutdown() {
    let (l, port) = listener().await;
    let primary = [Some("f"), Some("0/3000060"), None, None, None, None];
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_startup(&mut s).await;
        s.write_all(&logged_in()).await.unwrap();
        for _ in 0..2 {
            assert_eq!(read_message(&mut s).await, b'Q');
            s.write_all(&answer(&primary)).await.unwrap();
        }
        // Then the server shuts down: it tells the session, and stops listening.
        drop(l);
        s.write_all(&fatal(
            "57P01",
            "terminating connection due to administrator command",
        ))
        .await
        .unwrap();
    });
    let mut conn = None;
    for _ in 0..2 {
        let o = check(&mut conn, &login(port), TIMEOUT).await.unwrap();
        assert_eq!(o.current_lsn, Some(Lsn(0x300_0060)));
        assert!(!o.in_recovery);
    }
    server.await.unwrap();
    // Let the connection task read the FATAL.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = check(&mut conn, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AdminShutdown, "{e:?}");
    assert!(e.message.contains("57P01"), "{e:?}");
    assert!(conn.is_none(), "a failed check drops the connection");
    let e = check(&mut conn, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "then it is just refused: {e:?}");
}

#[tokio::test]
async fn a_session_ended_mid_check_says_why() {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_startup(&mut s).await;
        s.write_all(&logged_in()).await.unwrap();
        read_message(&mut s).await;
        let _ = s
            .write_all(&fatal(
                "57P01",
                "terminating connection due to administrator command",
            ))
            .await;
    });
    let e = check(&mut None, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AdminShutdown, "{e:?}");

    let (l, port) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_startup(&mut s).await;
        s.write_all(&logged_in()).await.unwrap();
        read_message(&mut s).await;
        // Closed without a word (a crash, or a cut): the connection is lost.
    });
    let e = check(&mut None, &login(port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConnectionLost, "{e:?}");
}

#[tokio::test]
async fn a_changed_login_opens_a_new_connection() {
    let (l, port) = listener().await;
    let replica = [
        Some("t"),
        None,
        Some("0/10"),
        Some("0/8"),
        Some("0.5"),
        Some("streaming"),
    ];
    let server = tokio::spawn(async move {
        let mut users = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().await.unwrap();
            let len = s.read_u32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            s.read_exact(&mut body).await.unwrap();
            users.push(String::from_utf8_lossy(&body).contains("other"));
            s.write_all(&logged_in()).await.unwrap();
            read_message(&mut s).await;
            s.write_all(&answer(&replica)).await.unwrap();
            // Keep the connection open until the test ends.
            tokio::spawn(async move {
                let mut buf = [0; 64];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
        users
    });
    let mut conn = None;
    let o = check(&mut conn, &login(port), TIMEOUT).await.unwrap();
    assert!(o.in_recovery && o.streaming() && o.replay_lsn == Some(Lsn(8)));
    let other = Login {
        user: "other".into(),
        ..login(port)
    };
    check(&mut conn, &other, TIMEOUT).await.unwrap();
    assert_eq!(server.await.unwrap(), [false, true]);
}
