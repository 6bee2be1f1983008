//! Cache hints for a driver that holds many nodes and knows which one its next inputs go to (the
//! simulator, at 100,000 nodes): it can ask for a node's state a few inputs ahead, so that the
//! memory loads overlap the inputs in between instead of stalling the one that needs them. A hint
//! changes no state and no result: a node behaves the same whether or not it was given one.

use super::{Conn, ConnId, Node, Stats};
use crate::hint::{lines, value};

impl Node {
    /// The bytes at the start of a `Node` that nearly every input reads or writes: a driver that
    /// hints a node's memory ahead of its inputs need hint no more of it (the rest is cold,
    /// touched by connection changes, timers and commands). Up to the cold counters at the end of
    /// `stats`, the last of the hot fields.
    pub const HOT_BYTES: usize = std::mem::offset_of!(Node, stats) + std::mem::offset_of!(Stats, grafts_sent);

    /// Hints the tables an input reads through this node: its connection table, the chats it
    /// holds, its gossip neighbours and its output queues. Reads only the node itself, so it pays
    /// once the node's own lines are cached.
    pub fn prefetch_tables(&self) {
        if let Some((first, _)) = self.conns.iter().next() {
            lines((first as *const ConnId).cast(), self.conns.len() * size_of::<(ConnId, Box<Conn>)>());
        }
        self.dedup.prefetch();
        self.gossip.prefetch();
        let (a, b) = self.out.as_slices();
        value(a);
        value(b);
        value(&self.ihave[..]);
    }

    /// Hints the state of connection `conn`: reads the connection table (see `prefetch_tables`).
    pub fn prefetch_conn(&self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        lines((&**c as *const Conn).cast(), size_of::<Conn>());
    }

    /// Hints what connection `conn` points to: its ciphers and held partial input. Reads the
    /// connection (see `prefetch_conn`).
    pub fn prefetch_session(&self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        if let Some(s) = &c.session {
            s.prefetch();
        }
        c.decoder.prefetch();
    }
}
