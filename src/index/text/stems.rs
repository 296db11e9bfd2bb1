//! A thread's cache of Snowball stems for one language: ingest analyses the same few
//! tens of thousands of words over and over, and a stem costs several times a lookup.
//!
//! Invariants:
//! - A pure cache: [`StemTable::stem_into`] gives exactly what the stemmer gives for the
//!   word, cached or not (a word's stem depends on nothing else).
//! - A word and its stem of at most [`INLINE`] bytes each live in one 32-byte slot of an
//!   open-addressed table: a lookup reads one slot (rarely a few), compares the word as
//!   two machine words and copies the stem out — no pointer to follow, where the map of
//!   boxed strings it replaced compared keys behind a pointer. Longer words (rare in
//!   text) are stemmed each time. A small table of the words met last sits in front: the
//!   frequent words in a few cache pages, where the large table spreads them over
//!   megabytes (a lookup's cost is that random read: `BENCHMARKS.md`, "Ingest: stems in
//!   the slot (stop 67)").
//! - Bounded work and memory whatever a client sends: the table holds at most
//!   [`MAX_WORDS`] words (cleared when full; 4 MiB of slots at most), a probe gives up
//!   after [`MAX_PROBE`] slots (the word is stemmed, not cached), and the hash is seeded
//!   per thread at random, so words chosen to collide cannot be chosen in advance.

use std::hash::BuildHasher;

/// Longest word (and stem) kept in a slot, in bytes.
const INLINE: usize = 15;

/// Most words held: a larger vocabulary clears the table and refills it.
const MAX_WORDS: usize = 1 << 16;

/// Slots of the table of words met last (128 KiB).
const HOT_SLOTS: usize = 1 << 12;

/// Slots a lookup reads at most before stemming without the cache.
const MAX_PROBE: usize = 32;

/// Slots of a new table (it doubles while it is half full, up to `2 × MAX_WORDS`).
const FIRST_SLOTS: usize = 1 << 10;

/// A word as compared: its length, then its bytes, zero-padded (an empty slot is all zero,
/// and no cached word is empty).
type Key = [u8; INLINE + 1];

/// One cached word and its stem.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    key: Key,
    stem_len: u8,
    stem: [u8; INLINE],
}

const EMPTY: Slot = Slot { key: [0; INLINE + 1], stem_len: 0, stem: [0; INLINE] };

/// Where a probe ended.
enum Probe {
    Found(usize),
    Empty(usize),
    GaveUp,
}

/// Cached stems of one language on one thread.
pub(super) struct StemTable {
    /// The words met last, by hash (one slot each, the newest wins): the frequent words of
    /// a text live here, in a few cache pages, where `slots` spreads them over megabytes.
    hot: Vec<Slot>,
    slots: Vec<Slot>,
    words: usize,
    seed: (u64, u64),
}

impl StemTable {
    pub(super) fn new() -> StemTable {
        let random = std::collections::hash_map::RandomState::new();
        StemTable {
            hot: Vec::new(),
            slots: Vec::new(),
            words: 0,
            seed: (random.hash_one(0u64), random.hash_one(1u64)),
        }
    }

    /// Appends `word`'s stem to `out`.
    pub(super) fn stem_into(&mut self, stemmer: &frostem::Stemmer, word: &str, out: &mut String) {
        let Some(key) = key_of(word) else {
            out.push_str(&stemmer.stem(word));
            return;
        };
        if self.slots.is_empty() {
            self.slots = vec![EMPTY; FIRST_SLOTS];
            self.hot = vec![EMPTY; HOT_SLOTS];
        }
        let home = self.home(&key);
        // The hot slot from the hash's top bits, the table's from its low bits.
        let hot = (home >> 48) as usize & (HOT_SLOTS - 1);
        if self.hot[hot].key == key {
            out.push_str(slot_stem(&self.hot[hot]));
            return;
        }
        match self.probe(home, &key) {
            Probe::Found(i) => {
                out.push_str(slot_stem(&self.slots[i]));
                self.hot[hot] = self.slots[i];
            }
            Probe::Empty(i) => {
                let stem = stemmer.stem(word);
                out.push_str(&stem);
                // A stem too long to keep is not cached.
                if let Some(slot) = slot_of(key, &stem) {
                    self.hot[hot] = slot;
                    self.insert_at(i, slot);
                }
            }
            Probe::GaveUp => out.push_str(&stemmer.stem(word)),
        }
    }

