//! Gives memory freed by closed connections back to the system. glibc's malloc returns memory to
//! the kernel only from the top of an arena, so buffers freed below live ones stay resident: after
//! 34 hostile peers were shed, a node stayed 2-3 MiB above its starting RSS for as long as it was
//! watched, and `malloc_trim(0)` brought it back to within 0.5 MiB (cli/tests/attack_memory.rs).
//! Trimming walks every arena, so it runs on a thread of its own, at most once a second, and only
//! after a peer has gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(1);

static PEER_LEFT: AtomicBool = AtomicBool::new(false);
static TRIMMER: Once = Once::new();

/// A peer's connection was closed: its buffers are trimmed away within a second.
pub fn peer_left() {
    PEER_LEFT.store(true, Ordering::Relaxed);
    TRIMMER.call_once(|| {
        let spawned = std::thread::Builder::new().name("p2p-chat-trim".into()).spawn(|| loop {
            std::thread::sleep(EVERY);
            if PEER_LEFT.swap(false, Ordering::Relaxed) {
                trim();
            }
        });
        if let Err(e) = spawned {
            tracing::debug!("no thread to give freed memory back: {e}");
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only returns free memory to the kernel; glibc
    // locks each arena while it trims, so it may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
