//! Envelopes held for recipients who are offline: the few identities that named this node in
//! their bundle.
//!
//! A mailbox never reads what it holds, and never makes room by dropping an envelope: a full
//! quota refuses the *new* envelope, so a sender who floods fills only its own quota, never
//! pushes out anyone else's. Quotas, each in envelopes and in bytes: per sender (whoever handed
//! the envelope over, as the connection's handshake proved it), per recipient, and in all.
//! Envelopes leave when they expire, or when the recipient acknowledges them with a signed
//! [`Ack`]. The caller passes peer ids the handshake already verified, for depositing and for
//! collecting; the ack is signed anyway so that it can travel through anyone.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, MAX_CIPHERTEXT};
use super::{DmId, MAX_EXPIRY};
use crate::identity::{Keys, PeerId, PublicKey, Signature};
use crate::time::Time;

/// What an envelope costs beyond its ciphertext: ids, expiry and bookkeeping.
pub const ENVELOPE_OVERHEAD_BYTES: usize = 128;
const ACK_DOMAIN: &[u8] = b"p2p-chat/dm-ack/v1";
/// Most ids one ack covers.
pub const MAX_ACK_IDS: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxConfig {
    /// Identities this node holds envelopes for.
    pub recipients_max: usize,
    pub per_recipient_count: usize,
    pub per_recipient_bytes: usize,
    /// Over all recipients: a sender's share.
    pub per_sender_count: usize,
    pub per_sender_bytes: usize,
    pub total_count: usize,
    pub total_bytes: usize,
}

impl Default for MailboxConfig {
    /// About 40 MiB at most; a recipient's box takes 8 senders at their full quota.
    fn default() -> Self {
        MailboxConfig {
            recipients_max: 8,
            per_recipient_count: 2000,
            per_recipient_bytes: 4 << 20,
            per_sender_count: 250,
            per_sender_bytes: 512 << 10,
            total_count: 16_000,
            total_bytes: 32 << 20,
        }
    }
}

/// Envelopes and their bytes (ciphertext plus [`ENVELOPE_OVERHEAD_BYTES`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub count: usize,
    pub bytes: usize,
}

impl Usage {
    fn fits(self, add: usize, count_max: usize, bytes_max: usize) -> bool {
        self.count < count_max && self.bytes + add <= bytes_max
    }
    fn add(&mut self, bytes: usize) {
        self.count += 1;
        self.bytes += bytes;
    }
    fn sub(&mut self, bytes: usize) {
        self.count -= 1;
        self.bytes -= bytes;
    }
}

/// A recipient's acknowledgement: the mailbox `mailbox` may drop `ids`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub recipient: PublicKey,
    pub mailbox: PeerId,
    pub ids: Vec<DmId>,
    pub signature: Signature,
}

impl Ack {
    pub fn new(keys: &dyn Keys, mailbox: PeerId, ids: Vec<DmId>) -> Ack {
        let recipient = keys.public_key();
        let signature = keys.sign(&ack_bytes(&recipient, &mailbox, &ids));
        Ack { recipient, mailbox, ids, signature }
    }
}

/// Replaying an ack is harmless (its envelopes are gone), so it carries no nonce.
fn ack_bytes(recipient: &PublicKey, mailbox: &PeerId, ids: &[DmId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ACK_DOMAIN.len() + 68 + ids.len() * 16);
    out.extend_from_slice(ACK_DOMAIN);
    out.extend_from_slice(&recipient.0);
    out.extend_from_slice(&mailbox.0);
    out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    ids.iter().for_each(|id| out.extend_from_slice(&id.0));
    out
}

/// Why an envelope was refused; nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepositError {
    #[error("this node holds no mail for that recipient")]
    NotServed,
    #[error("the envelope is too large")]
    TooLarge,
    #[error("the envelope has expired")]
    Expired,
    #[error("the envelope expires further ahead than anyone keeps messages")]
    ExpiryTooFar,
    #[error("the sender's quota is full")]
    SenderFull,
    #[error("the recipient's box is full")]
    RecipientFull,
    #[error("the mailbox is full")]
    Full,
}

