//! Client authentication: Switchyard checks who a client is itself, by the method its user's
//! `client_auth` names, before any server connection is used for it.
//!
//! - `scram-sha-256` (the default): [`switchyard_pgwire::scram`], keys from [`ScramKeyCache`].
//! - `md5`: PostgreSQL's `md5(md5(password || user) || salt)` with a fresh random salt,
//!   compared in constant time.
//! - `trust`: no check.
//!
//! A user not in the config goes through a SCRAM exchange with keys no password matches, and
//! every failure reads `password authentication failed for user "…"` (28P01), so a client
//! cannot probe which users exist.

use bytes::BytesMut;
use dashmap::DashMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use switchyard_config::ClientAuth;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::net::read::{read_frame, ReadError};
use crate::runtime::UserRuntime;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, Frame};
use switchyard_pgwire::frontend;
use switchyard_pgwire::scram::{ScramError, ScramKeys, ScramServer, MECHANISM};

/// Why a client did not get in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Tell the client, then close.
    #[error("{0}")]
    Refused(ClientError),
    /// The client went away (psql does, to ask for a password, then reconnects).
    #[error("client closed the connection during authentication")]
    Closed,
    #[error("authentication i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ReadError> for AuthError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed => AuthError::Closed,
            ReadError::Io(e) => AuthError::Io(e),
            ReadError::Frame(e) => AuthError::Refused(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                e.to_string(),
            )),
        }
    }
}

/// SCRAM keys per `(cluster, user)`, derived on first use and kept across reloads while the
/// password stays the same (deriving costs 4096 HMAC rounds; a login should not pay that).
/// Also makes the salts of unknown users stable, as PostgreSQL's mock authentication does.
#[derive(Debug)]
pub struct ScramKeyCache {
    keys: DashMap<(String, String), ([u8; 32], ScramKeys)>,
    mock_secret: [u8; 32],
}

impl Default for ScramKeyCache {
    fn default() -> Self {
        let mut mock_secret = [0u8; 32];
        rand::rng().fill_bytes(&mut mock_secret);
        ScramKeyCache {
            keys: DashMap::new(),
            mock_secret,
        }
    }
}

impl ScramKeyCache {
    /// Keys for `user` of `cluster` with this password.
    pub fn keys(&self, cluster: &str, user: &str, password: &str) -> ScramKeys {
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let id = (cluster.to_string(), user.to_string());
        if let Some(hit) = self.keys.get(&id) {
            if hit.0 == digest {
                return hit.1.clone();
            }
        }
        let keys = ScramKeys::new(password);
        self.keys.insert(id, (digest, keys.clone()));
        keys
    }

    /// Keys no password matches, with a salt that depends only on the user name.
    pub fn mock(&self, user: &str) -> ScramKeys {
        let mut h = Sha256::new();
        h.update(self.mock_secret);
        h.update(user.as_bytes());
        ScramKeys::mock(h.finalize()[..16].to_vec())
    }
}

/// Authenticate the client on `stream` as `user_name` (`user` is its config entry, if any).
/// `buf` holds bytes already read from the client and keeps whatever follows.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cluster: &str,
    user_name: &str,
    user: Option<&UserRuntime>,
    cache: &ScramKeyCache,
) -> Result<(), AuthError> {
    let password = user.and_then(|u| u.password.as_deref());
    match (user.map(|u| u.client_auth), password) {
        (Some(ClientAuth::Trust), _) => Ok(()),
        (Some(ClientAuth::Md5), Some(pw)) => md5(stream, buf, user_name, pw).await,
        (Some(ClientAuth::ScramSha256), Some(pw)) => {
            scram(stream, buf, user_name, cache.keys(cluster, user_name, pw)).await
        }
        // Unknown user, or a user without a password (refused when the config is built).
        _ => scram(stream, buf, user_name, cache.mock(user_name)).await,
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &BytesMut) -> Result<(), AuthError> {
    stream.write_all(out).await?;
    stream.flush().await?;
    Ok(())
}

/// The next password or SASL message (`p`).
async fn password_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Frame, AuthError> {
    let frame = read_frame(stream, buf, frame::auth_limit).await?;
    match frame.tag {
        b'p' => Ok(frame),
        // Terminate.
        _ => Err(AuthError::Closed),
    }
}

async fn md5<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    user: &str,
    password: &str,
) -> Result<(), AuthError> {
    let mut salt = [0u8; 4];
    rand::rng().fill_bytes(&mut salt);
    let mut out = BytesMut::new();
    message::auth_md5(&mut out, salt);
    send(stream, &out).await?;
    let frame = password_message(stream, buf).await?;
    let given = frontend::password(&frame.body);
    if switchyard_pgwire::md5::verify(user, password, salt, given) {
        Ok(())
    } else {
        Err(AuthError::Refused(ClientError::auth_failed(user)))
    }
}

async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    user: &str,
    keys: ScramKeys,
) -> Result<(), AuthError> {
    let protocol =
        |m: &str| AuthError::Refused(ClientError::fatal(SqlState::PROTOCOL_VIOLATION, m));
    let refused = |e: ScramError| match e {
        ScramError::WrongProof => AuthError::Refused(ClientError::auth_failed(user)),
        e => AuthError::Refused(ClientError::fatal(
            SqlState::PROTOCOL_VIOLATION,
            e.to_string(),
        )),
    };
    let mut out = BytesMut::new();
    message::auth_sasl(&mut out, &[MECHANISM]);
    send(stream, &out).await?;

    // SASLInitialResponse: mechanism, then an i32 length and the client-first message.
    let frame = password_message(stream, buf).await?;
    let initial = frontend::sasl_initial_response(&frame.body)
        .map_err(|_| protocol("malformed SASLInitialResponse"))?;
    if initial.mechanism != MECHANISM.as_bytes() {
        return Err(protocol(
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let data = initial
        .data
        .map_err(|_| protocol("malformed SASLInitialResponse"))?;
    let mut server = ScramServer::new(keys);
    let first = server.server_first(data).map_err(refused)?;
    out.clear();
    message::auth_sasl_continue(&mut out, first.as_bytes());
    send(stream, &out).await?;

    // SASLResponse: the client-final message.
    let frame = password_message(stream, buf).await?;
    let last = server.server_final(&frame.body).map_err(refused)?;
    out.clear();
    message::auth_sasl_final(&mut out, last.as_bytes());
    send(stream, &out).await
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
