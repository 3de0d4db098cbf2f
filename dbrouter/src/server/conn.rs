//! Server connections: connect to a Postgres node and log in with the configured
//! credentials, by whatever method the server asks for (SCRAM-SHA-256 through
//! `postgres-protocol`'s client, md5, or none: the exchange itself is
//! [`switchyard_pgwire::login`]'s), then collect what the client must be told
//! (`ParameterStatus`, notices) and the server's own cancel key.
//!
//! TLS first, per the cluster's `server_tls` ([`crate::net::tls`]): an `SSLRequest`, then a
//! handshake when the server answers `S`; `prefer` goes on in the clear on `N`, `require`
//! gives up. A cleartext password is sent only over TLS whose certificate was verified
//! (`server_tls_ca`); otherwise a server that asks for one is refused with a message saying
//! so. SCRAM's server signature is checked, so a server that does not know the password
//! cannot pretend to be the database.

use std::collections::HashSet;
use std::net::SocketAddr;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use switchyard_config::{Address, ServerTlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::param_map::ParamMap;
use crate::cancel::ServerKey;
use crate::net::read::{read_frame, ReadError};
use crate::net::stream::PgStream;
use crate::net::tls::ServerTls;
use switchyard_pgwire::backend::SqlState;
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, Frame};
use switchyard_pgwire::login::{Login, LoginError};
use switchyard_pgwire::startup;

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

/// What the router knows it set on a server connection's session, kept with the connection
/// while it sits in the pool: parameter values that may differ from the server's defaults
/// (lowercase names), and the global prepared statements (their ids) it has. Filled in by
/// transaction pooling; `DISCARD ALL` empties it ([`crate::server::pool`]'s reset).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub params: ParamMap,
    pub prepared: HashSet<u64>,
    /// Transaction pooling's count of dropped statements when `prepared` was last swept of
    /// copies nobody can use.
    pub swept: u64,
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
/// ([`crate::net::tls::current`]). Notices the server sends while logging in are appended to
/// `notices`.
pub async fn connect(
    node: &Address,
    params: &[(&str, &str)],
    user: &str,
    password: Option<&str>,
    notices: &mut BytesMut,
) -> Result<ServerConn, BackendError> {
    let tls = crate::net::tls::current();
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
    Login::startup(params, &mut out).map_err(|e| login_error(&name, e))?;
    stream.write_all(&out).await.map_err(io)?;

    let mut buf = BytesMut::new();
    let mut machine = Login::new(user, password, verified_tls);
    loop {
        let frame = match read_frame(&mut stream, &mut buf, frame::backend_limit).await {
            Ok(f) => f,
            Err(ReadError::Io(e)) => return Err(io(e)),
            Err(ReadError::Closed) => {
                return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Err(ReadError::Frame(e)) => return Err(login(e.to_string())),
        };
        out.clear();
        let step = machine
            .step(frame, &mut out, notices)
            .map_err(|e| login_error(&name, e))?;
        if let Some(done) = step {
            return Ok(ServerConn {
                stream,
                key: ServerKey {
                    addr,
                    pid: done.pid,
                    secret: done.secret,
                },
                parameter_status: done.parameter_status,
                status: done.status,
                state: ServerState::default(),
            });
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(io)?;
            stream.flush().await.map_err(io)?;
        }
    }
}

/// A failed login step as the error the checkout reports.
fn login_error(node: &str, e: LoginError) -> BackendError {
    let node = node.to_string();
    match e {
        LoginError::Io(source) => BackendError::Io { node, source },
        LoginError::Refused { message, frame } => BackendError::Refused {
            node,
            message,
            frame,
        },
        LoginError::Failed(message) => BackendError::Login { node, message },
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
    stream
        .write_all(&startup::ssl_request())
        .await
        .map_err(TlsStart::Io)?;
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
