//! History on disk: every delivered chat, the rooms the node is in and the peers worth redialing,
//! in one redb file.
//!
//! Chats are stored as the core's own wire encoding (so only `wire` knows bincode), keyed by
//! (signed timestamp, id) in big-endian bytes, so a key-ordered scan is history in time order. Every
//! write is committed before it returns: a chat that was shown survives `kill -9`.
//!
//! A chat is stored, then shown, then marked shown. One that was stored but not yet shown when the
//! process died is shown at the next start (`unshown`), so a crash between the two never hides a
//! chat from the user; a crash right after showing, before the mark, shows it once more.
//!
//! A room's chats are stored as they travel: sealed, so the file holds their text only as
//! ciphertext. The room's secret, which opens them, is in the `rooms` table (as the identity key
//! is beside the file): whoever can read the directory can read the rooms.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dm::DmLine;
use p2p_chat_core::rooms::{RoomKeys, RoomSecret};
use p2p_chat_core::wire::{self, Message};
use p2p_chat_core::{Access, Chat, ChatId, PeerId, PublicKey, RoomId, RoomInfo};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const CHATS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chats");
const PEERS: TableDefinition<&str, u64> = TableDefinition::new("peers");
/// Keys of chats stored but not yet shown.
const UNSHOWN: TableDefinition<&[u8], ()> = TableDefinition::new("unshown");
/// Rooms the node is in, by id: access (0 public, 2 private; 1, a private room kept before rooms
/// had owners), the 32-byte secret, for kind 2 the owner's 32-byte key, the count of its epoch
/// keys (one byte) and each epoch's id and key (16 and 32 bytes), then the name.
const ROOMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rooms");
/// Identities blocked with `/block`, by peer id.
const BLOCKS: TableDefinition<&[u8], ()> = TableDefinition::new("blocks");
/// Facts about this history: `first_online_ms`, when a node first ran on it.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Direct messages shown to the user, by (written at, unix ms, big-endian; id): JSON of `DmLine`.
/// Their text is in the clear here, as on the user's screen: this table is the conversation.
const DMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dms");
/// What the node saves of direct messages: `snapshot` (`DmSnapshot::to_bytes`: envelopes as
/// ciphertext, bundles, the replay guard, the mailbox) and `ratchet` (`DmCrypto::save`: the Olm
/// account and sessions, secret keys in the clear, protected as the identity key file is).
const DM_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("dm_state");
/// Most peers remembered; the least recently seen go first.
pub const MAX_PEERS: usize = 1000;
pub const FILE_NAME: &str = "history.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    // The source is left out of the message: `{:#}` prints it once, as the cause.
    #[error("cannot open the history database {path}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error(
        "another p2p-chat is using {dir} (its history database is locked): stop it, or give this one another --db-path"
    )]
    InUse { dir: PathBuf },
    #[error("history database {path}: {source}")]
    Db { path: PathBuf, source: redb::Error },
    #[error("history database {path} holds an entry that does not decode: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// What `Store::put_dm_state` saved, if anything.
pub struct SavedDm {
    pub snapshot: Option<Vec<u8>>,
    pub ratchet: Option<Vec<u8>>,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

fn key(id: &ChatId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&id.timestamp_ms().to_be_bytes());
    k[8..].copy_from_slice(&id.0);
    k
}

