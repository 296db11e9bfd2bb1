//! Term lookups through the heap copy's hash table (`reader.rs`, `HeapDict::table`) against the
//! bisection over the section: the same index for every key of the dictionary, and absent for
//! words it does not hold (hash collisions included: the table is at most half full, so probes
//! meet keys of other words).

use super::*;
use proptest::prelude::*;

fn opts() -> FullTextSearch {
    FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn hashed_lookups_equal_the_bisection(seed in any::<u64>(), rows in 1usize..400, vocab in 1u64..3000) {
        let mut x = seed | 1;
        let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let docs: Vec<String> = (0..rows)
            .map(|_| (0..1 + next() % 12).map(|_| format!("t{}", next() % vocab)).collect::<Vec<_>>().join(" "))
            .collect();
        let bytes = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts());
        let plain = TextIndex::open(&bytes).unwrap();
        let samples = plain.samples().unwrap();
        prop_assert!(samples.holds_terms());
        let hashed = TextIndex::reopen(&bytes, &samples).unwrap();
        // Every word of the vocabulary and some never written: present ones and absent ones.
        for w in (0..vocab + 50).map(|i| format!("t{i}")).chain(["".to_string(), "zz".to_string()]) {
            let (a, b) = (plain.lookup(&w), hashed.lookup(&w));
            prop_assert_eq!(a, b, "word {}", w);
            prop_assert_eq!(plain.postings(&w).unwrap(), hashed.postings(&w).unwrap());
        }
    }
}
