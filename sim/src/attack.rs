//! Attacker peers (`simulate --attackers N`): virtual peers outside the honest network, each
//! driven by the core's `testing::Client`, so they complete the real Noise handshake under
//! identities of their own and then send well-formed request floods (the core's `testing::flood`).
//!
//! Each attacker dials [`VICTIMS_EACH`] honest nodes chosen by the seed when the fault phase
//! begins, asks each once for everything it holds (`Sync` with an empty summary, the catch-up of
//! a new peer), waits [`CATCH_UP`], and then sends its kind of flood paced just under the control
//! rate ([`PACED_PER_SEC`] frames a second, in ticks of [`TICK`]) until the fault phase ends. A
//! connection the victim closes (a ban) is dialed again at once under a fresh identity. The kinds
//! are dealt to the attackers in turn from an offset the seed chooses.
//!
//! What is measured, per connection from the end of its catch-up: the bytes the attacker sent
//! (sealed records) and received, whose ratio is the amplification the victims allow; how many
//! attacker connections the victims banned; and what the victims queue for an attacker: the most
//! bytes a victim wrote to one attacker in answer to one input (one read), and the most it had
//! written to one attacker that had not arrived yet.

use std::time::Duration;

use p2p_chat_core::testing::{flood, Client};
use p2p_chat_core::wire::Message;
use p2p_chat_core::ChatId;
use serde::Serialize;

/// Frames a second each attacker connection sends: just under the node's control-frame rate
/// (2,000 a second), so that rate alone never cuts it off.
pub const PACED_PER_SEC: usize = 1_900;
/// A paced connection sends a record of `PACED_PER_SEC / 100` frames every 10 ms.
pub const TICK: Duration = Duration::from_millis(10);
pub const FRAMES_PER_TICK: usize = PACED_PER_SEC / 100;
/// How long a connection waits after its catch-up request before flooding (and before its bytes
/// count towards the amplification): ten times the default network's largest latency.
pub const CATCH_UP: Duration = Duration::from_secs(1);
/// Honest nodes each attacker dials.
pub const VICTIMS_EACH: usize = 3;
/// Ids an attacker remembers to ask for (from the chats and announcements it was sent), newest
/// kept: as many as the measured attack asked for at once.
const MAX_IDS: usize = 300;

/// The request floods, one kind per attacker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flood {
    /// `Sync` over every id with an empty summary: "I hold nothing".
    SyncEverything,
    /// `Sync` of as many ranges as a frame holds, each over every id with a fingerprint that
    /// matches nothing.
    SyncWalks,
    /// `IWant` of every id the attacker has learnt.
    IWant,
    /// `Graft` of every id the attacker has learnt.
    Graft,
    PeerRequest,
}

impl Flood {
    pub const ALL: [Flood; 5] =
        [Flood::SyncEverything, Flood::SyncWalks, Flood::IWant, Flood::Graft, Flood::PeerRequest];

    pub fn name(self) -> &'static str {
        match self {
            Flood::SyncEverything => "sync-everything",
            Flood::SyncWalks => "sync-walks",
            Flood::IWant => "iwant",
            Flood::Graft => "graft",
            Flood::PeerRequest => "peer-request",
        }
    }

    /// One tick's frames.
    pub fn batch(self, ids: &[ChatId]) -> Vec<u8> {
        let frame = match self {
            Flood::SyncEverything => flood::sync_everything(),
            Flood::SyncWalks => flood::sync_walks(),
            Flood::IWant => flood::iwant(ids),
            Flood::Graft => flood::graft(ids),
            Flood::PeerRequest => flood::peer_request(),
        };
        flood::repeat(&frame, FRAMES_PER_TICK)
    }
}

