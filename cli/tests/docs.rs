//! The documents cannot drift from the program: every `p2p-chat ...` command line in README.md and
//! QUICKREF.md must parse (checked by running it with `--help` appended, which clap answers only
//! after accepting every flag and value before it).

use std::process::{Command, Stdio};

fn command_lines(doc: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(format!("{}/../{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let line = line.split('#').next().unwrap_or("").trim();
        let args = line.strip_prefix("cargo run --release -- ").or_else(|| line.strip_prefix("p2p-chat "));
        if let Some(args) = args {
            if args.contains('[') || args.contains("HOST:PORT") {
                continue; // a usage pattern, not a command
            }
            out.push(args.split_whitespace().map(str::to_owned).collect());
        }
    }
    out
}

#[test]
fn every_documented_command_parses() {
    let mut checked = 0;
    for doc in ["README.md", "QUICKREF.md"] {
        for args in command_lines(doc) {
            let out = Command::new(env!("CARGO_BIN_EXE_p2p-chat"))
                .args(&args)
                .arg("--help")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{doc}: `p2p-chat {}` does not parse: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} commands found");
}
