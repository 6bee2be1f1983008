//! The web interface in a real browser: runs `cli/tests/web/browser.test.mjs` (Playwright driving
//! headless Chromium against real `p2p-chat` processes) with Node's test runner.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it) and Node.js; the Playwright package is
//! installed from `package-lock.json` with `npm ci` when `node_modules` is missing. Outside CI a
//! machine without Chromium or Node.js skips the test with a message; in CI (`CI` set) it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn found(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing: the browser tests cannot run");
    }
    eprintln!("skipped: {what} is missing (install it to run the browser tests)");
}

#[test]
fn web_interface_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    if !chromium.exists() {
        return missing(&format!("Chromium ({})", chromium.display()));
    }
    if !found("node") || !found("npm") {
        return missing("Node.js (node and npm)");
    }
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    let shots = std::env::temp_dir().join(format!("p2p-chat-web-{}", std::process::id()));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "browser.test.mjs"])
        .current_dir(&dir)
        .env("P2P_CHAT_BIN", env!("CARGO_BIN_EXE_p2p-chat"))
        .env("CHROMIUM", &chromium)
        .env("SHOT_DIR", &shots)
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser tests failed (screenshots in {})", shots.display());
    // The screenshot at phone width was taken, and is a real picture.
    let png = std::fs::read(shots.join("web-375.png")).expect("the 375 px screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a PNG with something in it");
    println!("screenshots: {}", shots.display());
}
