//! Rooms: many conversations over one network, each reaching only its members.
//!
//! - `keys`: a room's id and keys, derived from its secret (public rooms: from the name).
//! - `invite`: invite codes for private rooms.
//! - `state`: what a node keeps per room it is in (its chats, its gossip tree, its members).
//! - `log`: a private room's signed membership log and the rule that makes its membership.
//!
//! How rooms travel (see docs/PROTOCOL.md): one connection carries every room both ends are in. A
//! node tells each neighbour which rooms it is in with a per-connection tag per room that only a
//! member can compute or check ([`RoomKeys::tag`]); a public room also names its id, so that
//! non-members can point a newcomer to its members. Room traffic (chats, announcements,
//! requests, sync) goes only to neighbours whose tag checked out: a non-member is sent no frame of
//! it, not even an id.

mod invite;
mod keys;
pub mod log;
mod state;

pub use invite::{Invite, InviteError, MAX_INVITE_ADDRS};
pub use keys::{normalize, RoomId, RoomKeys, RoomSecret, FIRST_EPOCH, NONCE_BYTES, SEAL_OVERHEAD};
pub use log::{Effect, JoinProof, LogError, MemberLog, Membership, Op, Role};
pub use state::{Access, RoomInfo, RoomSummary};
pub(crate) use state::{Joined, Room, RoomIx, Rooms, MAX_EPOCHS, MAX_KEYS_SENT, MAX_ROOMS, MAX_UNCHECKED, MAX_WAITING};
