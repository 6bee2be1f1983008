//! The sender's side: each envelope is kept until its recipient says it arrived, or it expires.
//!
//! Retry timing is data: every pending envelope has its next attempt time; [`Outbox::due`] lists
//! those whose time has come, the node tries them (to the recipient directly if connected, else to
//! its mailboxes) and reports [`attempted`](Outbox::attempted), which schedules the next one after
//! an exponential backoff with jitter from the node's RNG. Once a mailbox has taken the envelope,
//! retries slow to `retry_stored` (in case that mailbox loses it). A delivery receipt drops the
//! envelope; the entry stays, without it, until expiry so that a later "read" is still reported.
//!
//! States only move forward: Queued → Sent → Stored → Delivered → Read, or to Expired from any
//! state before Delivered. Serialisable, so pending messages survive a restart.

use core::time::Duration;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, ReceiptKind};
use super::DmId;
use crate::identity::PeerId;
use crate::random::Rng;
use crate::time::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DmState {
    /// Not tried yet.
    Queued,
    /// Handed to the recipient or a mailbox at least once; no answer yet.
    Sent,
    /// A mailbox holds it for the recipient.
    Stored,
    /// The recipient's signed receipt says it arrived.
    Delivered,
    Read,
    /// It expired before it was delivered.
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxConfig {
    /// The wait after the first attempt; doubled after each further one.
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// The wait between attempts once a mailbox holds the envelope.
    pub retry_stored: Duration,
    /// Entries kept, pending or settled.
    pub capacity: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retry_first: Duration::from_secs(5),
            retry_max: Duration::from_secs(15 * 60),
            retry_stored: Duration::from_secs(6 * 3600),
            capacity: 2000,
        }
    }
}

/// A message's new state, to show the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub id: DmId,
    /// The message's recipient.
    pub to: PeerId,
    pub state: DmState,
}

/// What the next wake-up is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxTimer {
    Retry,
    Expiry,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutboxError {
    #[error("the outbox is full")]
    Full,
    #[error("a message with this id is already in the outbox")]
    Duplicate,
    #[error("the message has already expired")]
    Expired,
    #[error("a receipt from someone other than the message's recipient")]
    NotTheRecipient,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    to: PeerId,
    expires_at: Time,
    state: DmState,
    /// Dropped once delivered.
    envelope: Option<Envelope>,
    attempts: u32,
    /// `None` once nothing more is to be sent.
    next_attempt: Option<Time>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outbox {
    config: OutboxConfig,
    #[serde(with = "super::pairs")]
    entries: BTreeMap<DmId, Entry>,
}

impl Outbox {
    pub fn new(config: OutboxConfig) -> Outbox {
        Outbox { config, entries: BTreeMap::new() }
    }

    /// Queues a sealed envelope; its first attempt is due at once.
    pub fn push(&mut self, now: Time, envelope: Envelope) -> Result<(), OutboxError> {
        if self.entries.contains_key(&envelope.id) {
            return Err(OutboxError::Duplicate);
        }
        if envelope.expires_at <= now {
            return Err(OutboxError::Expired);
        }
        if self.entries.len() >= self.config.capacity {
            return Err(OutboxError::Full);
        }
        let entry = Entry {
            to: envelope.to,
            expires_at: envelope.expires_at,
            state: DmState::Queued,
            envelope: Some(envelope),
            attempts: 0,
            next_attempt: Some(now),
        };
        self.entries.insert(entry.envelope.as_ref().expect("just set").id, entry);
        Ok(())
    }

    /// The envelopes whose next attempt is due by `now`, in id order.
    pub fn due(&self, now: Time) -> Vec<&Envelope> {
        self.entries
            .values()
            .filter(|e| e.next_attempt.is_some_and(|at| at <= now) && e.expires_at > now)
            .filter_map(|e| e.envelope.as_ref())
            .collect()
    }

    /// The node handed `id` to the recipient or a mailbox: the next attempt is scheduled.
    pub fn attempted(&mut self, now: Time, rng: &mut Rng, id: &DmId) -> Option<StateChange> {
        let config = &self.config;
        let e = self.entries.get_mut(id)?;
        // Delivered: nothing is sent any more.
        e.envelope.as_ref()?;
        e.attempts = e.attempts.saturating_add(1);
        let wait = if e.state == DmState::Stored {
            config.retry_stored
        } else {
            let doublings = (e.attempts - 1).min(20);
            config.retry_first.saturating_mul(1 << doublings).min(config.retry_max)
        };
        // Up to a quarter less, so senders who failed together do not retry together.
        let jitter = wait.mul_f64(rng.unit() * 0.25);
        e.next_attempt = Some(now + (wait - jitter));
        advance(id, e, DmState::Sent)
    }

    /// A mailbox confirmed it holds `id`.
    pub fn stored(&mut self, now: Time, id: &DmId) -> Option<StateChange> {
        let retry = self.config.retry_stored;
        let e = self.entries.get_mut(id)?;
        let change = advance(id, e, DmState::Stored);
        if change.is_some() {
            e.next_attempt = Some(now + retry);
        }
        change
    }

    /// A signed receipt from `from` (already opened and verified) about `id`: the states `id`
    /// passes through, in order. Receipts can cross (a mailbox may hand over the read receipt
    /// before the delivered one, or the delivered one may be lost), and read implies delivered,
    /// so a read receipt for a message not yet known delivered reports both.
    pub fn receipt(&mut self, from: &PeerId, kind: ReceiptKind, id: &DmId) -> Result<Vec<StateChange>, OutboxError> {
        let Some(e) = self.entries.get_mut(id) else { return Ok(Vec::new()) };
        if e.to != *from {
            return Err(OutboxError::NotTheRecipient);
        }
        e.envelope = None;
        e.next_attempt = None;
        let mut changes: Vec<StateChange> = advance(id, e, DmState::Delivered).into_iter().collect();
        if kind == ReceiptKind::Read {
            changes.extend(advance(id, e, DmState::Read));
        }
        Ok(changes)
    }

    /// Drops what expired by `now`; reports those that were never delivered.
    pub fn expire(&mut self, now: Time) -> Vec<StateChange> {
        let mut out = Vec::new();
        self.entries.retain(|id, e| {
            if e.expires_at > now {
                return true;
            }
            if e.state < DmState::Delivered {
                out.push(StateChange { id: *id, to: e.to, state: DmState::Expired });
            }
            false
        });
        out
    }

    /// The earliest time something is due, and why.
    pub fn poll_timeout(&self) -> Option<(Time, OutboxTimer)> {
        self.entries
            .values()
            .flat_map(|e| {
                [e.next_attempt.map(|at| (at, OutboxTimer::Retry)), Some((e.expires_at, OutboxTimer::Expiry))]
            })
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Every envelope still to be delivered, due or not, in id order, with its state.
    pub fn pending(&self) -> impl Iterator<Item = (&Envelope, DmState)> {
        self.entries.values().filter_map(|e| e.envelope.as_ref().map(|env| (env, e.state)))
    }

    /// Forgets `id` (an envelope that needs no answer, once handed over).
    pub fn remove(&mut self, id: &DmId) {
        self.entries.remove(id);
    }

    pub fn state(&self, id: &DmId) -> Option<DmState> {
        self.entries.get(id).map(|e| e.state)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Moves `e` to `state` if that is forward; the change to report, if any.
fn advance(id: &DmId, e: &mut Entry, state: DmState) -> Option<StateChange> {
    (state > e.state && e.state != DmState::Expired).then(|| {
        e.state = state;
        StateChange { id: *id, to: e.to, state }
    })
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
