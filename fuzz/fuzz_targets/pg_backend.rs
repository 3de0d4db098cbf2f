//! Server → router bytes, and what the router writes as a server.
//!
//! - The input as a server's stream: `decode` under the backend limit, the scanner, every
//!   backend reader, and `postgres-protocol`'s parse (what a login reads). `first_column`
//!   must agree with `data_row`.
//! - The input cut into fields, written with each backend writer (`ErrorResponse`,
//!   `ParameterStatus`, `ReadyForQuery`, `BackendKeyData`, the authentication requests,
//!   `NegotiateProtocolVersion`): each must decode to one whole message that reads back
//!   the same fields, with our readers and with `postgres-protocol`'s.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postgres_protocol::message::backend::Message;
use switchyard_pgwire::backend::{self, SqlState};
use switchyard_pgwire::frame::{self, Scanner, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    stream(data);
    writers(data);
});

fn stream(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut last_ready = None;
    let mut whole = 0;
    while let Ok(Some(f)) = frame::decode(&mut buf, frame::backend_limit) {
        whole += HEADER_LEN + f.body.len();
        let body = &f.body[..];
        let _ = backend::parameter_status_fields(body);
        let row = backend::data_row(body);
        if let Some(first) = backend::first_column(body) {
            // `first_column` reads only the first column; when the whole row reads, they agree.
            if let Some(row) = &row {
                assert_eq!(row.first().copied().flatten(), Some(first));
            }
        }
        let _ = (
            backend::error_message(body),
            backend::error_code(body),
            backend::error_is_fatal(body),
        );
        if f.tag == b'Z' {
            last_ready = body.first().copied().or(last_ready);
        }
        let _ = Message::parse(&mut f.to_wire());
    }
    let mut s = Scanner::new(frame::backend_limit);
    if let Ok(scan) = s.feed(data, |_| false) {
        assert!(scan.forward >= whole);
        if scan.forward == whole && s.at_boundary() {
            assert_eq!(s.ready_status(), last_ready);
        }
    }
}

/// Fields from the input: text cut at `0xff`.
fn fields(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0xff)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

fn one_message(buf: &BytesMut) -> frame::Frame {
    let mut b = buf.clone();
    let f = frame::decode(&mut b, frame::backend_limit)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("a writer wrote no whole message: {buf:?}"));
    assert!(b.is_empty(), "a writer wrote more than one message");
    f
}

fn no_nul(s: &str) -> String {
    s.chars().filter(|&c| c != '\0').collect()
}

fn writers(data: &[u8]) {
    let f = fields(data);
    let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");

    // ErrorResponse.
    let mut buf = BytesMut::new();
    backend::error_response(&mut buf, get(0), SqlState::PROTOCOL_VIOLATION, get(1));
    let m = one_message(&buf);
    assert_eq!(m.tag, b'E');
    assert_eq!(backend::error_message(&m.body), no_nul(get(1)));
    assert_eq!(backend::error_code(&m.body), "08P01");
    assert_eq!(
        backend::error_is_fatal(&m.body),
        matches!(no_nul(get(0)).as_str(), "FATAL" | "PANIC")
    );
    match Message::parse(&mut buf.clone()) {
        Ok(Some(Message::ErrorResponse(_))) => {}
        _ => panic!("postgres-protocol cannot read our ErrorResponse"),
    }

    // ParameterStatus.
    let mut buf = BytesMut::new();
    backend::parameter_status(&mut buf, get(2), get(3));
    let m = one_message(&buf);
    let (name, value) = backend::parameter_status_fields(&m.body)
        .unwrap_or_else(|| panic!("cannot read our ParameterStatus"));
    assert_eq!(name, no_nul(get(2)).as_bytes());
    assert_eq!(value, no_nul(get(3)).as_bytes());

    // ReadyForQuery: the scanner remembers its status.
    let status = data.first().copied().unwrap_or(b'I');
    let mut buf = BytesMut::new();
    backend::ready_for_query(&mut buf, status);
    let mut s = Scanner::new(frame::backend_limit);
    let scan = s.feed(&buf, |_| false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((scan.forward, s.ready_status()), (buf.len(), Some(status)));

    // BackendKeyData and the authentication requests, through postgres-protocol.
    let n = |i: usize| {
        let b = data.get(i..i + 4).unwrap_or(&[1, 2, 3, 4]);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    };
    let (pid, secret) = (n(0), n(4));
    let mut buf = BytesMut::new();
    backend::backend_key_data(&mut buf, pid, secret);
    match Message::parse(&mut buf) {
        Ok(Some(Message::BackendKeyData(k))) => {
            assert_eq!(
                (k.process_id() as u32, k.secret_key() as u32),
                (pid, secret)
            );
        }
        _ => panic!("BackendKeyData does not read back"),
    }
    let mut buf = BytesMut::new();
    backend::auth_md5(&mut buf, pid.to_be_bytes());
    match Message::parse(&mut buf) {
        Ok(Some(Message::AuthenticationMd5Password(b))) => assert_eq!(b.salt(), pid.to_be_bytes()),
        _ => panic!("AuthenticationMD5Password does not read back"),
    }
    let mechanisms: Vec<String> = [get(4), get(5)]
        .iter()
        .map(|m| no_nul(m))
        .filter(|m| !m.is_empty())
        .collect();
    let refs: Vec<&str> = mechanisms.iter().map(String::as_str).collect();
    let mut buf = BytesMut::new();
    backend::auth_sasl(&mut buf, &refs);
    match Message::parse(&mut buf) {
        Ok(Some(Message::AuthenticationSasl(b))) => {
            let mut got = Vec::new();
            let mut it = b.mechanisms();
            while let Ok(Some(m)) = fallible_next(&mut it) {
                got.push(m.to_string());
            }
            assert_eq!(got, mechanisms);
        }
        _ => panic!("AuthenticationSASL does not read back"),
    }
    for (write, code) in [
        (backend::auth_sasl_continue as fn(&mut BytesMut, &[u8]), 11),
        (backend::auth_sasl_final, 12),
    ] {
        let mut buf = BytesMut::new();
        write(&mut buf, get(6).as_bytes());
        match (Message::parse(&mut buf), code) {
            (Ok(Some(Message::AuthenticationSaslContinue(b))), 11) => {
                assert_eq!(b.data(), get(6).as_bytes())
            }
            (Ok(Some(Message::AuthenticationSaslFinal(b))), 12) => {
                assert_eq!(b.data(), get(6).as_bytes())
            }
            _ => panic!("a SASL message does not read back"),
        }
    }
    let mut buf = BytesMut::new();
    backend::auth_ok(&mut buf);
    assert!(matches!(
        Message::parse(&mut buf),
        Ok(Some(Message::AuthenticationOk))
    ));

    // NegotiateProtocolVersion (postgres-protocol does not read it): one whole message.
    let options = [get(7), get(8)];
    let mut buf = BytesMut::new();
    backend::negotiate_protocol_version(&mut buf, (pid & 0xffff) as u16, &options);
    let m = one_message(&buf);
    assert_eq!(m.tag, b'v');
}

fn fallible_next<'a>(
    it: &mut postgres_protocol::message::backend::SaslMechanisms<'a>,
) -> std::io::Result<Option<&'a str>> {
    use fallible_iterator::FallibleIterator;
    it.next()
}
