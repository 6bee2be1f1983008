//! Leaving cleanly when told to by a signal: SIGINT (Ctrl-C in line mode; the full-screen view reads
//! Ctrl-C as a key), SIGTERM and SIGHUP (the terminal closed). The node announces that it leaves,
//! the known peers are saved, the terminal is given back, and the process exits: 0 for SIGINT, as
//! `/quit` does, 128 + the signal's number otherwise.

use std::sync::Arc;

use anyhow::{Context, Result};
use p2p_chat_core::app::NodeHandle;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::store::Store;

pub fn leave_on_signals(handle: Arc<dyn NodeHandle>, store: Option<Arc<Store>>) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot watch for signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                crate::tui::restore();
                if let Some(s) = &store {
                    crate::session::save_dm(s, &*handle);
                }
                handle.shutdown();
                if let Some(s) = &store {
                    crate::session::save_peers(s, &*handle);
                }
                std::process::exit(if sig == SIGINT { 0 } else { 128 + sig });
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