/// One attacker connection.
pub struct Conn {
    /// The attacker's name for it, unique within the attacker (the victim's link names it so).
    pub id: u32,
    pub client: Client,
    pub victim: u32,
    pub victim_inc: u16,
    pub victim_conn: u32,
    pub base_us: u32,
    /// Nothing the attacker sends later arrives before this (ordered like a TCP stream).
    pub clock: p2p_chat_core::Time,
    /// The handshake's first message, sent once the TCP connection is up.
    pub first: Vec<u8>,
    /// When the catch-up request went out (the handshake is done then).
    pub caught_up_at: Option<p2p_chat_core::Time>,
    /// `client.bytes_out` and `bytes_in` when flooding began.
    pub flood_base: Option<(u64, u64)>,
    /// Bytes the victim wrote on this connection that have not arrived.
    pub in_flight: u64,
    /// The event (`World::events`) of the victim's last write here, and what it wrote in it.
    pub input_event: u64,
    pub input_bytes: u64,
}

impl Conn {
    /// Bytes (sent, received) since flooding began.
    pub fn flooded(&self) -> (u64, u64) {
        match self.flood_base {
            Some((out, inn)) => (self.client.bytes_out - out, self.client.bytes_in - inn),
            None => (0, 0),
        }
    }
}

/// One attacker: its flood, its victims, its open connections.
pub struct Attacker {
    pub kind: Flood,
    pub victims: Vec<u32>,
    pub conns: Vec<Conn>,
    /// Identities used so far (the next one's number).
    pub identities: u32,
    pub next_conn: u32,
    /// Chat ids it has been sent or told of, newest last.
    pub ids: Vec<ChatId>,
}

impl Attacker {
    pub fn learn(&mut self, messages: Vec<Message>) {
        for m in messages {
            match m {
                Message::Chat { chat, .. } | Message::Reply { chat, .. } => self.ids.push(chat.id),
                Message::IHave { ids } => self.ids.extend(ids),
                _ => {}
            }
        }
        if self.ids.len() > 2 * MAX_IDS {
            self.ids.sort_unstable();
            self.ids.dedup();
            let cut = self.ids.len().saturating_sub(MAX_IDS);
            self.ids.drain(..cut);
        }
    }

    /// The ids a want or graft asks for: the newest, at most `MAX_IDS`.
    pub fn asked_ids(&self) -> Vec<ChatId> {
        let mut ids = self.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        let cut = ids.len().saturating_sub(MAX_IDS);
        ids.split_off(cut)
    }
}

/// What the attackers measured, per kind of flood.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindFigures {
    pub kind: &'static str,
    pub attackers: usize,
    /// Attacker connections that completed the handshake.
    pub connections: u64,
    /// Attacker connections the victims banned.
    pub bans: u64,
    /// Bytes the attackers sent and received after their connections' catch-ups.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub amplification: f64,
}

/// Totals over all attackers, kept as connections end.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub connections: u64,
    pub bans: u64,
    pub closed_by_victims: u64,
    pub catch_up_sent: u64,
    pub catch_up_received: u64,
    /// Per kind (index in `Flood::ALL`): connections, bans, bytes sent and received flooding.
    pub per_kind: [(u64, u64, u64, u64); 5],
    /// Most bytes a victim wrote to one attacker in answer to one input.
    pub answer_per_read_bytes_max: u64,
    /// Most bytes a victim had written to one attacker that had not arrived.
    pub in_flight_bytes_max: u64,
    /// Broken connections: the client could not open what a victim sent (must stay 0).
    pub client_errors: u64,
}

impl Tally {
    /// A connection ends: its flood figures join the totals.
    pub fn close(&mut self, kind: Flood, c: &Conn) {
        let (sent, received) = c.flooded();
        let k = &mut self.per_kind[kind as usize];
        k.2 += sent;
        k.3 += received;
        let (out, inn) = c.flood_base.unwrap_or((c.client.bytes_out, c.client.bytes_in));
        self.catch_up_sent += out;
        self.catch_up_received += inn;
    }
}

/// Identity `generation` of attacker `a`: distinct from every honest node's (which are small
/// numbers) and from each other, the same every run of the seed.
pub fn identity_seed(seed: u64, a: usize, generation: u32) -> u64 {
    let mut x = seed ^ ((a as u64) << 32 | u64::from(generation)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1 << 63
}
