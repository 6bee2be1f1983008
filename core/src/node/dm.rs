//! Direct messages at the node: the building blocks of [`crate::dm`] wired to connections, commands
//! and timers (docs/PROTOCOL.md 9.2).
//!
//! - **Bundles.** Each node signs a bundle naming its X25519 keys and [`DmConfig::mailboxes`] of its
//!   neighbours as mailboxes, and sends it to every neighbour on connecting and whenever it
//!   changes. A sender finds a recipient's bundle in its own book (a neighbour's, a contact added
//!   with `Command::AddBundle`, or one met before), else asks with `BundleRequest`: answered by
//!   any node that holds it, else passed to one random neighbour while its `ttl` (at most
//!   [`BUNDLE_TTL`]) lasts. Cost bound: one request costs at most `BUNDLE_TTL + 1` frames
//!   forward and as many answers back, each answer charged to the asker's credit.
//! - **Delivery.** An envelope goes straight to its recipient when connected, else to the
//!   recipient's mailboxes (dialed if need be). A mailbox that takes it pushes it on at once if
//!   the recipient is its neighbour, else holds it until the recipient collects (on connecting to
//!   a mailbox it named) and acknowledges with a signed ack. The sender retries (the outbox's
//!   backoff) until a delivery receipt comes back, or the envelope expires.
//! - **Receipts and typing.** Receipts are envelopes too, sent like messages but never reported
//!   and forgotten once handed to the recipient or a mailbox. Typing notices go only to a
//!   connected recipient and are never stored.
//!
//! Every service is bounded before it is done: DM frames share a per-connection rate
//! ([`DM_REQUESTS`]), answers (bundles, mail pages) are charged to the asker's credit, deposits
//! fall under the mailbox's quotas, mail is taken only from mailboxes this node named.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::*;
use crate::dm::{
    self, Ack, Body as DmBody, BundleBook, BundleError, DmCrypto, DmId, DmState, Envelope, KeyBundle, Mailbox,
    MailboxAddr, MailboxConfig, OpenError, Outbox, OutboxConfig, ReceiptKind, ReplayGuard, SignedBundle, StateChange,
    Update, Usage,
};
use crate::wire::DepositOutcome;

/// How far a `BundleRequest` walks: the asker's neighbour, and three more beyond it.
pub const BUNDLE_TTL: u8 = 4;
/// How long a passed-on `BundleRequest` waits for its answer.
const WALK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most `BundleRequest`s passed on and waiting at once.
const MAX_WALKS: usize = 64;
/// DM frames (bundles, requests, deposits, collects, acks) a connection may send: a burst for a
/// mailbox's catch-up, then 20 a second. Over it a frame is dropped and costs `Flood`.
pub const DM_REQUESTS: RateLimit = RateLimit::new(20.0, 200.0);
/// Most envelopes in one `Mail` page, and its bytes (about).
pub const MAX_MAIL_PAGE: usize = 64;
const MAIL_PAGE_BYTES: usize = 64 * 1024;
/// Mailboxes of this node's recent bundles still collected from.
const MAX_NAMED: usize = 8;
/// Texts waiting for their recipient's bundle.
const MAX_AWAITING: usize = 256;
/// How often the node looks again for bundles it waits for, mailboxes to collect from, and
/// whether its own mailboxes need replacing.
const DM_ROUND: Duration = Duration::from_secs(5);
/// Texts received whose ids are kept to acknowledge their retries again (a receipt lost).
const MAX_TEXTS_SEEN: usize = 4096;
/// How long a typing notice may take to arrive before it means nothing.
const TYPING_EXPIRY: Duration = Duration::from_secs(30);

/// Direct messages' settings.
#[derive(Clone, Debug)]
pub struct DmConfig {
    /// Send read receipts, and show those received.
    pub read_receipts: bool,
    /// Send typing notices, and show those received.
    pub typing: bool,
    /// How long a message is kept for its recipient.
    pub expiry: Duration,
    /// Mailboxes named in this node's bundle.
    pub mailboxes: usize,
    pub mailbox: MailboxConfig,
    pub outbox: OutboxConfig,
    /// Bundles of other identities kept.
    pub bundles: usize,
    /// Ids of opened messages remembered (see [`ReplayGuard`]).
    pub replay: usize,
}

impl Default for DmConfig {
    fn default() -> DmConfig {
        DmConfig {
            read_receipts: true,
            typing: true,
            expiry: dm::DEFAULT_EXPIRY,
            mailboxes: 3,
            // Identities served: more than the default 8, since nodes up longest are named by many
            // of their neighbours; what is held stays within the same byte quotas.
            mailbox: MailboxConfig { recipients_max: 32, ..MailboxConfig::default() },
            outbox: OutboxConfig::default(),
            bundles: 1024,
            replay: 65_536,
        }
    }
}

/// A direct message shown to the user: received, or written here (`outgoing`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmDelivery {
    pub id: DmId,
    pub from: PeerId,
    pub to: PeerId,
    pub text: String,
    pub sent_at: Time,
    pub outgoing: bool,
}

/// What a node keeps of direct messages across a restart (the ratchet's own state is the crypto
/// implementation's to save).
#[derive(Serialize, Deserialize)]
pub struct DmSnapshot {
    book: BundleBook,
    replay: ReplayGuard,
    outbox: Outbox,
    mailbox: Mailbox,
    own: Option<SignedBundle>,
    named: Vec<MailboxAddr>,
    quiet: BTreeSet<DmId>,
    awaiting: Vec<Awaiting>,
}

