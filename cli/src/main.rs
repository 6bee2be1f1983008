//! `p2p-chat`: the user's program. `listen` and `connect` start a chat node; `simulate` runs the
//! deterministic simulator; `bench` measures the node over real TCP. Errors end the program with
//! one clear line and a non-zero status.

mod args;
mod bench;
mod huge_pages;
mod keyfile;
mod session;
mod store;
mod ui;
mod web;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Listen(a) => {
            session::check_username(&a.node.username)?;
            let listen = SocketAddr::from(([0, 0, 0, 0], a.port));
            session::run(a.node, Some(listen), Vec::new())
        }
        Cmd::Connect(a) => {
            session::check_username(&a.node.username)?;
            let peer = session::resolve(&a.address)?;
            let listen = (a.listen_port != 0).then(|| SocketAddr::from(([0, 0, 0, 0], a.listen_port)));
            session::run(a.node, listen, vec![peer])
        }
        Cmd::Simulate(a) => {
            huge_pages::reexec_with_huge_pages();
            p2p_chat_sim::run_simulate(&a)
        }
        Cmd::Bench(a) => bench::run(&a),
    }
}