impl Store {
    /// Opens (or creates) `dir/history.redb`. A damaged file is an error naming it, never replaced.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.to_owned(), source })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { dir: dir.to_owned() },
            source => StoreError::Open { path: path.clone(), source },
        })?;
        let store = Store { db, path };
        // Create both tables now, so readers never meet a missing table.
        store.write(|tx| {
            tx.open_table(CHATS)?;
            tx.open_table(PEERS)?;
            tx.open_table(UNSHOWN)?;
            tx.open_table(META)?;
            tx.open_table(ROOMS)?;
            tx.open_table(DMS)?;
            tx.open_table(DM_STATE)?;
            tx.open_table(BLOCKS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// When a node first ran on this history (unix ms); `now_ms` is recorded on the first call.
    pub fn first_online_ms(&self, now_ms: u64) -> Result<u64, StoreError> {
        let mut first = now_ms;
        self.write(|tx| {
            let mut t = tx.open_table(META)?;
            let stored = t.get("first_online_ms")?.map(|v| v.value());
            match stored {
                Some(ms) => first = ms,
                None => {
                    t.insert("first_online_ms", now_ms)?;
                }
            }
            Ok(())
        })?;
        Ok(first)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db { path: self.path.clone(), source: e.into() }
    }

    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Stores chats in one transaction (one fsync). Chats already stored are left as they are.
    pub fn put_chats(&self, chats: &[Arc<Chat>]) -> Result<(), StoreError> {
        if chats.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut t = tx.open_table(CHATS)?;
            let mut unshown = tx.open_table(UNSHOWN)?;
            for c in chats {
                let k = key(&c.id);
                if t.get(k.as_slice())?.is_none() {
                    let bytes = wire::encode(&Message::Reply { hops: 0, chat: c.clone() });
                    t.insert(k.as_slice(), bytes.as_slice())?;
                    unshown.insert(k.as_slice(), ())?;
                }
            }
            Ok(())
        })
    }

    /// The user has seen these.
    pub fn mark_shown(&self, chats: &[Arc<Chat>]) -> Result<(), StoreError> {
        if chats.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut unshown = tx.open_table(UNSHOWN)?;
            for c in chats {
                unshown.remove(key(&c.id).as_slice())?;
            }
            Ok(())
        })
    }

    /// Chats stored but never shown (the process died in between), in time order.
    pub fn unshown(&self) -> Result<Vec<Chat>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let unshown = tx.open_table(UNSHOWN).map_err(|e| self.err(e))?;
        let chats = tx.open_table(CHATS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in unshown.iter().map_err(|e| self.err(e))? {
            let (k, _) = entry.map_err(|e| self.err(e))?;
            if let Some(v) = chats.get(k.value()).map_err(|e| self.err(e))? {
                out.push(self.decode(v.value())?);
            }
        }
        Ok(out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Chat, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt { path: self.path.clone(), detail };
        match bytes.get(4..).map(wire::decode_payload) {
            Some(Ok(Message::Reply { chat, .. })) => Ok(Arc::unwrap_or_clone(chat)),
            Some(Ok(other)) => Err(corrupt(format!("a {} message", other.kind()))),
            Some(Err(e)) => Err(corrupt(e.to_string())),
            None => Err(corrupt("a truncated entry".into())),
        }
    }

    /// The newest `n` chats of every room, oldest first.
    pub fn recent_chats(&self, n: usize) -> Result<Vec<Chat>, StoreError> {
        self.recent(n, |_| true)
    }

    /// The newest `n` chats of one room, oldest first.
    pub fn recent_in(&self, room: RoomId, n: usize) -> Result<Vec<Chat>, StoreError> {
        self.recent(n, |c| c.room == room)
    }

    fn recent(&self, n: usize, keep: impl Fn(&Chat) -> bool) -> Result<Vec<Chat>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(CHATS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err(e))?.rev() {
            if out.len() == n {
                break;
            }
            let (_, v) = entry.map_err(|e| self.err(e))?;
            let chat = self.decode(v.value())?;
            if keep(&chat) {
                out.push(chat);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Forgets a redacted chat: its entry goes (redb reuses the freed pages; until they are
    /// written over, the file may still hold the old bytes, which for a room's chat are sealed).
    pub fn remove_chat(&self, id: &ChatId) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(CHATS)?.remove(key(id).as_slice())?;
            tx.open_table(UNSHOWN)?.remove(key(id).as_slice())?;
            Ok(())
        })
    }

    /// Replaces the blocked identities.
    pub fn put_blocks(&self, blocked: &[PeerId]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(BLOCKS)?;
            t.retain(|_, _| false)?;
            for p in blocked {
                t.insert(p.0.as_slice(), ())?;
            }
            Ok(())
        })
    }

    pub fn blocks(&self) -> Result<Vec<PeerId>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err(e))? {
            let (k, _) = entry.map_err(|e| self.err(e))?;
            let id: [u8; 32] = k.value().try_into().map_err(|_| StoreError::Corrupt {
                path: self.path.clone(),
                detail: "a blocked id that is not 32 bytes".into(),
            })?;
            out.push(PeerId(id));
        }
        Ok(out)
    }

    /// Remembers a room (again): what `Command::Rejoin` needs at the next start.
    pub fn put_room(&self, room: &RoomInfo) -> Result<(), StoreError> {
        let mut v = vec![if room.owner.is_some() { 2 } else { 0 }];
        v.extend_from_slice(&room.secret.0);
        if let Some(owner) = &room.owner {
            v.extend_from_slice(&owner.0);
            v.push(room.epochs.len().min(255) as u8);
            for (epoch, key) in room.epochs.iter().take(255) {
                v.extend_from_slice(&epoch.0);
                v.extend_from_slice(key);
            }
        }
        v.extend_from_slice(room.name.as_bytes());
        self.write(|tx| {
            tx.open_table(ROOMS)?.insert(room.id.0.as_slice(), v.as_slice())?;
            Ok(())
        })
    }

    /// Forgets a room left with `/part`. Its chats stay, sealed: joining it again opens them.
    pub fn remove_room(&self, id: &RoomId) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(ROOMS)?.remove(id.0.as_slice())?;
            Ok(())
        })
    }

    /// The rooms remembered, in id order.
    pub fn rooms(&self) -> Result<Vec<RoomInfo>, StoreError> {
        self.values(ROOMS, |v| self.decode_room(v))
    }

    /// Every value of `table`, in key order, read by `decode`.
    fn values<T>(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        decode: impl Fn(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(table).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = entry.map_err(|e| self.err(e))?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn decode_room(&self, v: &[u8]) -> Result<RoomInfo, StoreError> {
        let corrupt = || StoreError::Corrupt { path: self.path.clone(), detail: "a room that does not decode".into() };
        let (&access, rest) = v.split_first().ok_or_else(corrupt)?;
        let (secret, mut rest) = rest.split_first_chunk::<32>().ok_or_else(corrupt)?;
        let secret = RoomSecret(*secret);
        let (access, owner, mut epochs) = match access {
            0 => (Access::Public, None, Vec::new()),
            // A private room kept by a version before owners: rejoined as it was, unmoderated
            // (its members, on the same version as this one, made it again with an owner).
            1 => (Access::Private, None, Vec::new()),
            2 => {
                let (owner, more) = rest.split_first_chunk::<32>().ok_or_else(corrupt)?;
                let (&n, mut more) = more.split_first().ok_or_else(corrupt)?;
                let mut epochs = Vec::new();
                for _ in 0..n {
                    let (epoch, after) = more.split_first_chunk::<16>().ok_or_else(corrupt)?;
                    let (key, after) = after.split_first_chunk::<32>().ok_or_else(corrupt)?;
                    epochs.push((ChatId(*epoch), *key));
                    more = after;
                }
                rest = more;
                (Access::Private, Some(PublicKey(*owner)), epochs)
            }
            _ => return Err(corrupt()),
        };
        epochs.sort_by_key(|(e, _)| *e);
        let name = String::from_utf8(rest.to_vec()).map_err(|_| corrupt())?;
        let id = RoomKeys::with_owner(&secret, owner.as_ref()).id;
        Ok(RoomInfo { id, name, access, secret, owner, epochs })
    }

    /// Stores direct messages (new, or with a new state) in one transaction.
    pub fn put_dms(&self, lines: &[DmLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut t = tx.open_table(DMS)?;
            for l in lines {
                let mut k = [0u8; 24];
                k[..8].copy_from_slice(&l.at_ms.to_be_bytes());
                k[8..].copy_from_slice(&l.id.0);
                let v = serde_json::to_vec(l).expect("a message always encodes");
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }

    /// Every direct message stored, oldest first.
    pub fn dms(&self) -> Result<Vec<DmLine>, StoreError> {
        self.values(DMS, |v| {
            serde_json::from_slice(v)
                .map_err(|e| StoreError::Corrupt { path: self.path.clone(), detail: format!("a direct message: {e}") })
        })
    }

    /// Saves what the node keeps of direct messages (`snapshot`), and the ratchet's state.
    pub fn put_dm_state(&self, snapshot: &[u8], ratchet: Option<&[u8]>) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(DM_STATE)?;
            t.insert("snapshot", snapshot)?;
            if let Some(r) = ratchet {
                t.insert("ratchet", r)?;
            }
            Ok(())
        })
    }

    /// What `put_dm_state` saved.
    pub fn dm_state(&self) -> Result<SavedDm, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DM_STATE).map_err(|e| self.err(e))?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(t.get(k).map_err(|e| self.err(e))?.map(|v| v.value().to_vec()))
        };
        Ok(SavedDm { snapshot: get("snapshot")?, ratchet: get("ratchet")? })
    }

    pub fn chat_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(CHATS).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    /// Remembers peers (address text, unix ms last seen), keeping the newest `MAX_PEERS`.
    pub fn put_peers(&self, peers: &[(String, u64)]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(PEERS)?;
            for (addr, seen) in peers {
                t.insert(addr.as_str(), *seen)?;
            }
            if t.len()? as usize > MAX_PEERS {
                let mut all: Vec<(String, u64)> = Vec::new();
                for e in t.iter()? {
                    let (k, v) = e?;
                    all.push((k.value().to_owned(), v.value()));
                }
                all.sort_by_key(|(_, seen)| std::cmp::Reverse(*seen));
                for (addr, _) in &all[MAX_PEERS..] {
                    t.remove(addr.as_str())?;
                }
            }
            Ok(())
        })
    }

    /// Known peers, most recently seen first.
    pub fn peers(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PEERS).map_err(|e| self.err(e))?;
        let mut all = Vec::new();
        for e in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = e.map_err(|e| self.err(e))?;
            all.push((k.value().to_owned(), v.value()));
        }
        all.sort_by_key(|(_, seen)| std::cmp::Reverse(*seen));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_chat_core::{Body, Ed25519Keys};

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("p2p-chat-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn chat(ms: u64, text: &str) -> Arc<Chat> {
        let k = Ed25519Keys::from_seed(1);
        Arc::new(Chat::new(&k, ChatId::new_v7(ms, &[ms as u8; 10]), "alice", Body::Text(text.into())))
    }

    #[test]
    fn chats_survive_reopening_in_time_order_once() {
        let dir = temp_dir("reopen");
        {
            let s = Store::open(&dir).unwrap();
            s.put_chats(&[chat(3, "c"), chat(1, "a")]).unwrap();
            s.put_chats(&[chat(2, "b"), chat(1, "a")]).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.chat_count().unwrap(), 3);
        let texts: Vec<Body> = s.recent_chats(10).unwrap().into_iter().map(|c| c.body).collect();
        assert_eq!(texts, ["a", "b", "c"].map(|t| Body::Text(t.into())));
        assert_eq!(s.recent_chats(2).unwrap()[0].body, Body::Text("b".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stored_but_unshown_chats_are_found_after_a_restart() {
        let dir = temp_dir("unshown");
        {
            let s = Store::open(&dir).unwrap();
            s.put_chats(&[chat(1, "seen"), chat(2, "not seen")]).unwrap();
            s.mark_shown(&[chat(1, "seen")]).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let left: Vec<Body> = s.unshown().unwrap().into_iter().map(|c| c.body).collect();
        assert_eq!(left, vec![Body::Text("not seen".into())]);
        // Storing it again (it arrives once more) does not make a shown chat unshown.
        s.put_chats(&[chat(1, "seen")]).unwrap();
        assert_eq!(s.unshown().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_run_is_remembered_and_a_second_opener_is_named() {
        let dir = temp_dir("meta");
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.first_online_ms(100).unwrap(), 100);
        assert_eq!(s.first_online_ms(200).unwrap(), 100);
        let err = Store::open(&dir).err().expect("one process at a time");
        assert!(err.to_string().starts_with("another p2p-chat is using"), "{err}");
        drop(s);
        assert_eq!(Store::open(&dir).unwrap().first_online_ms(300).unwrap(), 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rooms_survive_reopening_until_parted_and_history_is_per_room() {
        let dir = temp_dir("rooms");
        let secret = RoomSecret([5; 32]);
        let owner = Some(PublicKey([3; 32]));
        let id = RoomKeys::with_owner(&secret, owner.as_ref()).id;
        let epochs = vec![(ChatId([1; 16]), [7; 32]), (ChatId([2; 16]), [8; 32])];
        let team = RoomInfo { id, name: "team".into(), access: Access::Private, secret, owner, epochs };
        let keys = team.keys_for(ChatId([2; 16])).unwrap();
        let k = Ed25519Keys::from_seed(1);
        let sealed = Arc::new(Chat::sealed(&k, ChatId::new_v7(5, &[5; 10]), &keys, "alice", "secret words", [1; 24]));
        {
            let s = Store::open(&dir).unwrap();
            s.put_room(&team).unwrap();
            s.put_room(&team).unwrap();
            s.put_chats(&[chat(1, "a"), sealed.clone(), chat(9, "b")]).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.rooms().unwrap(), vec![team.clone()]);
        assert_eq!(s.recent_in(team.id, 10).unwrap(), vec![(*sealed).clone()]);
        assert_eq!(s.recent_in(RoomId::DEFAULT, 1).unwrap()[0].body, Body::Text("b".into()));
        s.remove_chat(&sealed.id).unwrap();
        assert!(s.recent_in(team.id, 10).unwrap().is_empty());
        s.put_blocks(&[PeerId([4; 32])]).unwrap();
        assert_eq!(s.blocks().unwrap(), vec![PeerId([4; 32])]);
        s.remove_room(&team.id).unwrap();
        assert!(s.rooms().unwrap().is_empty());
        drop(s);
        let bytes = std::fs::read(dir.join(FILE_NAME)).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"secret words"), "a room's text is on disk only sealed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn peers_upsert_order_and_bound() {
        let dir = temp_dir("peers");
        let s = Store::open(&dir).unwrap();
        s.put_peers(&[("127.0.0.1:1".into(), 5), ("127.0.0.1:2".into(), 9)]).unwrap();
        s.put_peers(&[("127.0.0.1:1".into(), 10)]).unwrap();
        assert_eq!(s.peers().unwrap(), vec![("127.0.0.1:1".to_string(), 10), ("127.0.0.1:2".to_string(), 9)]);
        let many: Vec<(String, u64)> = (0..1100).map(|i| (format!("10.0.0.1:{i}"), 100 + i)).collect();
        s.put_peers(&many).unwrap();
        let kept = s.peers().unwrap();
        assert_eq!(kept.len(), MAX_PEERS);
        assert_eq!(kept[0].1, 1199);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE_NAME), vec![0x5a; 10_000]).unwrap();
        let err = Store::open(&dir).err().expect("garbage is not a database");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_path_is_a_clear_error() {
        let dir = temp_dir("file-parent");
        std::fs::write(&dir, b"not a directory").unwrap();
        let err = Store::open(&dir.join("db")).err().expect("a file cannot hold a directory");
        assert!(err.to_string().contains("cannot create the database directory"), "{err}");
        std::fs::remove_file(&dir).unwrap();
    }
}