impl DmSnapshot {
    /// The snapshot as bytes to store (bincode; it holds envelopes as ciphertext, and the texts
    /// still waiting for their recipient's bundle).
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).expect("a snapshot always encodes")
    }

    /// Reads back [`DmSnapshot::to_bytes`]; `None` if the bytes are not a snapshot.
    pub fn from_bytes(bytes: &[u8]) -> Option<DmSnapshot> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).ok().map(|(s, _)| s)
    }

    /// The node's own bundle as last published.
    pub fn own_bundle(&self) -> Option<&SignedBundle> {
        self.own.as_ref()
    }
}

/// A text whose recipient's bundle is not known yet.
#[derive(Clone, Serialize, Deserialize)]
struct Awaiting {
    id: DmId,
    to: PeerId,
    text: String,
    at: Time,
}

/// A `BundleRequest` passed on for a neighbour.
struct BundleWalk {
    peer: PeerId,
    from: ConnId,
    until: Time,
}

/// A mailbox this node named, and whether all it held was collected since the link last went.
struct Named {
    mailbox: MailboxAddr,
    collected: bool,
}

pub(super) struct Dm {
    crypto: Box<dyn DmCrypto>,
    book: BundleBook,
    replay: ReplayGuard,
    outbox: Outbox,
    mailbox: Mailbox,
    /// This node's bundle as last sent to its neighbours.
    own: Option<SignedBundle>,
    /// Mailboxes of this node's recent bundles, newest last (at most `MAX_NAMED`).
    named: Vec<Named>,
    /// Outbox entries that are receipts: never reported, dropped once handed over.
    quiet: BTreeSet<DmId>,
    /// Outbox entries that are room keys: retried until their receipt like a text, never
    /// reported. Not saved: after a restart their state changes come as `Event::DmState` for ids
    /// the application never showed (the CLI says nothing of those).
    silent: BTreeSet<DmId>,
    awaiting: Vec<Awaiting>,
    walks: Vec<BundleWalk>,
    /// Established neighbours by peer id.
    peers: BTreeMap<PeerId, ConnId>,
    /// Each connection's DM frames (`DM_REQUESTS`): made at its first.
    tokens: BTreeMap<ConnId, Tokens>,
    /// When the next round is due (`DM_ROUND`), if something waits for one.
    round_at: Option<Time>,
    /// Ids of the last `MAX_TEXTS_SEEN` texts received, oldest first: a copy of one arriving again
    /// is answered with its receipt again, a copy of anything else with nothing (receipts of
    /// receipts, each copy from another mailbox, would never end).
    texts_seen: VecDeque<DmId>,
}

impl Dm {
    fn new(crypto: Box<dyn DmCrypto>, me: PeerId, c: &DmConfig) -> Dm {
        Dm {
            crypto,
            book: BundleBook::new(c.bundles),
            replay: ReplayGuard::new(c.replay),
            outbox: Outbox::new(c.outbox.clone()),
            mailbox: Mailbox::new(me, c.mailbox.clone()),
            own: None,
            named: Vec::new(),
            quiet: BTreeSet::new(),
            silent: BTreeSet::new(),
            awaiting: Vec::new(),
            walks: Vec::new(),
            peers: BTreeMap::new(),
            tokens: BTreeMap::new(),
            round_at: None,
            texts_seen: VecDeque::new(),
        }
    }

    fn is_named(&self, peer: &PeerId) -> bool {
        self.named.iter().any(|n| n.mailbox.peer == *peer)
    }

    /// Peers whose bundles the book must keep: recipients of what the outbox still holds.
    fn needed_bundles(&self) -> BTreeSet<PeerId> {
        self.outbox.pending().map(|(e, _)| e.to).collect()
    }
}

impl Node {
    /// Turns direct messages on, with this ratchet: the simulator and tests pass
    /// [`StandInCrypto`](crate::dm::StandInCrypto), the runtimes `OlmCrypto`.
    pub fn with_dm(mut self, crypto: Box<dyn DmCrypto>) -> Node {
        self.dm = Some(Box::new(Dm::new(crypto, self.peer_id(), &self.config.dm)));
        self
    }

    /// What to save of direct messages (pending messages, mailbox, bundles), if they are on.
    pub fn dm_state(&self) -> Option<DmSnapshot> {
        let d = self.dm.as_ref()?;
        Some(DmSnapshot {
            book: d.book.clone(),
            replay: d.replay.clone(),
            outbox: d.outbox.clone(),
            mailbox: d.mailbox.clone(),
            own: d.own.clone(),
            named: d.named.iter().map(|n| n.mailbox.clone()).collect(),
            quiet: d.quiet.clone(),
            awaiting: d.awaiting.clone(),
        })
    }

    /// The node's direct messages, taken out as it goes down: the ratchet and what
    /// [`Node::dm_state`] saves, to give a later node of this identity (a restart that kept its disk).
    pub fn into_dm(self) -> Option<(Box<dyn DmCrypto>, DmSnapshot)> {
        let snapshot = self.dm_state()?;
        Some((self.dm?.crypto, snapshot))
    }

