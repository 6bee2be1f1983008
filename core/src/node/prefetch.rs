//! Cache hints for a driver that holds many nodes and knows which one its next inputs go to (the
//! simulator, at 100,000 nodes): it can ask for a node's state a few inputs ahead, so that the
//! memory loads overlap the inputs in between instead of stalling the one that needs them. A hint
//! changes no state and no result: a node behaves the same whether or not it was given one.

use super::{Conn, ConnId, Node};

/// Starts loading the cache lines of `len` bytes from `p`, if the target has a hint for it.
#[inline]
fn lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut off = 0;
        while off < len {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 processor has, and it reads
            // nothing a program can see and never faults, whatever the address (so `wrapping_add`:
            // nothing here claims the range is valid).
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(off).cast())
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

impl Node {
    /// Hints the tables an input first reads through this node (its connection table). Reads
    /// only the node itself, so it pays once the node's own lines are cached.
    pub fn prefetch_tables(&self) {
        if let Some((first, _)) = self.conns.iter().next() {
            lines((first as *const ConnId).cast(), self.conns.len() * size_of::<(ConnId, Box<Conn>)>());
        }
    }

    /// Hints the state of connection `conn`: reads the connection table (see `prefetch_tables`).
    pub fn prefetch_conn(&self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        lines((&**c as *const Conn).cast(), size_of::<Conn>());
    }
}
