//! What the namespace tests share: whether they must run here, and running a command quietly.
//!
//! They need root (network namespaces). In CI (`CI=true`) as root they must run: anything missing
//! fails them. Elsewhere, where they cannot run, they say why and pass.

use std::process::Command;

/// Whether the test must run here rather than skip: CI runs it as root.
pub fn must_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
    }) == Some(0u32);
    root && std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The test cannot run here: fails where it must run, otherwise says why it is skipped.
pub fn cannot_run(why: &str) {
    assert!(!must_run(), "cannot run as root in CI: {why}");
    eprintln!("skipping: {why}");
}

/// Runs a command; whether it succeeded.
pub fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).output().map(|o| o.status.success()).unwrap_or(false)
}