    /// The ratchet's own state to save ([`DmCrypto::save`]), if direct messages are on.
    pub fn dm_crypto_save(&self) -> Option<Vec<u8>> {
        self.dm.as_ref()?.crypto.save()
    }

    /// Takes back what [`Node::dm_state`] saved (after [`Node::with_dm`], before any input).
    pub fn restore_dm(&mut self, now: Time, s: DmSnapshot) {
        let Some(d) = self.dm.as_mut() else { return };
        d.book = s.book;
        d.replay = s.replay;
        d.outbox = s.outbox;
        d.mailbox = s.mailbox;
        d.own = s.own;
        d.named = s.named.into_iter().map(|mailbox| Named { mailbox, collected: false }).collect();
        d.quiet = s.quiet;
        d.awaiting = s.awaiting;
        d.round_at = Some(now);
        self.arm_dm();
    }

    /// This node's bundle as last published, if direct messages are on and it made one.
    pub fn own_bundle(&self) -> Option<&SignedBundle> {
        self.dm.as_ref()?.own.as_ref()
    }

    /// What this node holds for others as a mailbox.
    pub fn mailbox_usage(&self) -> Usage {
        self.dm.as_ref().map(|d| d.mailbox.usage()).unwrap_or_default()
    }

    /// A message's delivery state, while the outbox keeps it.
    pub fn dm_status(&self, id: &DmId) -> Option<DmState> {
        self.dm.as_ref()?.outbox.state(id)
    }

    pub(super) fn on_dm_command(&mut self, now: Time, cmd: Command) {
        if self.dm.is_none() {
            return self.emit(Event::Refused("direct messages are off".into()));
        }
        match cmd {
            Command::Dm { to, text } => self.send_dm(now, to, text),
            Command::DmRead { from, ids } => {
                if self.config.dm.read_receipts && !ids.is_empty() {
                    for chunk in ids.chunks(dm::envelope::MAX_RECEIPT_IDS) {
                        self.send_quiet(now, from, DmBody::Receipt { kind: ReceiptKind::Read, of: chunk.to_vec() });
                    }
                }
            }
            Command::Typing { to, on } => {
                if self.config.dm.typing && self.dm_conn(&to).is_some() {
                    self.seal_and(now, to, DmBody::Typing(on), TYPING_EXPIRY, |node, env| {
                        if let Some(conn) = node.dm_conn(&env.to) {
                            node.send(conn, &Message::Dm { envelope: Box::new(env) });
                        }
                    });
                }
            }
            Command::AddBundle(bundle) => {
                let keys = &*self.keys;
                let Some(d) = self.dm.as_mut() else { return };
                let needed = d.needed_bundles();
                match d.book.insert(keys, now, *bundle, |p| needed.contains(p)) {
                    Ok(_) | Err(BundleError::Stale) => self.on_bundle_known(now),
                    Err(e) => self.emit(Event::Refused(format!("bundle refused: {e}"))),
                }
            }
            _ => unreachable!("not a direct-message command"),
        }
        self.arm_dm();
    }

    fn dm_conn(&self, peer: &PeerId) -> Option<ConnId> {
        self.dm.as_ref()?.peers.get(peer).copied()
    }

    fn send_dm(&mut self, now: Time, to: PeerId, text: String) {
        if to == self.peer_id() {
            return self.emit(Event::Refused("a direct message to oneself goes nowhere".into()));
        }
        if text.len() > MAX_TEXT_BYTES {
            return self.emit(Event::Refused(format!("a message is at most {MAX_TEXT_BYTES} bytes")));
        }
        let id = DmId::generate(now, &mut self.rng);
        let Some(d) = self.dm.as_mut() else { return };
        let ready = d.crypto.has_session(&to) || d.book.get(&to).is_some();
        if !ready && d.awaiting.len() >= MAX_AWAITING {
            return self.emit(Event::Refused("too many messages wait for their recipients' keys".into()));
        }
        let me = self.peer_id();
        let delivery = DmDelivery { id, from: me, to, text: text.clone(), sent_at: now, outgoing: true };
        self.emit(Event::Dm(Box::new(delivery)));
        if ready {
            self.seal_text(now, id, to, text, now);
        } else {
            let Some(d) = self.dm.as_mut() else { return };
            d.awaiting.push(Awaiting { id, to, text, at: now });
            d.round_at.get_or_insert(now + DM_ROUND);
            self.emit(Event::DmState { id, to, state: DmState::Queued });
            self.request_bundle(to, None);
        }
    }

    /// Seals a text (its session started from the bundle if need be), queues it and tries it.
    fn seal_text(&mut self, now: Time, id: DmId, to: PeerId, text: String, sent_at: Time) {
        let keys = &*self.keys;
        let Some(d) = self.dm.as_mut() else { return };
        d.book.touch(&to, now);
        if !d.crypto.has_session(&to) {
            let Some(b) = d.book.get(&to) else { return };
            if let Err(e) = d.crypto.start_session(&mut self.rng, to, &b.bundle.keys) {
                return self.emit(Event::Refused(format!("cannot write to {}: {e}", to.short())));
            }
        }
        let expires_at = sent_at + self.config.dm.expiry;
        let msg = dm::Message { id, sender: keys.public_key(), to, sent_at, expires_at, body: DmBody::Text(text) };
        let sealed = dm::seal(&mut *d.crypto, keys, &mut self.rng, &msg);
        let pushed =
            sealed.map_err(|e| e.to_string()).and_then(|env| d.outbox.push(now, env).map_err(|e| e.to_string()));
        match pushed {
            Ok(()) => {
                self.emit(Event::DmState { id, to, state: DmState::Queued });
                self.try_outbox(now, Some(to));
            }
            Err(e) => self.emit(Event::Refused(format!("message to {} not sent: {e}", to.short()))),
        }
    }

