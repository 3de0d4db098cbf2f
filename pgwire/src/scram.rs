//! SCRAM (RFC 5802) with SHA-256 (RFC 7677), server side: how Switchyard checks a client's
//! password without the password ever crossing the wire.
//!
//! The server keeps a salt, an iteration count, `StoredKey = H(HMAC(SaltedPassword, "Client
//! Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")` ([`ScramKeys`], derived once
//! per user when a config is built, not per login). A login is two round trips driven by
//! [`ScramServer`]. The exchange is generic over the hash so that RFC 5802's SHA-1 test
//! vectors check the same code as RFC 7677's SHA-256 ones.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`) needs TLS, which the router does not do yet: it is
//! not offered, and a client that insists on it (`p=`) is refused.

use std::marker::PhantomData;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::Digest;
use hmac::{Mac, SimpleHmac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The mechanism name clients select.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;

/// What the server keeps to check a password: never the password itself.
#[derive(Clone)]
pub struct ScramKeys {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

impl ScramKeys {
    /// Keys for `password` with a fresh random salt (SHA-256, PostgreSQL's iteration count).
    pub fn new(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self::derive::<Sha256>(password, &salt, ITERATIONS)
    }

    /// Keys for `password` with this salt. The password is normalized with SASLprep first,
    /// or used as is when it is not valid for SASLprep, as PostgreSQL does.
    pub fn derive<D: Digest + BlockSizeUser + Clone + Sync>(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let prepared = stringprep::saslprep(password);
        let password = prepared.as_deref().unwrap_or(password);
        let mut salted = vec![0u8; <D as Digest>::output_size()];
        // SimpleHmac takes keys of any length, so this cannot fail; on the impossible error the
        // salted password stays zero and no client proof will match it.
        let _ = pbkdf2::pbkdf2::<SimpleHmac<D>>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac::<D>(&salted, b"Client Key");
        ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key: D::digest(&client_key).to_vec(),
            server_key: hmac::<D>(&salted, b"Server Key"),
        }
    }

    /// Keys no password matches, for users that do not exist: the exchange runs as for a real
    /// user and fails at the proof, so a client cannot tell the two apart. `salt` should be
    /// stable per user name.
    pub fn mock(salt: Vec<u8>) -> Self {
        let mut stored_key = vec![0u8; 32];
        let mut server_key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut stored_key);
        rand::rng().fill_bytes(&mut server_key);
        ScramKeys {
            iterations: ITERATIONS,
            salt,
            stored_key,
            server_key,
        }
    }
}

fn hmac<D: Digest + BlockSizeUser>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // `new_from_slice` accepts every key length for SimpleHmac.
    match <SimpleHmac<D> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported (the connection is not encrypted)")]
    ChannelBinding,
    #[error("SCRAM {0} is not supported")]
    Unsupported(&'static str),
    #[error("SCRAM message out of order")]
    OutOfOrder,
    /// The password was wrong (or the user unknown).
    #[error("invalid SCRAM proof")]
    WrongProof,
}

enum State {
    Initial,
    SentFirst {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// One server-side SCRAM exchange.
pub struct ScramServer<D = Sha256> {
    keys: ScramKeys,
    server_nonce: String,
    state: State,
    hash: PhantomData<D>,
}

impl ScramServer<Sha256> {
    /// An exchange with a fresh random server nonce.
    pub fn new(keys: ScramKeys) -> Self {
        let mut raw = [0u8; 18];
        rand::rng().fill_bytes(&mut raw);
        Self::with_nonce(keys, B64.encode(raw))
    }
}

impl<D: Digest + BlockSizeUser> ScramServer<D> {
    /// An exchange with this server nonce (printable, no commas): for test vectors.
    pub fn with_nonce(keys: ScramKeys, server_nonce: String) -> Self {
        ScramServer {
            keys,
            server_nonce,
            state: State::Initial,
            hash: PhantomData,
        }
    }

    /// Answer the client-first message with the server-first message.
    pub fn server_first(&mut self, client_first: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Done;
        let msg =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (cbind, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Unsupported("authorization identity"));
        }
        let mut attrs = bare.split(',');
        match attrs.next() {
            Some(a) if a.starts_with("m=") => return Err(ScramError::Unsupported("extension")),
            // The user name is ignored: the startup packet's user is the one logging in.
            Some(a) if a.starts_with("n=") => {}
            _ => return Err(ScramError::Malformed("expected a user name")),
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected a nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ScramError::Malformed("invalid nonce"));
        }
        if attrs.next().is_some() {
            // As PostgreSQL: no extensions in the client-first message.
            return Err(ScramError::Malformed(
                "garbage at end of client-first-message",
            ));
        }
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.keys.salt),
            self.keys.iterations
        );
        self.state = State::SentFirst {
            gs2_header: msg[..msg.len() - bare.len()].to_string(),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Check the client-final message's proof; on success, the server-final message that
    /// proves to the client that we know its keys too.
    pub fn server_final(&mut self, client_final: &[u8]) -> Result<String, ScramError> {
        let State::SentFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let msg =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("expected channel binding"))?;
        if B64.decode(cbind).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        if attrs.next().and_then(|a| a.strip_prefix("r=")) != Some(nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != <D as Digest>::output_size() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac::<D>(&self.keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = D::digest(&client_key);
        if !bool::from(stored.as_slice().ct_eq(&self.keys.stored_key)) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac::<D>(&self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
