//! A text section read with a guard and its samples (`reader.rs`): the heap copies of the term
//! dictionary and of the norm table, or the norm table's granule crcs, against section bytes
//! changed after they were taken (as a disk changes a mapped file) and before.

use super::*;
use crate::integrity::{within, ChunkGuard, FileGuard};

fn guard_of(bytes: &[u8]) -> ChunkGuard {
    let crcs = bytes.chunks(1 << 10).map(crc32c::crc32c).collect();
    ChunkGuard::new(10, bytes.len(), crcs)
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

#[test]
fn a_changed_dictionary_byte_is_never_read_and_a_changed_length_byte_fails_the_query() {
    let opts = FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() };
    let docs: Vec<String> =
        (0..5000).map(|i| format!("w{} w{} common {}", i % 97, i % 13, "x ".repeat(i % 7))).collect();
    let docs: Vec<String> =
        docs.into_iter().enumerate().map(|(i, d)| if i % 1000 == 7 { d + " rare" } else { d }).collect();
    let bytes = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
    let g = guard_of(&bytes);
    let first = TextIndex::open(&bytes).unwrap().guarded(Some(FileGuard::new(&bytes, &g)));
    // The norm table's granule crcs, as for a table too large to hold (below: held whole).
    let samples = within(|| first.samples_holding(0)).unwrap().unwrap();
    assert!(samples.holds_terms(), "a small dictionary is kept whole");
    let terms = vec!["w5".to_string(), "common".to_string(), "rare".to_string()];
    let mut st = CorpusStats::default();
    st.add_index(&first, &terms);
    let p = Bm25Params::default();
    let search_for = |terms: &[String], b: &[u8]| {
        within(|| {
            let ix = TextIndex::reopen(b, &samples).unwrap().guarded(Some(FileGuard::new(b, &g)));
            ix.search(terms, &st, p, 10, None).unwrap()
        })
    };
    let search = |b: &[u8]| search_for(&terms, b);
    let want = search(&bytes).unwrap();
    assert_eq!(want, first.search_exhaustive(&terms, &st, p, 10, None).unwrap());
    assert!(!want.is_empty());

    // Layout (`reader.rs`): header 64 B, the name, one norm byte a row, (terms + 1) offsets, infos.
    let (name, rows, nterms) = (u32_at(&bytes, 12), u32_at(&bytes, 32), u32_at(&bytes, 36));
    let norms_at = 64 + name;
    let infos_at = norms_at + rows + 4 * (nterms + 1);
    let mut dict = bytes.clone();
    for i in 0..nterms {
        dict[infos_at + 16 * i] ^= 1;
    }
    assert_eq!(search(&dict), Ok(want.clone()), "lookups read the checked copy, not the section");

    // A sparse list checks its rows' length bytes by granules, a dense one by 1 KiB chunks.
    let row = 2007usize;
    let mut norm = bytes.clone();
    norm[norms_at + row] ^= 1;
    let rare = search_for(&["rare".to_string()], &norm).unwrap_err();
    assert_eq!(rare.offset as usize, norms_at + (row >> NORM_GRANULE_LOG2 << NORM_GRANULE_LOG2));
    let common = search_for(&["common".to_string()], &norm).unwrap_err();
    assert_eq!(common.offset as usize, (norms_at + row) >> 10 << 10);

    // A norm table held whole: the changed length byte is never read, the checked copy is.
    let held = within(|| first.samples()).unwrap().unwrap();
    assert!(held.heap_bytes() >= rows, "the copy is counted");
    let search_held = |terms: &[String], b: &[u8]| {
        within(|| {
            let ix = TextIndex::reopen(b, &held).unwrap().guarded(Some(FileGuard::new(b, &g)));
            ix.search(terms, &st, p, 10, None).unwrap()
        })
    };
    assert_eq!(search_held(&terms, &norm), Ok(want.clone()));
    assert_eq!(search_held(&["rare".to_string()], &norm), search_held(&["rare".to_string()], &bytes));
    assert!(search_held(&["rare".to_string()], &bytes).unwrap().iter().any(|h| h.0 == row as u32));

    // Changed before the samples were taken: the copy fails its check, and nothing is kept.
    let late = TextIndex::open_trusted(&dict).unwrap().guarded(Some(FileGuard::new(&dict, &g)));
    assert!(within(|| late.samples().is_none()).is_err());
}

#[test]
fn a_dense_lists_block_checks_its_rows_length_bytes_even_for_rows_never_scored_whole() {
    // Rows 0..10 are the shortest, so they fill the top 10 in the first window and no later row
    // is scored whole (its parts read again): row 2007's length byte is only read while its
    // block is summed, and the block's check must catch it changed.
    let opts = FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() };
    let docs: Vec<String> = (0..5000)
        .map(|i| if i < 10 { "common".to_string() } else { format!("common {}", "x ".repeat(3)) })
        .collect();
    let bytes = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
    let g = guard_of(&bytes);
    let terms = vec!["common".to_string()];
    let mut st = CorpusStats::default();
    st.add_index(&TextIndex::open(&bytes).unwrap(), &terms);
    let search = |b: &[u8]| {
        within(|| {
            let ix = TextIndex::open_trusted(b).unwrap().guarded(Some(FileGuard::new(b, &g)));
            ix.search(&terms, &st, Bm25Params::default(), 10, None).unwrap()
        })
    };
    let want = search(&bytes).unwrap();
    assert_eq!(want.iter().map(|h| h.0).collect::<Vec<_>>(), (0..10).collect::<Vec<u32>>());

    let (name, row) = (u32_at(&bytes, 12), 2007usize);
    let norms_at = 64 + name;
    let mut norm = bytes.clone();
    norm[norms_at + row] ^= 1;
    let err = search(&norm).unwrap_err();
    assert_eq!(err.offset as usize, (norms_at + row) >> 10 << 10);
}