    /// A receipt (or anything else never reported): queued like a message, dropped once handed over.
    pub(super) fn send_quiet(&mut self, now: Time, to: PeerId, body: DmBody) {
        let expiry = self.config.dm.expiry;
        self.seal_and(now, to, body, expiry, |node, env| {
            let id = env.id;
            let Some(d) = node.dm.as_mut() else { return };
            if d.outbox.push(now, env).is_ok() {
                d.quiet.insert(id);
                node.try_outbox(now, Some(to));
            }
        });
    }

    /// A room key (or anything else that must arrive but is never shown): queued and retried like
    /// a text until its receipt comes, never reported.
    pub(super) fn send_silent(&mut self, now: Time, to: PeerId, body: DmBody) {
        let expiry = self.config.dm.expiry;
        self.seal_and(now, to, body, expiry, |node, env| {
            let id = env.id;
            let Some(d) = node.dm.as_mut() else { return };
            if d.outbox.push(now, env).is_ok() {
                d.silent.insert(id);
                node.try_outbox(now, Some(to));
            }
        });
    }

    /// Seals `body` for `to`, with whom a session exists, and hands the envelope to `then`.
    fn seal_and(
        &mut self,
        now: Time,
        to: PeerId,
        body: DmBody,
        expiry: Duration,
        then: impl FnOnce(&mut Node, Envelope),
    ) {
        let keys = &*self.keys;
        let Some(d) = self.dm.as_mut() else { return };
        d.book.touch(&to, now);
        if !d.crypto.has_session(&to) {
            let Some(b) = d.book.get(&to) else { return };
            if d.crypto.start_session(&mut self.rng, to, &b.bundle.keys).is_err() {
                return;
            }
        }
        let id = DmId::generate(now, &mut self.rng);
        let msg = dm::Message { id, sender: keys.public_key(), to, sent_at: now, expires_at: now + expiry, body };
        if let Ok(env) = dm::seal(&mut *d.crypto, keys, &mut self.rng, &msg) {
            then(self, env);
        }
    }

    /// Tries the outbox's envelopes: those due, and with `now_for` every pending one to or through
    /// that peer (it just came up). Each goes to its recipient if connected, else to every mailbox
    /// of its recipient's bundle that is connected (the others are dialed).
    fn try_outbox(&mut self, now: Time, now_for: Option<PeerId>) {
        let me = self.peer_id();
        let Some(d) = self.dm.as_mut() else { return };
        let due: BTreeSet<DmId> = d.outbox.due(now).iter().map(|e| e.id).collect();
        let mut todo: Vec<Envelope> = Vec::new();
        for (env, state) in d.outbox.pending() {
            let concerns = |p: &PeerId| {
                env.to == *p
                    || (state < DmState::Stored
                        && d.book.get(&env.to).is_some_and(|b| b.bundle.mailboxes.iter().any(|m| m.peer == *p)))
            };
            if due.contains(&env.id) || now_for.as_ref().is_some_and(concerns) {
                todo.push(env.clone());
            }
        }
        let mut dials = Vec::new();
        let mut wanted = Vec::new();
        for env in todo {
            let Some(d) = self.dm.as_mut() else { return };
            let id = env.id;
            let quiet = d.quiet.contains(&id);
            let mut handed = false;
            let mut direct = false;
            let mut stored = false;
            if let Some(&conn) = d.peers.get(&env.to) {
                self.stats.dms_sent += 1;
                self.send(conn, &Message::Dm { envelope: Box::new(env) });
                handed = true;
                direct = true;
            } else if let Some(b) = d.book.get(&env.to) {
                let mailboxes = b.bundle.mailboxes.clone();
                for m in mailboxes {
                    let Some(d) = self.dm.as_mut() else { return };
                    if m.peer == me {
                        stored |= d.mailbox.deposit(now, me, env.clone()).is_ok();
                    } else if let Some(&conn) = d.peers.get(&m.peer) {
                        self.send(conn, &Message::Deposit { envelope: Box::new(env.clone()) });
                        handed = true;
                    } else if let Ok(a) = m.addr.parse::<SocketAddr>() {
                        dials.push(a);
                    }
                }
            } else {
                wanted.push(env.to);
            }
            let Some(d) = self.dm.as_mut() else { return };
            // A receipt handed to its recipient, or held here for it, needs nothing more.
            if quiet && (stored || direct) {
                d.outbox.remove(&id);
                d.quiet.remove(&id);
                continue;
            }
            let change = d.outbox.attempted(now, &mut self.rng, &id);
            let stored_change = if stored { d.outbox.stored(now, &id) } else { None };
            if (handed || stored) && !quiet {
                for c in change.into_iter().chain(stored_change) {
                    self.report(c);
                }
            }
        }
        for a in dials {
            self.dial_mailbox(now, a);
        }
        wanted.dedup();
        for peer in wanted {
            self.request_bundle(peer, None);
        }
    }

