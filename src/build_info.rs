//! What this binary is: its version and the git commit it was built from (recorded by
//! `build.rs`), for `switchyard --version` and the `switchyard_build_info` metric.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The full git commit the binary was built from, or `unknown` (built outside a git
/// checkout without `SWITCHYARD_GIT_COMMIT`).
pub const COMMIT: &str = env!("SWITCHYARD_GIT_COMMIT");

/// What `switchyard --version` prints after the program name: `0.1.0 (commit 84e7477…)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SWITCHYARD_GIT_COMMIT"),
    ")"
);

/// Set `switchyard_build_info{version, commit} 1`, the usual Prometheus way to tell which
/// build each instance runs (join it onto other series, or count versions during a rollout).
pub fn publish() {
    metrics::gauge!("switchyard_build_info", "version" => VERSION, "commit" => COMMIT).set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_commit() {
        assert!(LONG_VERSION.starts_with(VERSION));
        assert!(LONG_VERSION.contains(COMMIT));
        assert!(!COMMIT.is_empty());
    }
}
