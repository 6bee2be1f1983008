//! `p2p-chat`: the user's program. `listen` and `connect` start a chat node; `simulate` runs the
//! deterministic simulator; `bench` measures the node over real TCP. Errors end the program with
//! one clear line and a non-zero status.

mod args;
mod bench;
mod commands;
mod display;
mod dm;
mod huge_pages;
mod keyfile;
mod log;
mod memory;
mod names;
mod rooms;
mod session;
mod signals;
mod store;
mod tui;
mod ui;
mod web;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(log::Writer::new)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: a cause whose text the layer above
/// already quoted (as many `std::io::Error` wrappers do) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out += ": ";
        }
        out += &text;
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Listen(a) => {
            session::check_username(&a.node.username)?;
            let listen = SocketAddr::new(a.node.bind, a.port);
            session::run(a.node, Some(listen), Vec::new())
        }
        Cmd::Connect(a) => {
            session::check_username(&a.node.username)?;
            let peer = session::resolve(&a.address)?;
            let listen = (a.listen_port != 0).then(|| SocketAddr::new(a.node.bind, a.listen_port));
            session::run(a.node, listen, vec![peer])
        }
        Cmd::Simulate(a) => {
            huge_pages::reexec_with_huge_pages();
            p2p_chat_sim::run_simulate(&a)
        }
        Cmd::Bench(a) => bench::run(&a),
    }
}