    fn report(&mut self, c: StateChange) {
        if let Some(d) = self.dm.as_mut().filter(|d| d.silent.contains(&c.id)) {
            if c.state >= DmState::Delivered {
                d.silent.remove(&c.id);
                d.outbox.remove(&c.id);
            }
            return;
        }
        self.emit(Event::DmState { id: c.id, to: c.to, state: c.state });
    }

    /// Dials a mailbox's address unless a connection to it exists or is being made, within the
    /// node's dial budget. A full node gives up a spare peer for it: the mailbox is the only way
    /// to a recipient that is away.
    fn dial_mailbox(&mut self, now: Time, a: SocketAddr) {
        let busy = self.conns.values().any(|c| c.addr() == a || c.listen_addr() == Some(a));
        if busy || self.is_own_addr(&a) || !self.dial_bucket.take(now, self.config.dial_rate) {
            return;
        }
        if self.conns.len() < self.config.max_peers || self.give_up_spare_peer(now) {
            self.dial(now, a);
        }
    }

    fn is_own_addr(&self, a: &SocketAddr) -> bool {
        self.book.get(a).is_some_and(|e| e.is_self)
    }

    /// Asks neighbours for `peer`'s bundle: a random one (`except` excluded) with a fresh walk.
    /// Whether a message to `to` can be sealed now (a session, or its bundle to start one).
    pub(super) fn can_seal_for(&self, to: &PeerId) -> bool {
        self.dm.as_ref().is_some_and(|d| d.crypto.has_session(to) || d.book.get(to).is_some())
    }

    /// Asks the neighbours for `peer`'s bundle, if direct messages are on.
    pub(super) fn want_bundle(&mut self, peer: PeerId) {
        if self.dm.is_some() {
            self.request_bundle(peer, None);
        }
    }

    fn request_bundle(&mut self, peer: PeerId, except: Option<ConnId>) {
        let up: Vec<ConnId> = self.up_conns().into_iter().filter(|c| Some(*c) != except).collect();
        if up.is_empty() {
            return;
        }
        let conn = up[self.rng.below(up.len())];
        self.send(conn, &Message::BundleRequest { peer, ttl: BUNDLE_TTL });
    }

