//! PostgreSQL's md5 password scheme, `"md5" || md5(md5(password || user) || salt)`, both
//! ways: [`hash`] is what a client sends for a salt (the router logging in to a server), and
//! [`verify`] checks what a client sent, in constant time (the router checking a client).

use subtle::ConstantTimeEq;

/// The md5 answer for `user` with `password` to a server's `salt`.
pub fn hash(user: &str, password: &str, salt: [u8; 4]) -> String {
    postgres_protocol::authentication::md5_hash(user.as_bytes(), password.as_bytes(), salt)
}

/// Whether `given` (the password message's text, without its NUL) is the md5 answer of
/// `user` with `password` to `salt`. Compared in constant time.
pub fn verify(user: &str, password: &str, salt: [u8; 4], given: &[u8]) -> bool {
    bool::from(given.ct_eq(hash(user, password, salt).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres_documented_scheme() {
        // md5(md5("secret" || "app") || salt), as libpq computes it.
        let h = hash("app", "secret", [1, 2, 3, 4]);
        assert!(h.starts_with("md5") && h.len() == 35);
        assert!(verify("app", "secret", [1, 2, 3, 4], h.as_bytes()));
        assert!(!verify("app", "wrong", [1, 2, 3, 4], h.as_bytes()));
        assert!(!verify("app", "secret", [4, 3, 2, 1], h.as_bytes()));
        assert!(!verify("app", "secret", [1, 2, 3, 4], b""));
    }
}
