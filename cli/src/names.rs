//! Which keys use which display name, as seen this run: what `/whois name` lists and what marks a
//! chat "(not the first name: /whois)". A name is chosen freely by whoever sends it, so the book is
//! bounded: a run that meets a flood of made-up names forgets the names seen longest ago, and a name
//! lists at most `MAX_KEYS_PER_NAME` keys (the first always stays: it is what the marker compares to).

use std::collections::BTreeMap;

use p2p_chat_core::PeerId;

/// Names remembered at once.
pub const MAX_NAMES: usize = 10_000;
/// Keys listed for one name.
pub const MAX_KEYS_PER_NAME: usize = 32;

#[derive(Default)]
pub struct Names {
    by_name: BTreeMap<String, Seen>,
    /// Counts notes, to tell which name was seen longest ago.
    clock: u64,
}

struct Seen {
    /// The first key seen with the name first.
    keys: Vec<PeerId>,
    last: u64,
}

impl Names {
    /// Notes `id` using `name`. True if the key is new for the name.
    pub fn learn(&mut self, name: &str, id: PeerId) -> bool {
        self.clock += 1;
        let clock = self.clock;
        if let Some(seen) = self.by_name.get_mut(name) {
            seen.last = clock;
            if seen.keys.contains(&id) || seen.keys.len() >= MAX_KEYS_PER_NAME {
                return false;
            }
            seen.keys.push(id);
            return true;
        }
        if self.by_name.len() >= MAX_NAMES {
            let oldest = self.by_name.iter().min_by_key(|(_, s)| s.last).map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                self.by_name.remove(&n);
            }
        }
        self.by_name.insert(name.to_owned(), Seen { keys: vec![id], last: clock });
        true
    }

    /// The keys seen using `name`, the first one first.
    pub fn keys(&self, name: &str) -> &[PeerId] {
        self.by_name.get(name).map_or(&[], |s| &s.keys)
    }

    /// Whether a chat by `id` under `name` should be marked: another key used the name first.
    pub fn not_first(&self, name: &str, id: &PeerId) -> bool {
        self.keys(name).first().is_some_and(|f| f != id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_chat_core::{Ed25519Keys, Keys};

    fn key(i: u64) -> PeerId {
        Ed25519Keys::from_seed(i).public_key().peer_id()
    }

    #[test]
    fn the_first_key_stays_first_and_later_ones_are_marked() {
        let mut names = Names::default();
        assert!(names.learn("bob", key(1)));
        assert!(!names.learn("bob", key(1)));
        assert!(names.learn("bob", key(2)));
        assert_eq!(names.keys("bob"), [key(1), key(2)]);
        assert!(!names.not_first("bob", &key(1)) && names.not_first("bob", &key(2)));
        assert!(names.keys("carol").is_empty() && !names.not_first("carol", &key(1)));
    }

    /// A flood of made-up names and keys takes bounded room, and forgets what was seen longest ago.
    #[test]
    fn a_flood_of_names_and_keys_stays_bounded() {
        let mut names = Names::default();
        names.learn("bob", key(0));
        for i in 1..=MAX_KEYS_PER_NAME as u64 + 10 {
            names.learn("bob", key(i));
        }
        assert_eq!(names.keys("bob").len(), MAX_KEYS_PER_NAME);
        assert_eq!(names.keys("bob")[0], key(0));
        names.learn("alice", key(1));
        for i in 0..MAX_NAMES {
            names.learn(&format!("spam{i}"), key(2));
            if i % 1000 == 0 {
                names.learn("alice", key(1));
            }
        }
        assert_eq!(names.by_name.len(), MAX_NAMES);
        assert!(names.keys("bob").is_empty(), "seen longest ago");
        assert_eq!(names.keys("alice"), [key(1)], "seen again meanwhile");
    }
}
