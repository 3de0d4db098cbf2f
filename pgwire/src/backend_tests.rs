//! The backend writers, read back by `postgres-protocol`'s parser.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::error::ClientError;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;

/// Our writers, read back by `postgres-protocol`'s parser (what tokio-postgres uses).
#[test]
fn postgres_protocol_reads_what_we_write() {
    let mut buf = BytesMut::new();
    ClientError::auth_failed("app\0x").write(&mut buf);
    auth_ok(&mut buf);
    auth_md5(&mut buf, [1, 2, 3, 4]);
    auth_sasl(&mut buf, &["SCRAM-SHA-256"]);
    backend_key_data(&mut buf, 42, 0xfeed_f00d);
    parameter_status(&mut buf, "server_version", "15.0");
    ready_for_query(&mut buf, b'I');

    let Some(Message::ErrorResponse(e)) = Message::parse(&mut buf).unwrap() else {
        panic!("not an ErrorResponse")
    };
    let fields: Vec<(u8, String)> = e
        .fields()
        .map(|f| {
            Ok((
                f.type_(),
                String::from_utf8_lossy(f.value_bytes()).into_owned(),
            ))
        })
        .collect()
        .unwrap();
    assert!(fields.contains(&(b'C', "28P01".into())));
    assert!(fields.contains(&(b'S', "FATAL".into())));
    assert!(fields.contains(&(
        b'M',
        "password authentication failed for user \"appx\"".into()
    )));
    assert!(matches!(
        Message::parse(&mut buf).unwrap(),
        Some(Message::AuthenticationOk)
    ));
    let Some(Message::AuthenticationMd5Password(m)) = Message::parse(&mut buf).unwrap() else {
        panic!("not md5")
    };
    assert_eq!(m.salt(), [1, 2, 3, 4]);
    let Some(Message::AuthenticationSasl(s)) = Message::parse(&mut buf).unwrap() else {
        panic!("not SASL")
    };
    let mechs: Vec<String> = s.mechanisms().map(|m| Ok(m.to_string())).collect().unwrap();
    assert_eq!(mechs, vec!["SCRAM-SHA-256".to_string()]);
    let Some(Message::BackendKeyData(k)) = Message::parse(&mut buf).unwrap() else {
        panic!("not BackendKeyData")
    };
    assert_eq!((k.process_id(), k.secret_key() as u32), (42, 0xfeed_f00d));
    let Some(Message::ParameterStatus(p)) = Message::parse(&mut buf).unwrap() else {
        panic!("not ParameterStatus")
    };
    assert_eq!(
        (p.name().unwrap(), p.value().unwrap()),
        ("server_version", "15.0")
    );
    let Some(Message::ReadyForQuery(r)) = Message::parse(&mut buf).unwrap() else {
        panic!("not ReadyForQuery")
    };
    assert_eq!(r.status(), b'I');
    assert!(buf.is_empty());
}
