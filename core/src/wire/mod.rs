//! The wire format: every message type, how it is coded, and the framing that carries it over a
//! byte stream. docs/PROTOCOL.md specifies every byte; this module is where the code makes them.
//!
//! - `messages`: the types ([`Message`], [`Hello`], [`WireError`]).
//! - `codec`: a message to its frame's bytes and back, in bincode 2's standard configuration
//!   (`direct`: the same bytes, written and read by hand for the frequent messages).
//! - `framing`: a frame is a 4-byte big-endian payload length, then the payload: a 2-byte
//!   big-endian protocol version, then the message; [`FrameDecoder`] cuts a stream into them.
//!
//! The version leads the payload, before any bincode, so a node can tell "another version" from
//! "garbage" even when the other version's messages would not decode. All encoding goes through
//! this module, so swapping bincode is a change to this module alone.

#[cfg(test)]
mod arbitrary;
mod codec;
mod direct;
mod framing;
mod messages;

pub use codec::{decode_hello, decode_payload, encode, encode_hello, encode_into, frame_size_hint};
pub(crate) use codec::{encode_ihave_into, ihave_frame_size};
pub use framing::FrameDecoder;
pub(crate) use framing::{limit, Frame, Frames, Ids};
pub use messages::{DepositOutcome, Hello, Message, RoomMessage, WireError};

/// 5: moderation (a chat may carry a membership operation, `Body::Op`; a room's sealed text names
/// its key's epoch; invites name the room's owner and when they were made).
/// 6: getting through NAT (`Observed`, `DialBack`, `DialBackResult`, `Reserve`, `Reservation`,
/// `Relayed`, `CircuitOpen`, `CircuitOpened`, `CircuitRefused`, `CircuitIncoming`, `ToRelay`,
/// `FromRelay`, `CircuitEnd`, `CircuitClosed`).
/// 7: hole punching (`PunchConnect`, `PunchSync`; `CircuitOpened` and `CircuitIncoming` carry the
/// address the relay sees the other end from).
/// 8: a private room's member asks a member neighbour for epoch keys it lacks (`RoomMessage::
/// KeysWanted`, answered with `RoomMessage::Keys`).
/// 4: direct messages (`Bundle`, `BundleRequest`, `Dm`, `Deposit`, `Deposited`, `Collect`, `Mail`,
/// `MailAck`).
/// 3: rooms (a chat names its room; `Room`, `Subscribe`, `Unsubscribe`, `FindRoom`, `RoomPeers`).
/// 2: connections are encrypted (Noise XX, see `handshake`); version 1 was plaintext. Any change
/// to the bytes on the wire bumps it (see docs/PROTOCOL.md).
pub const PROTOCOL_VERSION: u16 = 8;

/// Bytes of the protocol version that leads every frame's payload.
const VERSION_BYTES: usize = 2;

/// Default largest payload a node accepts: far above any legal message (a chat is at most ~4.3 KB,
/// a sync or id list at most ~20 KB), far below what would hurt memory.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 * 1024;

/// Most ids in one `IHave`, `IWant` or sync id list, and most addresses in a `PeerResponse`. The
/// receiver refuses larger lists; senders split.
pub const MAX_IDS_PER_FRAME: usize = 1024;
pub const MAX_ADDRS_PER_FRAME: usize = 64;
pub const MAX_RANGES_PER_FRAME: usize = 64;
