//! Server connections: connect to a Postgres node and log in with the configured
//! credentials, by whatever method the server asks for (SCRAM-SHA-256 through
//! `postgres-protocol`'s client, md5, or none), then collect what the client must be told
//! (`ParameterStatus`, notices) and the server's own cancel key.
//!
//! TLS first, per the cluster's `server_tls` ([`crate::tls`]): an `SSLRequest`, then a
//! handshake when the server answers `S`; `prefer` goes on in the clear on `N`, `require`
//! gives up. A cleartext password is sent only over TLS whose certificate was verified
//! (`server_tls_ca`); otherwise a server that asks for one is refused with a message saying
//! so. SCRAM's server signature is checked, so a server that does not know the password
//! cannot pretend to be the database.

use std::net::SocketAddr;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use switchyard_config::{Address, ServerTlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cancel::ServerKey;
use crate::frame::{self, Frame, ReadError};
use crate::message::{ClientError, SqlState};
use crate::startup::SSL_REQUEST_CODE;
use crate::tls::{PgStream, ServerTls};
use crate::txpool::ServerState;

/// A logged-in server connection, idle and ready for a query.
#[derive(Debug)]
pub struct ServerConn {
    pub stream: PgStream,
    /// The server's own cancel key and address.
    pub key: ServerKey,
    /// The server's `ParameterStatus` messages, the latest of each parameter (from login,
    /// kept up to date by whoever reads the connection), for the clients.
    pub parameter_status: Vec<Frame>,
    /// Transaction status of the last `ReadyForQuery`.
    pub status: u8,
    /// What transaction pooling knows of this connection's session (parameters set,
    /// statements prepared).
    pub state: ServerState,
}

/// Why a server connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("connecting to {node}: {source}")]
    Connect {
        node: String,
        source: std::io::Error,
    },
    #[error("talking to {node}: {source}")]
    Io {
        node: String,
        source: std::io::Error,
    },
    /// The server refused us: its `ErrorResponse` goes to the client as it is.
    #[error("{node} refused the login: {message}")]
    Refused {
        node: String,
        message: String,
        frame: Frame,
    },
    #[error("logging in to {node}: {message}")]
    Login { node: String, message: String },
}

impl BackendError {
    /// What the client is told; `role` names the node ("the primary", "a replica"). Server
    /// addresses stay in the log.
    pub fn to_client(&self, cluster: &str, role: &str) -> ClientErrorOrFrame {
        match self {
            BackendError::Refused { frame, .. } => ClientErrorOrFrame::Frame(frame.clone()),
            BackendError::Connect { .. } | BackendError::Io { .. } => {
                ClientErrorOrFrame::Error(ClientError::fatal(
                    SqlState::CONNECTION_FAILURE,
                    format!("could not connect to {role} of cluster \"{cluster}\""),
                ))
            }
            BackendError::Login { message, .. } => ClientErrorOrFrame::Error(ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                format!("could not log in to {role} of cluster \"{cluster}\": {message}"),
            )),
        }
    }
}

/// An error of our own, or the server's `ErrorResponse` to pass on.
#[derive(Debug, Clone)]
pub enum ClientErrorOrFrame {
    Error(ClientError),
    Frame(Frame),
}

/// Connect to `node` and log in as `user` with `params` (the client's startup parameters,
/// `user` among them), with the server TLS of the session running this task
/// ([`crate::tls::current`]). Notices the server sends while logging in are appended to
/// `notices`.
pub async fn connect(
    node: &Address,
    params: &[(&str, &str)],
    user: &str,
    password: Option<&str>,
    notices: &mut BytesMut,
) -> Result<ServerConn, BackendError> {
    let tls = crate::tls::current();
    connect_with(node, params, user, password, notices, &tls).await
}

