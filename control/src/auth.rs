//! Bearer-token authentication for the control API.
//!
//! Tokens are known only by their SHA-256: the config holds the hash, or names an
//! environment variable whose value is hashed when the config is applied. A presented token
//! is hashed and compared with every known hash in constant time, with no early exit, so the
//! time taken says nothing about which token (if any) was close.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_config::{ControlConfig, Role, TokenCredential};

/// Who made a request: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <token>` in visible ASCII.
    Malformed,
    /// A token that matches none.
    Unknown,
}

/// The tokens of the applied config, with environment variables already read.
#[derive(Debug, Default)]
pub struct TokenSet {
    entries: Vec<(String, Role, [u8; 32])>,
}

impl TokenSet {
    /// Resolve the config's tokens; a missing environment variable is an error naming the key.
    pub fn from_config(control: &ControlConfig) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(control.tokens.len());
        for (i, t) in control.tokens.iter().enumerate() {
            let digest = match &t.credential {
                TokenCredential::Sha256(h) => *h,
                TokenCredential::Sha256Env(var) => {
                    let mut digest = [0u8; 32];
                    let value = std::env::var(var).unwrap_or_default();
                    if hex::decode_to_slice(value.trim(), &mut digest).is_err() {
                        return Err(format!(
                            "control.tokens[{i}].sha256_env: environment variable {var} is not set or is not 64 hex digits (token {:?})",
                            t.name
                        ));
                    }
                    digest
                }
                TokenCredential::Env(var) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Sha256::digest(v.as_bytes()).into(),
                    _ => {
                        return Err(format!(
                            "control.tokens[{i}].env: environment variable {var} is not set (token {:?})",
                            t.name
                        ))
                    }
                },
            };
            entries.push((t.name.clone(), t.role, digest));
        }
        Ok(TokenSet { entries })
    }

    /// Check an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Malformed);
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&(String, Role, [u8; 32])> = None;
        for entry in &self.entries {
            if bool::from(entry.2.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found
            .map(|(name, role, _)| Principal {
                name: name.clone(),
                role: *role,
            })
            .ok_or(AuthError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::TokenConfig;

    fn set() -> TokenSet {
        let mut control = switchyard_config::parse("")
            .map(|c| c.control)
            .unwrap_or_else(|e| panic!("{e}"));
        control.tokens = vec![TokenConfig {
            name: "ops".into(),
            role: Role::Operator,
            credential: TokenCredential::Sha256(Sha256::digest(b"s3cret").into()),
        }];
        TokenSet::from_config(&control).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn bearer_tokens() {
        let s = set();
        assert_eq!(
            s.authenticate(Some(b"Bearer s3cret")).map(|p| p.role),
            Ok(Role::Operator)
        );
        assert_eq!(
            s.authenticate(Some(b"bearer s3cret")).map(|p| p.name),
            Ok("ops".into())
        );
        assert_eq!(
            s.authenticate(Some(b"Bearer wrong")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            s.authenticate(Some(b"Basic s3cret")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            s.authenticate(Some(b"Bearer \xff\xfe")),
            Err(AuthError::Malformed)
        );
        assert_eq!(s.authenticate(None), Err(AuthError::Missing));
    }

    /// The error of resolving one token with `credential`.
    fn resolve_error(credential: TokenCredential) -> String {
        let mut control = switchyard_config::parse("")
            .map(|c| c.control)
            .unwrap_or_else(|e| panic!("{e}"));
        control.tokens = vec![TokenConfig {
            name: "ops".into(),
            role: Role::Admin,
            credential,
        }];
        TokenSet::from_config(&control).err().unwrap_or_default()
    }

    #[test]
    fn missing_env_token_names_the_key() {
        let err = resolve_error(TokenCredential::Env("SWITCHYARD_TEST_SURELY_UNSET".into()));
        assert!(err.contains("control.tokens[0].env"), "{err}");
    }

    #[test]
    fn a_missing_hash_variable_names_the_key() {
        let unset = TokenCredential::Sha256Env("SWITCHYARD_TEST_SURELY_UNSET".into());
        let err = resolve_error(unset);
        assert!(err.contains("control.tokens[0].sha256_env"), "{err}");
    }
}