    /// This node's bundle, made again if its mailboxes should change (or there is none yet).
    /// Returns whether it changed.
    fn refresh_bundle(&mut self, now: Time) -> bool {
        let want = self.config.dm.mailboxes;
        let Some(d) = self.dm.as_ref() else { return false };
        let current: Vec<MailboxAddr> = d.own.as_ref().map(|b| b.bundle.mailboxes.clone()).unwrap_or_default();
        // Those still connected stay; the places left go to the neighbours up longest (the most
        // likely to stay), picked at random among the older half so the oldest are not named by all.
        let mut keep: Vec<MailboxAddr> = current.iter().filter(|m| d.peers.contains_key(&m.peer)).cloned().collect();
        if keep.len() < want {
            let mut candidates: Vec<(Time, MailboxAddr)> = self
                .conns
                .values()
                .filter_map(|c| match &c.phase {
                    Phase::Up(p) => {
                        let peer = p.public_key.peer_id();
                        let addr = c.listen_addr()?;
                        (!keep.iter().any(|m| m.peer == peer))
                            .then(|| (c.since, MailboxAddr { peer, addr: addr.to_string() }))
                    }
                    _ => None,
                })
                .collect();
            candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.peer.cmp(&b.1.peer)));
            let half = candidates.len().div_ceil(2).max(want - keep.len()).min(candidates.len());
            let mut pool: Vec<MailboxAddr> = candidates.into_iter().take(half).map(|(_, m)| m).collect();
            let n = want - keep.len();
            keep.extend(self.rng.choose_k(&mut pool, n).iter().cloned());
        }
        let Some(d) = self.dm.as_mut() else { return false };
        if d.own.is_some() && keep == current {
            return false;
        }
        let version = d.own.as_ref().map_or(now, |b| now.max(b.bundle.version + Duration::from_micros(1)));
        let bundle = KeyBundle { identity: self.keys.public_key(), keys: d.crypto.prekeys(), mailboxes: keep, version };
        let Ok(signed) = SignedBundle::sign(&*self.keys, bundle) else { return false };
        // A mailbox named afresh may still hold mail from an earlier naming that fell out of
        // `named` meanwhile (senders keep old bundles): it is asked at once.
        let mut ask = Vec::new();
        for m in &signed.bundle.mailboxes {
            if !d.is_named(&m.peer) {
                ask.extend(d.peers.get(&m.peer).copied());
                d.named.push(Named { mailbox: m.clone(), collected: false });
            }
        }
        let excess = d.named.len().saturating_sub(MAX_NAMED);
        d.named.drain(..excess);
        d.own = Some(signed);
        for conn in ask {
            self.send(conn, &Message::Collect { after: None });
        }
        true
    }

    fn send_own_bundle(&mut self, conn: ConnId) {
        if let Some(b) = self.dm.as_ref().and_then(|d| d.own.clone()) {
            self.send(conn, &Message::Bundle { bundle: Box::new(b) });
        }
    }

    /// A neighbour came up: it gets this node's bundle, is collected from if it is one of this
    /// node's mailboxes, and takes what waits for it or for those it holds mail for.
    pub(super) fn dm_peer_up(&mut self, now: Time, conn: ConnId, peer: PeerId) {
        let Some(d) = self.dm.as_mut() else { return };
        d.peers.insert(peer, conn);
        let named = d.is_named(&peer);
        let short = d.own.as_ref().is_none_or(|b| b.bundle.mailboxes.len() < self.config.dm.mailboxes);
        if short && self.refresh_bundle(now) {
            for c in self.up_conns() {
                self.send_own_bundle(c);
            }
        } else {
            self.send_own_bundle(conn);
        }
        if named {
            self.send(conn, &Message::Collect { after: None });
        }
        self.try_outbox(now, Some(peer));
        self.arm_dm();
    }

    pub(super) fn dm_peer_down(&mut self, now: Time, conn: ConnId, peer: PeerId) {
        // A second connection to the same peer (both dialed at once) that closes leaves the
        // first one up: the peer is still reachable through it.
        let other = self
            .conns
            .iter()
            .find(|(id, c)| **id != conn && c.peer_key().is_some_and(|k| k.peer_id() == peer))
            .map(|(id, _)| *id);
        let Some(d) = self.dm.as_mut() else { return };
        match other {
            Some(o) => d.peers.insert(peer, o),
            None => d.peers.remove(&peer),
        };
        d.tokens.remove(&conn);
        d.walks.retain(|w| w.from != conn);
        if let Some(n) = d.named.iter_mut().find(|n| n.mailbox.peer == peer) {
            n.collected = false;
            d.round_at.get_or_insert(now + DM_ROUND);
        }
        self.arm_dm();
    }

    /// Whether a DM frame from `conn` may be acted on (`DM_REQUESTS`); over it, it is penalised.
    fn admit_dm(&mut self, now: Time, conn: ConnId) -> bool {
        let Some(d) = self.dm.as_mut() else { return false };
        let t = d.tokens.entry(conn).or_insert_with(|| Tokens::full(DM_REQUESTS.burst, now));
        if t.take(now, DM_REQUESTS) {
            return true;
        }
        self.penalize(now, conn, Penalty::Flood, "over the direct-message rate");
        false
    }

    pub(super) fn peer_of(&self, conn: ConnId) -> Option<PeerId> {
        match &self.conns.get(&conn)?.phase {
            Phase::Up(p) => Some(p.public_key.peer_id()),
            _ => None,
        }
    }

    /// A direct-message frame from `conn`. A node with direct messages off ignores them all.
    pub(super) fn on_dm_message(&mut self, now: Time, conn: ConnId, msg: Message) {
        if self.dm.is_none() || !self.admit_dm(now, conn) {
            return;
        }
        let Some(peer) = self.peer_of(conn) else { return };
        match msg {
            Message::Bundle { bundle } => self.on_bundle(now, conn, peer, *bundle),
            Message::BundleRequest { peer: wanted, ttl } => self.on_bundle_request(now, conn, wanted, ttl),
            Message::Dm { envelope } => {
                if envelope.from != peer || envelope.to != self.peer_id() {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "a Dm not from it or not to us");
                }
                self.receive(now, *envelope, Some(conn));
            }
            Message::Deposit { envelope } => self.on_deposit(now, conn, peer, *envelope),
            Message::Deposited { id, outcome, .. } => {
                if outcome == DepositOutcome::Stored {
                    let Some(d) = self.dm.as_mut() else { return };
                    if d.quiet.remove(&id) {
                        d.outbox.remove(&id);
                    } else if let Some(c) = d.outbox.stored(now, &id) {
                        self.report(c);
                    }
                }
            }
            Message::Collect { after } => self.on_collect(now, conn, peer, after),
            Message::Mail { envelopes, more } => self.on_mail(now, conn, peer, envelopes, more),
            Message::MailAck { ack } => {
                if ack.recipient.peer_id() != peer {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "an ack for someone else");
                }
                let keys = &*self.keys;
                let Some(d) = self.dm.as_mut() else { return };
                if let Err(e) = d.mailbox.acknowledge(keys, &ack) {
                    self.penalize(now, conn, Penalty::BadChat, &format!("mail ack refused: {e}"));
                }
            }
            _ => unreachable!("not a direct-message frame"),
        }
        self.arm_dm();
    }

    fn on_bundle(&mut self, now: Time, conn: ConnId, peer: PeerId, bundle: SignedBundle) {
        let owner = bundle.peer_id();
        let me = self.peer_id();
        let names_me = owner == peer && bundle.bundle.mailboxes.iter().any(|m| m.peer == me);
        let keys = &*self.keys;
        let Some(d) = self.dm.as_mut() else { return };
        let needed = d.needed_bundles();
        match d.book.insert(keys, now, bundle, |p| needed.contains(p)) {
            Ok(Update::Unchanged) => {}
            Ok(_) => {
                if names_me {
                    d.mailbox.serve(owner);
                }
                // Answers to walks this node passed on go back where they came from.
                let back: Vec<ConnId> =
                    d.walks.iter().filter(|w| w.peer == owner && w.until > now).map(|w| w.from).collect();
                d.walks.retain(|w| w.peer != owner);
                if let Some(b) = d.book.get(&owner).cloned() {
                    for c in back {
                        self.answer(now, c, &Message::Bundle { bundle: Box::new(b.clone()) });
                    }
                }
                self.on_bundle_known(now);
            }
            Err(BundleError::BadSignature) => self.penalize(now, conn, Penalty::BadChat, "a forged key bundle"),
            Err(BundleError::TooLarge) => {
                self.penalize(now, conn, Penalty::ProtocolViolation, "an oversized key bundle")
            }
            Err(BundleError::Stale | BundleError::FromTheFuture | BundleError::Full) => {}
        }
    }

    /// A bundle came: texts waiting for it are sealed, and what waits for its mailboxes is tried.
    fn on_bundle_known(&mut self, now: Time) {
        let Some(d) = self.dm.as_mut() else { return };
        let (ready, wait): (Vec<Awaiting>, Vec<Awaiting>) =
            std::mem::take(&mut d.awaiting).into_iter().partition(|a| d.book.get(&a.to).is_some());
        d.awaiting = wait;
        for a in ready {
            self.seal_text(now, a.id, a.to, a.text, a.at);
        }
        self.try_outbox(now, None);
    }

    fn on_bundle_request(&mut self, now: Time, conn: ConnId, wanted: PeerId, ttl: u8) {
        let me = self.peer_id();
        let Some(d) = self.dm.as_mut() else { return };
        let held = if wanted == me { d.own.clone() } else { d.book.get(&wanted).cloned() };
        if let Some(b) = held {
            return self.answer(now, conn, &Message::Bundle { bundle: Box::new(b) });
        }
        if ttl == 0 || d.walks.iter().any(|w| w.peer == wanted && w.from == conn) {
            return;
        }
        let others: Vec<ConnId> = self.up_conns().into_iter().filter(|c| *c != conn).collect();
        if others.is_empty() {
            return;
        }
        let next = others[self.rng.below(others.len())];
        let Some(d) = self.dm.as_mut() else { return };
        d.walks.retain(|w| w.until > now);
        if d.walks.len() >= MAX_WALKS {
            d.walks.remove(0);
        }
        d.walks.push(BundleWalk { peer: wanted, from: conn, until: now + WALK_TIMEOUT });
        self.send(next, &Message::BundleRequest { peer: wanted, ttl: ttl.min(BUNDLE_TTL) - 1 });
    }

    fn on_deposit(&mut self, now: Time, conn: ConnId, peer: PeerId, env: Envelope) {
        if env.from != peer {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "deposited someone else's envelope");
        }
        if env.to == self.peer_id() {
            return self.receive(now, env, Some(conn));
        }
        let (id, to) = (env.id, env.to);
        let Some(d) = self.dm.as_mut() else { return };
        let outcome = match d.mailbox.deposit(now, peer, env.clone()) {
            Ok(_) => DepositOutcome::Stored,
            Err(dm::DepositError::NotServed) => DepositOutcome::NotServed,
            Err(_) => DepositOutcome::Refused,
        };
        let recipient = d.peers.get(&to).copied();
        if outcome == DepositOutcome::Stored {
            self.stats.mail_stored += 1;
            // The recipient is here: it has it at once, and acks as for a collected page.
            if let Some(r) = recipient {
                self.send(r, &Message::Mail { envelopes: vec![env], more: false });
            }
        } else {
            self.stats.mail_refused += 1;
        }
        self.send(conn, &Message::Deposited { id, to, outcome });
    }

    fn on_collect(&mut self, now: Time, conn: ConnId, peer: PeerId, after: Option<DmId>) {
        let Some(d) = self.dm.as_ref() else { return };
        let page: Vec<Envelope> =
            d.mailbox.collect(&peer, after, MAIL_PAGE_BYTES).into_iter().take(MAX_MAIL_PAGE).cloned().collect();
        let more = page.last().is_some_and(|l| !d.mailbox.collect(&peer, Some(l.id), 1).is_empty());
        self.answer(now, conn, &Message::Mail { envelopes: page, more });
    }

    fn on_mail(&mut self, now: Time, conn: ConnId, peer: PeerId, envelopes: Vec<Envelope>, more: bool) {
        if envelopes.len() > MAX_MAIL_PAGE {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "an oversized mail page");
        }
        // Only from a mailbox this node named: nobody else can make it open envelopes.
        if !self.dm.as_ref().is_some_and(|d| d.is_named(&peer)) {
            return;
        }
        let me = self.peer_id();
        let last = envelopes.last().map(|e| e.id);
        let mut ids = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            if env.to == me {
                ids.push(env.id);
                self.receive(now, env, None);
            }
        }
        if !ids.is_empty() {
            let ack = Ack::new(&*self.keys, peer, ids);
            self.send(conn, &Message::MailAck { ack: Box::new(ack) });
        }
        match (more, last) {
            (true, Some(after)) => self.send(conn, &Message::Collect { after: Some(after) }),
            _ => {
                if let Some(n) = self.dm.as_mut().and_then(|d| d.named.iter_mut().find(|n| n.mailbox.peer == peer)) {
                    n.collected = true;
                }
            }
        }
    }

    /// An envelope for this node, handed over by its sender (`direct`) or a mailbox.
    fn receive(&mut self, now: Time, env: Envelope, direct: Option<ConnId>) {
        let keys = &*self.keys;
        let Some(d) = self.dm.as_mut() else { return };
        let from = env.from;
        // Blocked: dropped unopened, so no receipt tells the sender anything.
        if self.blocked.contains(&from) {
            self.stats.dms_refused += 1;
            return;
        }
        match dm::open(&mut *d.crypto, keys, &mut self.rng, &mut d.replay, now, &env) {
            Ok(msg) => self.on_dm_opened(now, from, msg),
            // A text's retry whose receipt was lost: the receipt again.
            Err(OpenError::Replayed(_)) => {
                if d.texts_seen.contains(&env.id) {
                    self.send_quiet(now, from, DmBody::Receipt { kind: ReceiptKind::Delivered, of: vec![env.id] });
                }
            }
            Err(e @ (OpenError::BadSignature | OpenError::Mismatch)) => {
                self.stats.dms_refused += 1;
                if let Some(conn) = direct {
                    self.penalize(now, conn, Penalty::BadChat, &format!("direct message refused: {e}"));
                }
            }
            Err(_) => self.stats.dms_refused += 1,
        }
    }

    fn on_dm_opened(&mut self, now: Time, from: PeerId, msg: dm::Message) {
        match msg.body {
            DmBody::Text(text) => {
                self.stats.dms_received += 1;
                if let Some(d) = self.dm.as_mut() {
                    if d.texts_seen.len() >= MAX_TEXTS_SEEN {
                        d.texts_seen.pop_front();
                    }
                    d.texts_seen.push_back(msg.id);
                }
                let me = self.peer_id();
                let delivery = DmDelivery { id: msg.id, from, to: me, text, sent_at: msg.sent_at, outgoing: false };
                self.emit(Event::Dm(Box::new(delivery)));
                self.send_quiet(now, from, DmBody::Receipt { kind: ReceiptKind::Delivered, of: vec![msg.id] });
            }
            DmBody::Receipt { kind, of } => {
                if kind == ReceiptKind::Read && !self.config.dm.read_receipts {
                    return;
                }
                let Some(d) = self.dm.as_mut() else { return };
                let changes: Vec<StateChange> =
                    of.iter().flat_map(|id| d.outbox.receipt(&from, kind, id).unwrap_or_default()).collect();
                for c in changes {
                    self.report(c);
                }
            }
            DmBody::Typing(on) => {
                if self.config.dm.typing {
                    self.emit(Event::Typing { from, on });
                }
            }
            DmBody::RoomKey { room, epoch, key } => {
                // Acknowledged like a text (its retries are answered again), so that its sender
                // stops retrying.
                if let Some(d) = self.dm.as_mut() {
                    if d.texts_seen.len() >= MAX_TEXTS_SEEN {
                        d.texts_seen.pop_front();
                    }
                    d.texts_seen.push_back(msg.id);
                }
                self.send_quiet(now, from, DmBody::Receipt { kind: ReceiptKind::Delivered, of: vec![msg.id] });
                self.on_room_key(now, room, epoch, key);
            }
        }
    }

    /// Direct messages' timer: expiries, retries, and the round (bundles waited for, mailboxes to
    /// collect from or to replace).
    pub(super) fn dm_timeout(&mut self, now: Time) {
        let Some(d) = self.dm.as_mut() else { return };
        d.replay.expire(now);
        d.mailbox.expire(now);
        let expired = d.outbox.expire(now);
        let mut report = Vec::new();
        for c in expired {
            if !d.quiet.remove(&c.id) {
                report.push(c);
            }
        }
        let expiry = self.config.dm.expiry;
        let (gone, wait): (Vec<Awaiting>, Vec<Awaiting>) =
            std::mem::take(&mut d.awaiting).into_iter().partition(|a| a.at + expiry <= now);
        d.awaiting = wait;
        report.extend(gone.into_iter().map(|a| StateChange { id: a.id, to: a.to, state: DmState::Expired }));
        for c in report {
            self.report(c);
        }
        if self.dm.as_ref().and_then(|d| d.round_at).is_some_and(|t| t <= now) {
            self.dm_round(now);
        }
        self.try_outbox(now, None);
        self.arm_dm();
    }

    fn dm_round(&mut self, now: Time) {
        let Some(d) = self.dm.as_mut() else { return };
        d.round_at = None;
        let wanted: Vec<PeerId> = d.awaiting.iter().map(|a| a.to).collect::<BTreeSet<_>>().into_iter().collect();
        let uncollected: Vec<SocketAddr> = d
            .named
            .iter()
            .filter(|n| !n.collected && !d.peers.contains_key(&n.mailbox.peer))
            .filter_map(|n| n.mailbox.addr.parse().ok())
            .collect();
        let again = !wanted.is_empty() || !uncollected.is_empty();
        for peer in wanted {
            self.request_bundle(peer, None);
        }
        for a in uncollected {
            self.dial_mailbox(now, a);
        }
        if self.peer_count() > 0 && self.refresh_bundle(now) {
            for c in self.up_conns() {
                self.send_own_bundle(c);
            }
        }
        if again {
            if let Some(d) = self.dm.as_mut() {
                d.round_at = Some(now + DM_ROUND);
            }
        }
    }

    /// Arms `Timer::Dm` at the earliest of the outbox's, the mailbox's and the round's deadlines.
    pub(super) fn arm_dm(&mut self) {
        let Some(d) = self.dm.as_ref() else { return };
        let expiry = self.config.dm.expiry;
        let at = [
            d.outbox.poll_timeout().map(|(t, _)| t),
            d.mailbox.poll_timeout(),
            d.round_at,
            d.awaiting.iter().map(|a| a.at + expiry).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        match at {
            Some(t) => self.timers.set(Timer::Dm, t),
            None => self.timers.clear(Timer::Dm),
        }
    }
}
