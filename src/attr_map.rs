//! A document's attributes: [`AttrMap`], a map from name to value kept as
//! one sorted vector (`model::AttrMap` is it over `Value`).
//!
//! Every unindexed row of a namespace holds its document in memory until a
//! compaction folds it into a segment; a million rows are a million maps.
//! A `BTreeMap` allocates a leaf of eleven slots for its first entry (about
//! 650 bytes for one string attribute); this map holds exactly its entries.
//!
//! Invariants:
//! - Entries are sorted by name (byte order, as `String`'s `Ord`) and names
//!   are unique: iteration order is the order a `BTreeMap` gave, so every
//!   encoding of a document stays byte-identical.
//! - Capacity follows length: inserting grows the vector by exactly one
//!   entry, and building from an iterator leaves no spare room.

/// Attributes by name, sorted, without spare capacity (see the module docs).
#[derive(Clone, PartialEq)]
pub struct AttrMap<V> {
    entries: Vec<(String, V)>,
}

/// Borrowing iterator over (name, value) in name order.
pub type Iter<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (String, V)>, fn(&'a (String, V)) -> (&'a String, &'a V)>;

impl<V> Default for AttrMap<V> {
    fn default() -> Self {
        AttrMap::new()
    }
}

impl<V> AttrMap<V> {
    /// An empty map (no allocation).
    pub const fn new() -> Self {
        AttrMap { entries: Vec::new() }
    }

    /// An empty map with room for `n` entries (a decoder that knows its count).
    pub fn with_capacity(n: usize) -> Self {
        AttrMap { entries: Vec::with_capacity(n) }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.find(name).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `name`, to change in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        self.find(name).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `name` has a value.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name` to `value`; returns the value it replaced.
    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, (name, value));
                None
            }
        }
    }

    /// Removes `name`; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        let i = self.find(name).ok()?;
        let (_, v) = self.entries.remove(i);
        self.entries.shrink_to_fit();
        Some(v)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (name, value) in name order.
    pub fn iter(&self) -> Iter<'_, V> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// (name, value to change) in name order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Names in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in name order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Keeps the entries for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
        self.entries.shrink_to_fit();
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for AttrMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> std::ops::Index<&str> for AttrMap<V> {
    type Output = V;
    /// The value of `name`; panics when there is none (as `BTreeMap` does).
    fn index(&self, name: &str) -> &V {
        self.get(name).unwrap_or_else(|| panic!("no attribute {name:?}"))
    }
}

impl<V> FromIterator<(String, V)> for AttrMap<V> {
    /// A later entry for a name replaces an earlier one (as inserting them in turn).
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut entries: Vec<(String, V)> = iter.into_iter().collect();
        // Stable: equal names keep their order, and the last of each run wins.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, V)> = Vec::with_capacity(entries.len());
        for e in entries {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        out.shrink_to_fit();
        AttrMap { entries: out }
    }
}

impl<V> Extend<(String, V)> for AttrMap<V> {
    fn extend<I: IntoIterator<Item = (String, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V, const N: usize> From<[(String, V); N]> for AttrMap<V> {
    fn from(entries: [(String, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<V> IntoIterator for AttrMap<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a AttrMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = Iter<'a, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn it_orders_and_replaces_as_a_btreemap_does() {
        let ops: Vec<(&str, Option<&str>)> = vec![
            ("b", Some("1")),
            ("a", Some("2")),
            ("é", Some("3")),
            ("B", Some("4")),
            ("a", Some("5")),
            ("b", None),
            ("", Some("6")),
            ("zz", None),
            ("c", Some("7")),
        ];
        let (mut ours, mut theirs) = (AttrMap::new(), BTreeMap::new());
        for (k, v) in &ops {
            match v {
                Some(v) => assert_eq!(ours.insert(k.to_string(), s(v)), theirs.insert(k.to_string(), s(v))),
                None => assert_eq!(ours.remove(k), theirs.remove(*k)),
            }
            assert_eq!(ours.iter().collect::<Vec<_>>(), theirs.iter().collect::<Vec<_>>());
            assert_eq!(ours.len(), theirs.len());
        }
        for k in ["a", "b", "c", "é", "", "x"] {
            assert_eq!(ours.get(k), theirs.get(k));
            assert_eq!(ours.contains_key(k), theirs.contains_key(k));
        }
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    }

    #[test]
    fn it_holds_no_spare_room() {
        let mut m = AttrMap::new();
        assert_eq!(m.entries.capacity(), 0);
        for (i, k) in ["x", "a", "m"].iter().enumerate() {
            m.insert(k.to_string(), i);
            assert_eq!(m.entries.capacity(), i + 1, "exactly its entries");
        }
        m.remove("a");
        assert_eq!(m.entries.capacity(), 2);
        let built: AttrMap<i32> = (0..5).map(|i| (format!("k{}", i % 3), i)).collect();
        assert_eq!(built.entries.capacity(), 3);
        // The last value of a repeated name wins, as inserting them in turn.
        assert_eq!(built.get("k0"), Some(&3));
        assert_eq!(built.keys().map(String::as_str).collect::<Vec<_>>(), ["k0", "k1", "k2"]);
    }
}
