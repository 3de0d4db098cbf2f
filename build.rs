//! Build script of the `switchyard` binary: records the git commit it is built from, for
//! `switchyard --version` and the `switchyard_build_info` metric.
//!
//! `SWITCHYARD_GIT_COMMIT` wins when set (a container build has no `.git`: the Dockerfile
//! passes it as a build argument); otherwise `git rev-parse HEAD` in the source tree; else
//! `unknown`. The script re-runs when that variable or the checked-out commit changes.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_GIT_COMMIT");
    let commit = std::env::var("SWITCHYARD_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SWITCHYARD_GIT_COMMIT={commit}");
}

/// `git rev-parse HEAD`, and the files whose change means another commit.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"])?;
    // HEAD itself (a checkout), the branch it names (a commit) and packed-refs. `--git-path`
    // finds them in a linked worktree too, where the branch lives in the common directory.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(commit)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
