//! `BoundedMap`: a hash map with a hard size bound, for state keyed by what
//! an anonymous LAN host chooses (a MAC in a DHCP packet). Every operation
//! is O(1), also when full, so a flood of new keys costs no scans.
//!
//! Two generations: inserts go to the young one; when it holds half the
//! bound, the old generation is dropped whole and the young one becomes old.
//! So the oldest entries are forgotten first, a key touched through
//! `get_mut` moves to the young generation, and the map never holds more
//! than `capacity` entries. Owns that policy only; it never decides what a
//! forgotten entry means (callers choose state whose loss is harmless).

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub struct BoundedMap<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    generation: usize,
}

impl<K: Eq + Hash + Copy, V> BoundedMap<K, V> {
    /// A map holding at most `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            generation: (capacity / 2).max(1),
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    /// The entry, moved to the young generation (it was just used).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.young.contains_key(key) {
            let value = self.old.remove(key)?;
            self.insert(*key, value);
        }
        self.young.get_mut(key)
    }

    /// Inserts or replaces; returns how many old entries were forgotten to
    /// make room (0 or a whole generation).
    pub fn insert(&mut self, key: K, value: V) -> usize {
        self.old.remove(&key);
        let mut forgotten = 0;
        if !self.young.contains_key(&key) && self.young.len() >= self.generation {
            forgotten = self.old.len();
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
        forgotten
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.young.remove(key).or_else(|| self.old.remove(key))
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the entries `keep` accepts (e.g. drops expired ones).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.young.retain(&mut keep);
        self.old.retain(&mut keep);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn never_exceeds_its_bound_and_forgets_the_oldest_first() {
        let mut m = BoundedMap::new(100);
        let mut forgotten = 0;
        for k in 0..10_000u32 {
            forgotten += m.insert(k, k);
            assert!(m.len() <= 100, "{} entries after {k}", m.len());
        }
        assert_eq!(forgotten + m.len(), 10_000);
        assert!(m.get(&9_999).is_some(), "the newest is kept");
        assert!(m.get(&0).is_none(), "the oldest is forgotten");
    }

    #[test]
    fn a_used_entry_survives_a_generation() {
        let mut m = BoundedMap::new(4);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(3, "c"); // 1, 2 become old
        assert_eq!(m.get_mut(&1).copied(), Some("a")); // 1 moves young
        m.insert(4, "d"); // young full again: 2 is dropped
        m.insert(5, "e");
        assert!(m.get(&2).is_none());
        assert_eq!(m.get(&1).copied(), Some("a"));
        assert_eq!(m.remove(&5), Some("e"));
        m.retain(|k, _| *k != 1);
        assert!(m.get(&1).is_none());
    }
}