/// [`connect`] with `tls` to the server.
pub async fn connect_with(
    node: &Address,
    params: &[(&str, &str)],
    user: &str,
    password: Option<&str>,
    notices: &mut BytesMut,
    tls: &ServerTls,
) -> Result<ServerConn, BackendError> {
    let name = node.to_string();
    let tcp = TcpStream::connect((node.host.as_str(), node.port))
        .await
        .map_err(|source| BackendError::Connect {
            node: name.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let addr: SocketAddr = tcp.peer_addr().map_err(|source| BackendError::Connect {
        node: name.clone(),
        source,
    })?;
    let io = |source| BackendError::Io {
        node: name.clone(),
        source,
    };
    let login = |message: String| BackendError::Login {
        node: name.clone(),
        message,
    };
    let mut stream = PgStream::plain(tcp);
    start_tls(&mut stream, node, tls)
        .await
        .map_err(|e| match e {
            TlsStart::Io(e) => io(e),
            TlsStart::Refused(m) => login(m),
        })?;
    let verified_tls = stream.is_tls() && tls.verified;

    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out).map_err(io)?;
    stream.write_all(&out).await.map_err(io)?;

    let mut buf = BytesMut::new();
    let mut scram: Option<ScramSha256> = None;
    let mut parameter_status = Vec::new();
    let mut key = None;
    loop {
        let frame = match frame::read_frame(&mut stream, &mut buf, frame::backend_limit).await {
            Ok(f) => f,
            Err(ReadError::Io(e)) => return Err(io(e)),
            Err(ReadError::Closed) => {
                return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Err(ReadError::Frame(e)) => return Err(login(e.to_string())),
        };
        // NegotiateProtocolVersion: we ask for 3.0 and no options; nothing to do (and
        // `postgres-protocol` does not parse it).
        if frame.tag == b'v' {
            continue;
        }
        let parsed = Message::parse(&mut frame.to_wire())
            .map_err(|e| login(format!("unreadable message from the server: {e}")))?;
        out.clear();
        match parsed {
            Some(Message::AuthenticationOk) => {
                if scram.is_some() {
                    return Err(login("the server skipped SCRAM's final message".into()));
                }
            }
            Some(Message::AuthenticationMd5Password(body)) => {
                let pw = password.ok_or_else(|| login("no password configured".into()))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    user.as_bytes(),
                    pw.as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut out).map_err(io)?;
            }
            Some(Message::AuthenticationSasl(body)) => {
                let pw = password.ok_or_else(|| login("no password configured".into()))?;
                let offered: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_string()))
                    .collect()
                    .map_err(io)?;
                if !offered.iter().any(|m| m == crate::scram::MECHANISM) {
                    return Err(login(format!(
                        "the server offers SASL mechanisms {offered:?}; Switchyard speaks SCRAM-SHA-256"
                    )));
                }
                let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(crate::scram::MECHANISM, s.message(), &mut out)
                    .map_err(io)?;
                scram = Some(s);
            }
            Some(Message::AuthenticationSaslContinue(body)) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| login("unexpected SASL message".into()))?;
                s.update(body.data())
                    .map_err(|e| login(format!("SCRAM: {e}")))?;
                frontend::sasl_response(s.message(), &mut out).map_err(io)?;
            }
            Some(Message::AuthenticationSaslFinal(body)) => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| login("unexpected SASL message".into()))?;
                s.finish(body.data())
                    .map_err(|e| login(format!("SCRAM: the server's signature is wrong ({e})")))?;
            }
            Some(Message::AuthenticationCleartextPassword) if verified_tls => {
                let pw = password.ok_or_else(|| login("no password configured".into()))?;
                frontend::password_message(pw.as_bytes(), &mut out).map_err(io)?;
            }
            Some(Message::AuthenticationCleartextPassword) => {
                return Err(login(
                    "the server asks for a cleartext password, which Switchyard does not send \
                     but over TLS verified with server_tls_ca; use scram-sha-256 or md5 in \
                     pg_hba.conf"
                        .into(),
                ));
            }
            Some(Message::ParameterStatus(_)) => parameter_status.push(frame),
            Some(Message::BackendKeyData(body)) => {
                key = Some(ServerKey {
                    addr,
                    pid: body.process_id() as u32,
                    secret: body.secret_key() as u32,
                });
            }
            Some(Message::NoticeResponse(_)) => notices.extend_from_slice(&frame.to_wire()),
            Some(Message::ErrorResponse(body)) => {
                let message = body
                    .fields()
                    .find(|f| Ok(f.type_() == b'M'))
                    .ok()
                    .flatten()
                    .map(|f| String::from_utf8_lossy(f.value_bytes()).into_owned())
                    .unwrap_or_default();
                return Err(BackendError::Refused {
                    node: name,
                    message,
                    frame,
                });
            }
            Some(Message::ReadyForQuery(body)) => {
                let key = key.ok_or_else(|| login("the server sent no BackendKeyData".into()))?;
                return Ok(ServerConn {
                    stream,
                    key,
                    parameter_status,
                    status: body.status(),
                    state: ServerState::default(),
                });
            }
            _ => {
                return Err(login(format!(
                    "unexpected message '{}' while logging in",
                    frame.tag as char
                )))
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(io)?;
            stream.flush().await.map_err(io)?;
        }
    }
}

enum TlsStart {
    Io(std::io::Error),
    Refused(String),
}

/// Ask the server for TLS as `tls` says, and do the handshake if it agrees.
async fn start_tls(stream: &mut PgStream, node: &Address, tls: &ServerTls) -> Result<(), TlsStart> {
    let Some(conn) = tls.connection(&node.host).map_err(TlsStart::Io)? else {
        return Ok(());
    };
    let mut request = 8u32.to_be_bytes().to_vec();
    request.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    stream.write_all(&request).await.map_err(TlsStart::Io)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.map_err(TlsStart::Io)?;
    match (answer[0], tls.mode) {
        (b'S', _) => stream
            .start_tls(conn)
            .await
            .map_err(|e| TlsStart::Refused(format!("TLS handshake with the server failed: {e}"))),
        (b'N', ServerTlsMode::Require) => Err(TlsStart::Refused(
            "the server does not offer TLS and server_tls = \"require\"".into(),
        )),
        (b'N', _) => Ok(()),
        (other, _) => Err(TlsStart::Refused(format!(
            "unexpected answer {:?} to SSLRequest",
            other as char
        ))),
    }
}

impl ServerConn {
    /// Record a `ParameterStatus` from the server, replacing the earlier one of its name.
    pub fn set_parameter_status(&mut self, frame: Frame) {
        let name_len = frame.body.iter().position(|&b| b == 0).unwrap_or(0) + 1;
        let name = frame.body.get(..name_len).unwrap_or_default();
        self.parameter_status
            .retain(|p| p.body.get(..name_len) != Some(name));
        self.parameter_status.push(frame);
    }

    /// Say goodbye (`Terminate`) and close. Only between messages.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out).await;
        let _ = self.stream.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
