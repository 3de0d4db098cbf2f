//! The router's own login to a server, as a client, without I/O: feed it each whole message
//! the server sends ([`Login::step`]) and write what it appends to `out`, until it says the
//! server is ready for a query ([`LoggedIn`]).
//!
//! It answers whatever the server asks for: SCRAM-SHA-256 (client side by `postgres-protocol`,
//! whose `ScramSha256` is what tokio-postgres logs in with; the server's final signature is
//! checked, so a server that does not know the password cannot pretend to be the database),
//! md5 ([`crate::md5`]), or nothing (trust). A cleartext password is sent only when the caller
//! says the link allows it (TLS with a verified certificate); otherwise a server that asks for
//! one is refused with a message saying so. It collects what the router's clients must be told
//! (`ParameterStatus`, notices) and the server's own cancel key.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::frame::Frame;
use crate::scram::MECHANISM;

/// What a finished login gives: the server's `ParameterStatus` messages, its cancel key, and
/// the transaction status of its first `ReadyForQuery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub parameter_status: Vec<Frame>,
    pub pid: u32,
    pub secret: u32,
    pub status: u8,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A message to the server could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server refused us: its `ErrorResponse` (`frame`), to pass on as it is.
    #[error("the server refused the login: {message}")]
    Refused { message: String, frame: Frame },
    /// The exchange went wrong: what to say about it.
    #[error("{0}")]
    Failed(String),
}

fn failed(message: impl Into<String>) -> LoginError {
    LoginError::Failed(message.into())
}

/// One login in progress.
pub struct Login<'a> {
    user: &'a str,
    password: Option<&'a str>,
    cleartext_allowed: bool,
    scram: Option<ScramSha256>,
    parameter_status: Vec<Frame>,
    key: Option<(u32, u32)>,
}

impl<'a> Login<'a> {
    /// A login as `user` with `password`; `cleartext_allowed`: the link is TLS with a verified
    /// certificate, so a cleartext password may be sent if the server asks for one.
    pub fn new(user: &'a str, password: Option<&'a str>, cleartext_allowed: bool) -> Self {
        Login {
            user,
            password,
            cleartext_allowed,
            scram: None,
            parameter_status: Vec::new(),
            key: None,
        }
    }

    /// The `StartupMessage` that opens the login (protocol 3.0), with `params` (`user`
    /// among them).
    pub fn startup(params: &[(&str, &str)], out: &mut BytesMut) -> Result<(), LoginError> {
        frontend::startup_message(params.iter().copied(), out)?;
        Ok(())
    }

    fn password(&self) -> Result<&'a str, LoginError> {
        self.password
            .ok_or_else(|| failed("no password configured"))
    }

    /// Handle one whole message from the server. What to send back is appended to `out`
    /// (nothing: read the next message); notices are appended to `notices`. `Ok(Some(_))`
    /// once the server is ready for a query.
    pub fn step(
        &mut self,
        frame: Frame,
        out: &mut BytesMut,
        notices: &mut BytesMut,
    ) -> Result<Option<LoggedIn>, LoginError> {
        // NegotiateProtocolVersion: we ask for 3.0 and no options; nothing to do (and
        // `postgres-protocol` does not parse it).
        if frame.tag == b'v' {
            return Ok(None);
        }
        let parsed = Message::parse(&mut frame.to_wire())
            .map_err(|e| failed(format!("unreadable message from the server: {e}")))?;
        match parsed {
            Some(Message::AuthenticationOk) => {
                if self.scram.is_some() {
                    return Err(failed("the server skipped SCRAM's final message"));
                }
            }
            Some(Message::AuthenticationMd5Password(body)) => {
                let hash = crate::md5::hash(self.user, self.password()?, body.salt());
                frontend::password_message(hash.as_bytes(), out)?;
            }
            Some(Message::AuthenticationSasl(body)) => {
                let pw = self.password()?;
                let offered: Vec<String> =
                    body.mechanisms().map(|m| Ok(m.to_string())).collect()?;
                if !offered.iter().any(|m| m == MECHANISM) {
                    return Err(failed(format!(
                        "the server offers SASL mechanisms {offered:?}; Switchyard speaks SCRAM-SHA-256"
                    )));
                }
                let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(MECHANISM, s.message(), out)?;
                self.scram = Some(s);
            }
            Some(Message::AuthenticationSaslContinue(body)) => {
                let s = self
                    .scram
                    .as_mut()
                    .ok_or_else(|| failed("unexpected SASL message"))?;
                s.update(body.data())
                    .map_err(|e| failed(format!("SCRAM: {e}")))?;
                frontend::sasl_response(s.message(), out)?;
            }
            Some(Message::AuthenticationSaslFinal(body)) => {
                let mut s = self
                    .scram
                    .take()
                    .ok_or_else(|| failed("unexpected SASL message"))?;
                s.finish(body.data())
                    .map_err(|e| failed(format!("SCRAM: the server's signature is wrong ({e})")))?;
            }
            Some(Message::AuthenticationCleartextPassword) if self.cleartext_allowed => {
                frontend::password_message(self.password()?.as_bytes(), out)?;
            }
            Some(Message::AuthenticationCleartextPassword) => {
                return Err(failed(
                    "the server asks for a cleartext password, which Switchyard does not send \
                     but over TLS verified with server_tls_ca; use scram-sha-256 or md5 in \
                     pg_hba.conf",
                ));
            }
            Some(Message::ParameterStatus(_)) => self.parameter_status.push(frame),
            Some(Message::BackendKeyData(body)) => {
                self.key = Some((body.process_id() as u32, body.secret_key() as u32));
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
                return Err(LoginError::Refused { message, frame });
            }
            Some(Message::ReadyForQuery(body)) => {
                let (pid, secret) = self
                    .key
                    .ok_or_else(|| failed("the server sent no BackendKeyData"))?;
                return Ok(Some(LoggedIn {
                    parameter_status: std::mem::take(&mut self.parameter_status),
                    pid,
                    secret,
                    status: body.status(),
                }));
            }
            _ => {
                return Err(failed(format!(
                    "unexpected message '{}' while logging in",
                    frame.tag as char
                )))
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
