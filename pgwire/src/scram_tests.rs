//! SCRAM server tests: the RFC 5802 (SHA-1) and RFC 7677 (SHA-256) test vectors, whole
//! exchanges against `postgres-protocol`'s client (what tokio-postgres logs in with), and
//! the refusals.

#![allow(clippy::unwrap_used)]

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::*;

/// Run the server side of a test vector and check both messages it produces.
fn vector<D: Digest + BlockSizeUser + Clone + Sync>(
    salt_b64: &str,
    server_nonce: &str,
    client_first: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let salt = B64.decode(salt_b64).unwrap();
    let keys = ScramKeys::derive::<D>("pencil", &salt, 4096);
    let mut server = ScramServer::<D>::with_nonce(keys, server_nonce.to_string());
    assert_eq!(
        server.server_first(client_first.as_bytes()).unwrap(),
        server_first
    );
    assert_eq!(
        server.server_final(client_final.as_bytes()).unwrap(),
        server_final
    );
}

#[test]
fn rfc5802_sha1_test_vector() {
    vector::<sha1::Sha1>(
        "QSXCR+Q6sek8bf92",
        "3rfcNHYJY1ZVvWVs7j",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
}

#[test]
fn rfc7677_sha256_test_vector() {
    vector::<Sha256>(
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

/// A whole exchange between `postgres-protocol`'s client with `client_password` and our
/// server with keys for `server_password`. Returns the server's verdict on the proof.
fn exchange(
    server_password: &str,
    client_password: &str,
    binding: ChannelBinding,
) -> Result<(), ScramError> {
    let mut client = ScramSha256::new(client_password.as_bytes(), binding);
    let mut server = ScramServer::new(ScramKeys::new(server_password));
    let first = server.server_first(client.message())?;
    client.update(first.as_bytes()).unwrap();
    let last = server.server_final(client.message())?;
    // The client checks our signature: a wrong one would be an error here.
    client.finish(last.as_bytes()).unwrap();
    Ok(())
}

#[test]
fn postgres_protocol_client_logs_in() {
    exchange("s3cret", "s3cret", ChannelBinding::unsupported()).unwrap();
    // "y": the client could bind but believes we cannot; fine without TLS.
    exchange("s3cret", "s3cret", ChannelBinding::unrequested()).unwrap();
    // SASLprep: a non-ASCII space maps to a space on both sides.
    exchange(
        "pass\u{00A0}word",
        "pass word",
        ChannelBinding::unsupported(),
    )
    .unwrap();
}

#[test]
fn wrong_password_fails_at_the_proof() {
    assert_eq!(
        exchange("s3cret", "guess", ChannelBinding::unsupported()),
        Err(ScramError::WrongProof)
    );
}

#[test]
fn channel_binding_is_refused_without_tls() {
    assert_eq!(
        exchange(
            "s3cret",
            "s3cret",
            ChannelBinding::tls_server_end_point(vec![1, 2, 3])
        ),
        Err(ScramError::ChannelBinding)
    );
}

#[test]
fn mock_keys_match_no_password() {
    let mut client = ScramSha256::new(b"anything", ChannelBinding::unsupported());
    let mut server = ScramServer::new(ScramKeys::mock(vec![7; 16]));
    let first = server.server_first(client.message()).unwrap();
    assert!(first.contains(&format!("s={}", B64.encode([7u8; 16]))));
    client.update(first.as_bytes()).unwrap();
    assert_eq!(
        server.server_final(client.message()),
        Err(ScramError::WrongProof)
    );
}

#[test]
fn malformed_and_out_of_order_messages_are_refused() {
    let keys = ScramKeys::new("pw");
    let bad_first: &[&[u8]] = &[
        b"",
        b"\xff\xfe",
        b"n",
        b"x,,n=,r=abc",
        b"n,a=admin,n=,r=abc",
        b"n,,m=ext,n=,r=abc",
        b"n,,n=,r=",
        b"n,,n=,r=a,b",
        b"n,,r=abc",
    ];
    for msg in bad_first {
        let mut s = ScramServer::new(keys.clone());
        assert!(
            s.server_first(msg).is_err(),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
    let mut s = ScramServer::new(keys.clone());
    assert_eq!(
        s.server_final(b"c=biws,r=x,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );

    let mut s = ScramServer::<Sha256>::with_nonce(keys.clone(), "SRV".into());
    s.server_first(b"n,,n=,r=CLI").unwrap();
    assert!(matches!(
        s.server_final(b"c=biws,r=CLIxxx,p=AAAA"),
        Err(ScramError::Malformed(_))
    ));
    // Once failed, the exchange is over.
    assert_eq!(
        s.server_final(b"c=biws,r=CLISRV,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );

    let mut s = ScramServer::<Sha256>::with_nonce(keys.clone(), "SRV".into());
    s.server_first(b"n,,n=,r=CLI").unwrap();
    // The channel binding attribute must repeat the GS2 header ("n,," is "biws").
    assert!(matches!(
        s.server_final(b"c=eSws,r=CLISRV,p=AAAA"),
        Err(ScramError::Malformed(_))
    ));
    let mut s = ScramServer::<Sha256>::with_nonce(keys, "SRV".into());
    s.server_first(b"n,,n=,r=CLI").unwrap();
    assert!(matches!(
        s.server_final(b"c=biws,r=CLISRV,p=AAAA"),
        Err(ScramError::Malformed("proof has the wrong length"))
    ));
}
