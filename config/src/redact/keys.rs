//! The names redaction goes by: which keys hold secrets and what a hidden value reads as.
//! Both directions (redacting and restoring) use them, so they sit below both.

/// Keys whose values are secrets (or hashes of secrets) and never leave the process. A
/// webhook's `url` (`[rollout.webhooks.NAME]`) counts: hooks carry their credential in the
/// URL more often than not (a token in the path or the query).
pub const SECRET_KEYS: &[&str] = &["password", "sha256", "url"];

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";
