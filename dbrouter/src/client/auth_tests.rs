//! Client authentication tests: a client built from `postgres-protocol` (the code
//! tokio-postgres logs in with) talks to [`authenticate`] over an in-memory pipe.

#![allow(clippy::unwrap_used)]

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, DuplexStream};

use super::*;

fn user(client_auth: ClientAuth, password: Option<&str>) -> UserRuntime {
    UserRuntime {
        name: "app".into(),
        password: password.map(str::to_string),
        client_auth,
    }
}

/// The client's end: reads what the server sends, one message at a time.
struct Client {
    io: DuplexStream,
    buf: BytesMut,
}

impl Client {
    async fn recv(&mut self) -> Message {
        loop {
            if let Some(m) = Message::parse(&mut self.buf).unwrap() {
                return m;
            }
            assert!(
                self.io.read_buf(&mut self.buf).await.unwrap() > 0,
                "server closed"
            );
        }
    }

    async fn send(&mut self, out: &BytesMut) {
        self.io.write_all(out).await.unwrap();
    }

    /// Log in by SCRAM with `password`; returns the client's SCRAM state after the last
    /// server message it got, or the error the server sent.
    async fn scram(&mut self, password: &str) -> Result<(), String> {
        let Message::AuthenticationSasl(body) = self.recv().await else {
            panic!("expected AuthenticationSASL")
        };
        use fallible_iterator::FallibleIterator;
        let mechs: Vec<String> = body.mechanisms().map(|m| Ok(m.into())).collect().unwrap();
        assert_eq!(mechs, vec![MECHANISM.to_string()]);
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(MECHANISM, scram.message(), &mut out).unwrap();
        self.send(&out).await;
        let Message::AuthenticationSaslContinue(body) = self.recv().await else {
            panic!("expected AuthenticationSASLContinue")
        };
        scram.update(body.data()).unwrap();
        out.clear();
        frontend::sasl_response(scram.message(), &mut out).unwrap();
        self.send(&out).await;
        match self.recv().await {
            Message::AuthenticationSaslFinal(body) => {
                scram.finish(body.data()).unwrap();
                Ok(())
            }
            Message::ErrorResponse(_) => Err("error".into()),
            _ => panic!("unexpected message"),
        }
    }
}

/// Run `authenticate` for `user_name` against a client driven by `client`.
async fn run<F, Fut>(
    user_name: &str,
    entry: Option<UserRuntime>,
    client: F,
) -> Result<(), AuthError>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (a, b) = tokio::io::duplex(64 * 1024);
    let cache = ScramKeyCache::default();
    let server = async move {
        let mut a = a;
        let mut buf = BytesMut::new();
        let r = authenticate(&mut a, &mut buf, "main", user_name, entry.as_ref(), &cache).await;
        if let Err(AuthError::Refused(e)) = &r {
            let mut out = BytesMut::new();
            e.write(&mut out);
            let _ = a.write_all(&out).await;
        }
        r
    };
    let client = client(Client {
        io: b,
        buf: BytesMut::new(),
    });
    let (r, ()) = tokio::join!(server, client);
    r
}

fn code(r: Result<(), AuthError>) -> &'static str {
    match r {
        Err(AuthError::Refused(e)) => e.code.0,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn scram_accepts_the_right_password_and_proves_itself() {
    let r = run(
        "app",
        Some(user(ClientAuth::ScramSha256, Some("pw"))),
        |mut c| async move {
            c.scram("pw").await.unwrap();
        },
    )
    .await;
    r.unwrap();
}

#[tokio::test]
async fn scram_refuses_a_wrong_password_and_an_unknown_user_alike() {
    let entry = Some(user(ClientAuth::ScramSha256, Some("pw")));
    let wrong = run("app", entry, |mut c| async move {
        assert!(c.scram("nope").await.is_err());
    })
    .await;
    assert_eq!(code(wrong), "28P01");
    let unknown = run("ghost", None, |mut c| async move {
        assert!(c.scram("pw").await.is_err());
    })
    .await;
    assert_eq!(code(unknown), "28P01");
}

#[tokio::test]
async fn unknown_users_get_a_stable_salt() {
    let cache = ScramKeyCache::default();
    assert_eq!(cache.mock("ghost").salt, cache.mock("ghost").salt);
    assert_ne!(cache.mock("ghost").salt, cache.mock("phantom").salt);
    let a = cache.keys("main", "app", "pw");
    assert_eq!(a.salt, cache.keys("main", "app", "pw").salt, "cached");
    assert_ne!(
        a.salt,
        cache.keys("main", "app", "pw2").salt,
        "password changed"
    );
}

#[tokio::test]
async fn scram_refuses_another_mechanism() {
    let entry = Some(user(ClientAuth::ScramSha256, Some("pw")));
    let r = run("app", entry, |mut c| async move {
        let _ = c.recv().await;
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-1", b"n,,n=,r=abc", &mut out).unwrap();
        c.send(&out).await;
    })
    .await;
    assert_eq!(code(r), "08P01");
}

#[tokio::test]
async fn md5_checks_the_salted_hash() {
    for (password, ok) in [("pw", true), ("bad", false)] {
        let entry = Some(user(ClientAuth::Md5, Some("pw")));
        let r = run("app", entry, |mut c| async move {
            let Message::AuthenticationMd5Password(body) = c.recv().await else {
                panic!("expected AuthenticationMD5Password")
            };
            let hash = postgres_protocol::authentication::md5_hash(
                b"app",
                password.as_bytes(),
                body.salt(),
            );
            let mut out = BytesMut::new();
            frontend::password_message(hash.as_bytes(), &mut out).unwrap();
            c.send(&out).await;
        })
        .await;
        if ok {
            r.unwrap();
        } else {
            assert_eq!(code(r), "28P01");
        }
    }
}

#[tokio::test]
async fn trust_asks_nothing_and_a_client_that_leaves_is_closed() {
    run("app", Some(user(ClientAuth::Trust, None)), |_| async {})
        .await
        .unwrap();
    let r = run(
        "app",
        Some(user(ClientAuth::ScramSha256, Some("pw"))),
        |c| async move {
            drop(c);
        },
    )
    .await;
    assert!(
        matches!(r, Err(AuthError::Closed) | Err(AuthError::Io(_))),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_query_instead_of_a_password_is_a_protocol_violation() {
    let r = run(
        "app",
        Some(user(ClientAuth::ScramSha256, Some("pw"))),
        |mut c| async move {
            let _ = c.recv().await;
            let mut out = BytesMut::new();
            frontend::query("select 1", &mut out).unwrap();
            c.send(&out).await;
        },
    )
    .await;
    assert_eq!(code(r), "08P01");
}
