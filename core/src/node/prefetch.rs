//! Where a node's memory is, for a driver that holds many nodes and knows which one its next
//! inputs go to (the simulator, at 100,000 nodes; feature `prefetch`): it can have a node's state
//! loaded a few inputs ahead, so that the loads overlap the inputs in between instead of stalling
//! the one that needs them. Only regions are named here; nothing is read through them, and a node
//! behaves the same whether or not a driver used them.

use super::{Conn, ConnId, Node, Stats};
use crate::memory::{of, Regions};

impl Node {
    /// The bytes at the start of a `Node` that nearly every input reads or writes (`repr(C)`
    /// keeps the fields in their written order with this feature): a driver that loads a node's
    /// memory ahead of its inputs need load no more of it. Up to the cold counters at the end of
    /// `stats`, the last of the hot fields.
    pub const HOT_BYTES: usize = std::mem::offset_of!(Node, stats) + std::mem::offset_of!(Stats, grafts_sent);

    /// The tables an input reads through this node: its connection table, the chats it holds, its
    /// gossip neighbours and its output queues. Reads only the node itself.
    pub fn tables_memory(&self, f: Regions<'_>) {
        if let Some((first, _)) = self.conns.iter().next() {
            f((first as *const ConnId).cast(), self.conns.len() * size_of::<(ConnId, Box<Conn>)>());
        }
        self.main.dedup.memory(f);
        self.main.gossip.memory(f);
        let (a, b) = self.out.as_slices();
        of(a, f);
        of(b, f);
        of(&self.main.ihave[..], f);
    }

    /// The state of connection `conn`: reads the connection table (see `tables_memory`).
    pub fn conn_memory(&self, conn: ConnId, f: Regions<'_>) {
        if let Some(c) = self.conns.get(&conn) {
            of(&**c, f);
        }
    }

    /// What connection `conn` points to: its ciphers and held partial input. Reads the connection
    /// (see `conn_memory`).
    pub fn session_memory(&self, conn: ConnId, f: Regions<'_>) {
        let Some(c) = self.conns.get(&conn) else { return };
        if let Some(s) = &c.session {
            s.memory(f);
        }
        c.decoder.memory(f);
    }
}
