//! Rooms in a simulation (`--rooms N`): who is in which room, which room each chat goes to, and
//! how long members took to find one another.
//!
//! Room sizes follow a Zipf law, as chat rooms do: the k-th largest room has a tenth of the
//! network over k members, and none fewer than 5. Members are drawn at random from the whole
//! network, so a room's members are scattered and must find each other through non-members. Every
//! member joins its rooms as it starts (and again after a crash, with no memory). Chats are spread
//! over the rooms and the default room alike.

use std::time::Duration;

use p2p_chat_core::random::Rng;
use p2p_chat_core::rooms::RoomKeys;
use p2p_chat_core::{RoomId, Time};

/// Smallest room.
pub const MIN_MEMBERS: usize = 5;
/// The largest room holds this share of the network.
const LARGEST_SHARE: f64 = 0.1;

pub struct SimRooms {
    pub names: Vec<String>,
    pub ids: Vec<RoomId>,
    /// Each room's members, ascending.
    pub members: Vec<Vec<u32>>,
    /// Each node's rooms.
    of_node: Vec<Vec<u16>>,
    /// The room of each chat to send, in sending order (`None`: the default room).
    plan: Vec<Option<u16>>,
    next: usize,
    /// Joins still looking for a first member neighbour: (node, room, when it joined).
    pending: Vec<(u32, u16, Time)>,
    /// When each member node last started, while it is up.
    up_since: Vec<Option<Time>>,
    /// How long each join took to find a first member neighbour, with the room's size.
    pub found: Vec<(Duration, usize)>,
}

impl SimRooms {
    pub fn none() -> SimRooms {
        SimRooms {
            names: Vec::new(),
            ids: Vec::new(),
            members: Vec::new(),
            of_node: Vec::new(),
            plan: Vec::new(),
            next: 0,
            pending: Vec::new(),
            up_since: Vec::new(),
            found: Vec::new(),
        }
    }

    pub fn new(rooms: usize, nodes: usize, messages: usize, rng: &mut Rng) -> SimRooms {
        if rooms == 0 || nodes < MIN_MEMBERS {
            return SimRooms::none();
        }
        let mut r = SimRooms::none();
        r.of_node = vec![Vec::new(); nodes];
        r.up_since = vec![None; nodes];
        let mut all: Vec<u32> = (0..nodes as u32).collect();
        for k in 0..rooms {
            let size = ((nodes as f64 * LARGEST_SHARE / (k + 1) as f64).round() as usize).clamp(MIN_MEMBERS, nodes);
            let mut members = rng.choose_k(&mut all, size).to_vec();
            members.sort_unstable();
            for &m in &members {
                r.of_node[m as usize].push(k as u16);
            }
            let name = format!("room{k}");
            r.ids.push(RoomKeys::new(&RoomKeys::public_secret(&name)).id);
            r.names.push(name);
            r.members.push(members);
        }
        // Each chat goes to one of the rooms or the default room, alike.
        r.plan = (0..messages)
            .map(|_| {
                let k = rng.below(rooms + 1);
                (k < rooms).then_some(k as u16)
            })
            .collect();
        r
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn of(&self, node: usize) -> &[u16] {
        self.of_node.get(node).map_or(&[], |v| v.as_slice())
    }

    pub fn is_member(&self, room: u16, node: usize) -> bool {
        self.members[room as usize].binary_search(&(node as u32)).is_ok()
    }

    /// The room of the `m`-th chat to send (`None`: the default room).
    pub fn plan_room(&self, m: usize) -> Option<u16> {
        self.plan.get(m).copied().flatten()
    }

    /// The room of the next chat to send (`None`: the default room, or no rooms at all).
    pub fn next_room(&mut self) -> Option<u16> {
        let r = self.plan.get(self.next).copied().flatten();
        self.next += 1;
        r
    }

    /// `node` joined its rooms at `now`: each waits for a first member neighbour.
    pub fn joined(&mut self, node: usize, now: Time) {
        if let Some(u) = self.up_since.get_mut(node) {
            *u = Some(now);
        }
        let rooms: Vec<u16> = self.of(node).to_vec();
        self.pending.retain(|(n, _, _)| *n as usize != node);
        self.pending.extend(rooms.into_iter().map(|r| (node as u32, r, now)));
    }

    /// Joins still looking for a first member neighbour.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn crashed(&mut self, node: usize) {
        if let Some(u) = self.up_since.get_mut(node) {
            *u = None;
        }
    }

    /// Takes the joins whose node now has a member neighbour in the room (`neighbours(node, room)`),
    /// and says whether any is still looking. A join is timed from when it was made or when
    /// another member of the room came up, whichever is later: nobody can be found before.
    pub fn check(&mut self, now: Time, mut neighbours: impl FnMut(usize, RoomId) -> Option<usize>) -> bool {
        let ids = &self.ids;
        let members = &self.members;
        let up_since = &self.up_since;
        let found = &mut self.found;
        self.pending.retain(|&(n, r, since)| match neighbours(n as usize, ids[r as usize]) {
            Some(k) if k > 0 => {
                let others =
                    members[r as usize].iter().filter(|&&m| m != n).filter_map(|&m| up_since[m as usize]).min();
                let from = others.map_or(since, |o| o.max(since));
                found.push((now.since(from), members[r as usize].len()));
                false
            }
            // A crashed node's joins are dropped; it joins again when it restarts.
            None => false,
            Some(_) => true,
        });
        !self.pending.is_empty()
    }
}
