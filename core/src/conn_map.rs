//! Small maps keyed by connection, both a `Vec` sorted by connection: `ConnMap` for the node's
//! per-input queues (filled and drained on nearly every input, so it keeps a little room while in
//! use and none once empty) and `ConnTable` for its connections and gossip links (long-lived and
//! looked up on every input, so sized exactly). The two room policies are why there are two types.

use crate::node::ConnId;

/// Entries a map makes room for when it gets its first.
const FIRST_ROOM: usize = 8;

/// A map from connection to value, kept as a `Vec` sorted by connection. The node fills one of
/// these on nearly every input and drains it before the next: with a few dozen connections at
/// most, a binary search over one contiguous buffer beats a B-tree's node walks and allocations,
/// and an empty map holds no memory at all (a `BTreeMap` keeps its root leaf). Iteration is in
/// connection order, as a `BTreeMap`'s is, so what goes out and in which order does not change.
#[derive(Debug)]
pub(crate) struct ConnMap<V> {
    entries: Vec<(ConnId, V)>,
}

impl<V> Default for ConnMap<V> {
    fn default() -> Self {
        ConnMap { entries: Vec::new() }
    }
}

impl<V> ConnMap<V> {
    fn find(&self, conn: ConnId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&conn, |e| e.0)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, conn: ConnId) -> bool {
        self.find(conn).is_ok()
    }

    pub(crate) fn get(&self, conn: ConnId) -> Option<&V> {
        let at = self.find(conn).ok()?;
        Some(&self.entries[at].1)
    }

    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, conn: ConnId) -> Option<&mut V> {
        let at = self.find(conn).ok()?;
        Some(&mut self.entries[at].1)
    }

    /// The value of `conn`, inserted as `V::default()` if absent.
    pub(crate) fn entry(&mut self, conn: ConnId) -> &mut V
    where
        V: Default,
    {
        let at = match self.find(conn) {
            Ok(at) => at,
            Err(at) => {
                if self.entries.capacity() == 0 {
                    // A map is emptied after nearly every input and filled again by the next, and
                    // a chat's announcements alone go to six neighbours: room for a few more than
                    // `Vec`'s first four spares a regrowth each time.
                    self.entries.reserve_exact(FIRST_ROOM);
                }
                self.entries.insert(at, (conn, V::default()));
                at
            }
        };
        &mut self.entries[at].1
    }

    /// Removes `conn`; the buffer is given back once the map is empty.
    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<V> {
        let at = self.find(conn).ok()?;
        let (_, v) = self.entries.remove(at);
        self.shrink_if_empty();
        Some(v)
    }

    /// Removes the entry of the lowest connection; the buffer is given back once the map is empty.
    pub(crate) fn pop_first(&mut self) -> Option<(ConnId, V)> {
        if self.entries.is_empty() {
            return None;
        }
        let first = self.entries.remove(0);
        self.shrink_if_empty();
        Some(first)
    }

    /// Empties the map, handing over its entries in connection order.
    #[cfg(test)]
    pub(crate) fn take(&mut self) -> Vec<(ConnId, V)> {
        std::mem::take(&mut self.entries)
    }

    fn shrink_if_empty(&mut self) {
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
    }
}

/// The node's connections: a `Vec` sorted by connection, with room for exactly as many as there
/// are. A node adds or drops a connection a few times a minute and looks one up on every input, so
/// a reallocation per change is cheap, while a `BTreeMap` kept half-empty B-tree nodes (a leaf has
/// room for eleven). Same iteration order as a `BTreeMap`.
#[derive(Debug)]
pub(crate) struct ConnTable<V> {
    entries: Vec<(ConnId, V)>,
}

impl<V> Default for ConnTable<V> {
    fn default() -> Self {
        ConnTable { entries: Vec::new() }
    }
}

impl<V> ConnTable<V> {
    fn find(&self, conn: &ConnId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(conn, |e| e.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn contains_key(&self, conn: &ConnId) -> bool {
        self.find(conn).is_ok()
    }

    pub(crate) fn get(&self, conn: &ConnId) -> Option<&V> {
        self.find(conn).ok().map(|at| &self.entries[at].1)
    }

    pub(crate) fn get_mut(&mut self, conn: &ConnId) -> Option<&mut V> {
        let at = self.find(conn).ok()?;
        Some(&mut self.entries[at].1)
    }

    /// Adds `conn` (replacing its value if present, which is returned).
    pub(crate) fn insert(&mut self, conn: ConnId, v: V) -> Option<V> {
        match self.find(&conn) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, v)),
            Err(at) => {
                self.entries.reserve_exact(1);
                self.entries.insert(at, (conn, v));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, conn: &ConnId) -> Option<V> {
        let at = self.find(conn).ok()?;
        let (_, v) = self.entries.remove(at);
        self.entries.shrink_to_fit();
        Some(v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ConnId, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &ConnId> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<V> std::ops::Index<&ConnId> for ConnTable<V> {
    type Output = V;

    fn index(&self, conn: &ConnId) -> &V {
        self.get(conn).expect("no such connection")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_connection_order_and_frees_when_empty() {
        let mut m: ConnMap<Vec<u8>> = ConnMap::default();
        for c in [5, 1, 3, 1] {
            m.entry(ConnId(c)).push(c as u8);
        }
        assert!(m.contains(ConnId(3)) && !m.contains(ConnId(2)));
        assert_eq!(m.get_mut(ConnId(1)), Some(&mut vec![1, 1]));
        assert_eq!(m.remove(ConnId(3)), Some(vec![3]));
        assert_eq!(m.remove(ConnId(3)), None);
        assert_eq!(m.pop_first(), Some((ConnId(1), vec![1, 1])));
        assert_eq!(m.take(), vec![(ConnId(5), vec![5])]);
        assert!(m.is_empty() && m.pop_first().is_none());
        m.entry(ConnId(7));
        m.pop_first();
        assert_eq!(m.entries.capacity(), 0);
    }

    #[test]
    fn table_is_sorted_and_holds_no_spare_room() {
        let mut t: ConnTable<u8> = ConnTable::default();
        for c in [4, 2, 9, 2] {
            t.insert(ConnId(c), c as u8);
        }
        assert_eq!(t.keys().map(|c| c.0).collect::<Vec<_>>(), [2, 4, 9]);
        assert_eq!((t.len(), t.entries.capacity()), (3, 3));
        assert_eq!((t.remove(&ConnId(4)), t.remove(&ConnId(4))), (Some(4), None));
        assert_eq!((t[&ConnId(9)], t.entries.capacity()), (9, 2));
        assert!(t.contains_key(&ConnId(2)) && t.get(&ConnId(3)).is_none());
    }
}
