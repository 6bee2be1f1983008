//! One copy of each chat for every virtual node. Chats are immutable and signed, so the thousands of
//! nodes of a run can keep the same `Arc` instead of a copy each (~19 KB a node for 100 chats).
//! Each node still decodes and verifies what it receives; only the copy it keeps is shared.

use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use p2p_chat_core::{Chat, ChatId, ChatInterner};

use crate::id_hash::IdMap;

/// Shared by the nodes as one `Arc<SharedChats>`, so that the pointer each node holds leads to the
/// same few hot lines.
#[derive(Default)]
pub struct SharedChats(Mutex<IdMap<Arc<Chat>>>);

impl ChatInterner for SharedChats {
    fn intern(&self, chat: Arc<Chat>) -> Arc<Chat> {
        // Lookups only, never iteration: the hash cannot reach the run's outcome.
        let mut chats = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match chats.entry(chat.id) {
            // Read from a frame as the copy itself (see `get`): nothing to compare.
            Entry::Occupied(e) if Arc::ptr_eq(e.get(), &chat) => chat,
            // A different chat under a known id (a forgery that verified under the cheap scheme's
            // rules, say) stays its own copy.
            Entry::Occupied(e) if **e.get() == *chat => e.get().clone(),
            Entry::Occupied(_) => chat,
            Entry::Vacant(e) => e.insert(chat).clone(),
        }
    }

    fn get(&self, id: &ChatId) -> Option<Arc<Chat>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(id).cloned()
    }
}
