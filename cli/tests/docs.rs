//! The documents cannot drift from the program: every `p2p-chat ...` command line in the fenced
//! code blocks of README.md, QUICKREF.md and TUTORIAL.md must parse (checked by running it with
//! `--help` appended, which clap answers only after accepting every flag and value before it).
//!
//! TUTORIAL.md must show every subcommand, and its `p2p-chat --help` session must be what the
//! program prints.
//!
//! In a `console` block (TUTORIAL.md's sessions, commands shown with their output) only lines with
//! a shell prompt (`$ p2p-chat ...`) are commands; in any other block every line is.

use std::process::{Command, Stdio};

/// The documents whose command lines are checked.
const DOCS: [&str; 3] = ["README.md", "QUICKREF.md", "TUTORIAL.md"];

fn command_lines(doc: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(format!("{}/../{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // `None` outside code blocks, else whether the block is a `console` session.
    let mut block: Option<bool> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            block = if block.is_some() { None } else { Some(info.trim() == "console") };
            continue;
        }
        let Some(console) = block else { continue };
        let line = line.split('#').next().unwrap_or("").trim();
        let line = match line.strip_prefix("$ ") {
            Some(command) => command,
            None if console => continue, // output
            None => line,
        };
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

/// Runs each command line of `doc` with `--help` appended; returns how many were checked.
fn check_commands(doc: &str) -> usize {
    let commands = command_lines(doc);
    for args in &commands {
        let out = Command::new(env!("CARGO_BIN_EXE_p2p-chat"))
            .args(args)
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
    }
    commands.len()
}

#[test]
fn every_documented_command_parses() {
    let checked: usize = DOCS.iter().map(|doc| check_commands(doc)).sum();
    assert!(checked >= 10, "only {checked} commands found");
}

#[test]
fn the_tutorial_shows_each_subcommand() {
    let commands = command_lines("TUTORIAL.md");
    for sub in ["listen", "connect", "simulate", "bench"] {
        assert!(
            commands.iter().any(|args| args.first().map(String::as_str) == Some(sub)),
            "TUTORIAL.md shows no `p2p-chat {sub}` command"
        );
    }
}

/// The `p2p-chat --help` session in TUTORIAL.md is what the program prints: a new subcommand must
/// appear there too.
#[test]
fn the_tutorial_shows_the_help_the_program_prints() {
    let text = std::fs::read_to_string(format!("{}/../TUTORIAL.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|line| line.trim() != "$ p2p-chat --help")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with("```"))
        .collect();
    assert!(!shown.is_empty(), "TUTORIAL.md shows no `p2p-chat --help` session");
    let out = Command::new(env!("CARGO_BIN_EXE_p2p-chat")).arg("--help").stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    // clap wraps long lines at the terminal's width (or its default without one): compared word
    // by word, the session is the same at any width.
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        words(&shown.join("\n")),
        words(&printed),
        "TUTORIAL.md's `p2p-chat --help` is not what the program prints"
    );
}
