//! The names redaction goes by: which keys hold secrets and what a hidden value reads as.
//! Both directions (redacting and restoring) use them, so they sit below both.

/// Keys whose values are secrets (or hashes of secrets) and never leave the process.
pub const SECRET_KEYS: &[&str] = &["password", "sha256"];

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";