/// Why an ack was refused; nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("the ack is for another mailbox")]
    OtherMailbox,
    #[error("the ack covers more than {MAX_ACK_IDS} ids")]
    TooLarge,
    #[error("the ack is not signed by its recipient")]
    BadSignature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deposit {
    Stored,
    /// The same id was already held for this recipient (a retry): nothing changed.
    AlreadyHeld,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Held {
    sender: PeerId,
    envelope: Envelope,
}

impl Held {
    fn bytes(&self) -> usize {
        self.envelope.ciphertext.len() + ENVELOPE_OVERHEAD_BYTES
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RecipientBox {
    #[serde(with = "super::pairs")]
    held: BTreeMap<DmId, Held>,
    usage: Usage,
}

/// Serialisable, so a mailbox node can keep what it holds across a restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mailbox {
    me: PeerId,
    config: MailboxConfig,
    #[serde(with = "super::pairs")]
    boxes: BTreeMap<PeerId, RecipientBox>,
    /// Only senders with something held: never more entries than envelopes.
    #[serde(with = "super::pairs")]
    senders: BTreeMap<PeerId, Usage>,
    expiries: BTreeSet<(Time, PeerId, DmId)>,
    total: Usage,
}

impl Mailbox {
    /// `me`: this node's peer id, which acks must name.
    pub fn new(me: PeerId, config: MailboxConfig) -> Mailbox {
        Mailbox {
            me,
            config,
            boxes: BTreeMap::new(),
            senders: BTreeMap::new(),
            expiries: BTreeSet::new(),
            total: Usage::default(),
        }
    }

    /// Starts holding mail for `recipient` (whose verified bundle names this node). `false` if
    /// `recipients_max` are served already.
    pub fn serve(&mut self, recipient: PeerId) -> bool {
        if !self.boxes.contains_key(&recipient) && self.boxes.len() >= self.config.recipients_max {
            return false;
        }
        self.boxes.entry(recipient).or_default();
        true
    }

    /// Stops, dropping what was held for `recipient`.
    pub fn stop_serving(&mut self, recipient: &PeerId) {
        let ids: Vec<DmId> = self.boxes.get(recipient).map(|b| b.held.keys().copied().collect()).unwrap_or_default();
        for id in ids {
            self.remove(recipient, &id);
        }
        self.boxes.remove(recipient);
    }

    /// Takes `envelope` from `sender` (the verified peer on the connection) for its recipient.
    pub fn deposit(&mut self, now: Time, sender: PeerId, envelope: Envelope) -> Result<Deposit, DepositError> {
        let c = &self.config;
        if envelope.ciphertext.len() > MAX_CIPHERTEXT {
            return Err(DepositError::TooLarge);
        }
        if envelope.expires_at <= now {
            return Err(DepositError::Expired);
        }
        if envelope.expires_at > now + MAX_EXPIRY {
            return Err(DepositError::ExpiryTooFar);
        }
        let to = envelope.to;
        let b = self.boxes.get(&to).ok_or(DepositError::NotServed)?;
        if b.held.contains_key(&envelope.id) {
            return Ok(Deposit::AlreadyHeld);
        }
        let held = Held { sender, envelope };
        let bytes = held.bytes();
        let s = self.senders.get(&sender).copied().unwrap_or_default();
        if !s.fits(bytes, c.per_sender_count, c.per_sender_bytes) {
            return Err(DepositError::SenderFull);
        }
        if !b.usage.fits(bytes, c.per_recipient_count, c.per_recipient_bytes) {
            return Err(DepositError::RecipientFull);
        }
        if !self.total.fits(bytes, c.total_count, c.total_bytes) {
            return Err(DepositError::Full);
        }
        let id = held.envelope.id;
        self.expiries.insert((held.envelope.expires_at, to, id));
        self.senders.entry(sender).or_default().add(bytes);
        self.total.add(bytes);
        let b = self.boxes.get_mut(&to).expect("checked above");
        b.usage.add(bytes);
        b.held.insert(id, held);
        Ok(Deposit::Stored)
    }

    /// What is held for `recipient` (the verified peer asking), in id order (oldest first) after
    /// `after`, up to about `max_bytes` (at least one envelope): one page of a collection.
    pub fn collect(&self, recipient: &PeerId, after: Option<DmId>, max_bytes: usize) -> Vec<&Envelope> {
        let Some(b) = self.boxes.get(recipient) else { return Vec::new() };
        let from = after.map_or(core::ops::Bound::Unbounded, core::ops::Bound::Excluded);
        let mut bytes = 0;
        let mut out = Vec::new();
        for h in b.held.range((from, core::ops::Bound::Unbounded)).map(|(_, h)| h) {
            bytes += h.bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(&h.envelope);
        }
        out
    }

    /// Drops the envelopes a recipient acknowledged; how many were held.
    pub fn acknowledge(&mut self, keys: &dyn Keys, ack: &Ack) -> Result<usize, AckError> {
        if ack.mailbox != self.me {
            return Err(AckError::OtherMailbox);
        }
        if ack.ids.len() > MAX_ACK_IDS {
            return Err(AckError::TooLarge);
        }
        if !keys.verify(&ack.recipient, &ack_bytes(&ack.recipient, &ack.mailbox, &ack.ids), &ack.signature) {
            return Err(AckError::BadSignature);
        }
        let recipient = ack.recipient.peer_id();
        Ok(ack.ids.iter().filter(|id| self.remove(&recipient, id)).count())
    }

    /// Drops what has expired by `now`; how many.
    pub fn expire(&mut self, now: Time) -> usize {
        let mut n = 0;
        while let Some(&(at, to, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            n += usize::from(self.remove(&to, &id));
        }
        n
    }

    /// When the next envelope expires: call [`expire`](Self::expire) then.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.expiries.first().map(|(at, _, _)| *at)
    }

    pub fn usage(&self) -> Usage {
        self.total
    }

    pub fn sender_usage(&self, sender: &PeerId) -> Usage {
        self.senders.get(sender).copied().unwrap_or_default()
    }

    pub fn recipient_usage(&self, recipient: &PeerId) -> Usage {
        self.boxes.get(recipient).map(|b| b.usage).unwrap_or_default()
    }

    fn remove(&mut self, to: &PeerId, id: &DmId) -> bool {
        let Some(b) = self.boxes.get_mut(to) else { return false };
        let Some(h) = b.held.remove(id) else { return false };
        let bytes = h.bytes();
        b.usage.sub(bytes);
        self.total.sub(bytes);
        self.expiries.remove(&(h.envelope.expires_at, *to, *id));
        if let Some(s) = self.senders.get_mut(&h.sender) {
            s.sub(bytes);
            if s.count == 0 {
                self.senders.remove(&h.sender);
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;
