//! [`ClientError`]: the one shape every refusal takes on its way to a client, an
//! `ErrorResponse` with a SQLSTATE and a message, after which (when fatal) that client's
//! connection is closed.

use bytes::BytesMut;

use crate::backend::{error_response, SqlState};

/// An error for one client: sent as an `ErrorResponse`, after which (when `fatal`) that
/// client's connection is closed. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: SqlState,
    pub message: String,
    pub fatal: bool,
}

impl ClientError {
    pub fn fatal(code: SqlState, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
            fatal: true,
        }
    }

    /// `password authentication failed for user "…"`, PostgreSQL's words, for every kind of
    /// failed login (wrong password, unknown user, wrong method), so a client learns nothing
    /// about which users exist.
    pub fn auth_failed(user: &str) -> Self {
        Self::fatal(
            SqlState::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        )
    }

    /// The `ErrorResponse` for this error.
    pub fn write(&self, buf: &mut BytesMut) {
        let severity = if self.fatal { "FATAL" } else { "ERROR" };
        error_response(buf, severity, self.code, &self.message);
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.0)
    }
}