    /// The slot holding `key`, or the empty slot where it would go, within [`MAX_PROBE`]
    /// slots from its home.
    fn probe(&self, home: u64, key: &Key) -> Probe {
        let mask = self.slots.len() - 1;
        let mut i = home as usize & mask;
        for _ in 0..MAX_PROBE {
            match &self.slots[i].key {
                k if k == key => return Probe::Found(i),
                k if k[0] == 0 => return Probe::Empty(i),
                _ => i = (i + 1) & mask,
            }
        }
        Probe::GaveUp
    }

    /// Fills empty slot `i`, then grows or clears a table that reached its load.
    fn insert_at(&mut self, i: usize, slot: Slot) {
        self.slots[i] = slot;
        self.words += 1;
        if self.words >= MAX_WORDS {
            self.slots.clear();
            self.words = 0;
        } else if self.words * 2 >= self.slots.len() {
            self.grow();
        }
    }

    /// Doubles the slots, placing every word again (one that finds no slot within the
    /// probe limit is dropped: a cache may forget).
    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.words = 0;
        for slot in old.into_iter().filter(|s| s.key[0] != 0) {
            if let Probe::Empty(i) = self.probe(self.home(&slot.key), &slot.key) {
                self.slots[i] = slot;
                self.words += 1;
            }
        }
    }

    /// Where a key's probe starts (before masking): a multiply-fold of its two halves with
    /// this thread's seeds.
    fn home(&self, key: &Key) -> u64 {
        let (lo, hi) = key.split_at(8);
        let lo = u64::from_le_bytes(lo.try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(hi.try_into().expect("8 bytes"));
        let m = u128::from(lo ^ self.seed.0) * u128::from(hi ^ self.seed.1);
        (m as u64) ^ ((m >> 64) as u64)
    }
}

/// The key of a word of 1 to [`INLINE`] bytes (None: not cached).
fn key_of(word: &str) -> Option<Key> {
    let n = word.len();
    if n == 0 || n > INLINE {
        return None;
    }
    let mut key = [0u8; INLINE + 1];
    key[0] = n as u8;
    key[1..=n].copy_from_slice(word.as_bytes());
    Some(key)
}

/// The slot of a word's key and its stem (None: a stem longer than [`INLINE`]).
fn slot_of(key: Key, stem: &str) -> Option<Slot> {
    let mut slot = Slot { key, stem_len: u8::try_from(stem.len()).ok()?, stem: [0; INLINE] };
    slot.stem.get_mut(..stem.len())?.copy_from_slice(stem.as_bytes());
    Some(slot)
}

fn slot_stem(slot: &Slot) -> &str {
    // Written from a `&str` by `insert_at`: always valid UTF-8.
    std::str::from_utf8(&slot.stem[..usize::from(slot.stem_len)]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn english() -> frostem::Stemmer {
        frostem::Stemmer::try_from_name("english").expect("english")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Cached or not, grown or cleared, a stem is the stemmer's: words from a small
        /// alphabet repeat (hits), long ones bypass the slots, and more words than a
        /// table holds before it grows force growth.
        #[test]
        fn a_cached_stem_is_the_stemmers(words in prop::collection::vec("[a-eé]{1,20}", 1..3000)) {
            let stemmer = english();
            let mut table = StemTable::new();
            for w in words.iter().chain(&words) {
                let mut out = String::from("x");
                table.stem_into(&stemmer, w, &mut out);
                prop_assert_eq!(&out[1..], &*stemmer.stem(w));
            }
        }
    }

    #[test]
    fn a_full_table_clears_and_keeps_stemming() {
        let stemmer = english();
        let mut table = StemTable::new();
        let mut out = String::new();
        for i in 0..(MAX_WORDS + 10) {
            out.clear();
            let w = format!("w{i}ing");
            table.stem_into(&stemmer, &w, &mut out);
            assert_eq!(out, stemmer.stem(&w));
        }
        assert!(table.words < MAX_WORDS, "cleared at the cap, holds {}", table.words);
        assert!(table.slots.len() <= 2 * MAX_WORDS);
    }

    #[test]
    fn a_word_past_the_probe_limit_is_stemmed_without_the_cache() {
        let stemmer = english();
        let mut table = StemTable::new();
        // Every slot taken by another word: each probe runs out, as words made to collide
        // would make it.
        let other = Slot { key: key_of("zz").expect("short"), stem_len: 1, stem: [b'q'; INLINE] };
        table.slots = vec![other; FIRST_SLOTS];
        table.hot = vec![other; HOT_SLOTS];
        for w in ["running", "connections", "a"] {
            let mut out = String::new();
            table.stem_into(&stemmer, w, &mut out);
            assert_eq!(out, stemmer.stem(w));
        }
        assert_eq!(table.words, 0);
    }
}
