//! `merge_pick`: which segments a merge takes, and what an ingest's merges rewrite.
//!
//! Invariants guarded: a merge lowers the segment count or is not made; segments over
//! half the output cap are never merged; a merge's largest input holds no more rows than
//! the others together (so a large segment is not rewritten for a few small ones); one
//! merge writes at most four outputs; an ingest rewrites each row a few times, not once
//! per merge.

use super::merge_pick;

fn ids(s: &std::collections::BTreeSet<String>) -> Vec<&str> {
    s.iter().map(String::as_str).collect()
}

#[test]
fn full_segments_are_not_rewritten_into_as_many() {
    // Eleven segments at the cap (the 1M run under 819 MiB) and one below it: any merge
    // would write as many segments as it reads.
    let mut live: Vec<(String, usize)> = (0..10).map(|i| (format!("s{i:02}"), 95_846)).collect();
    live.push(("s10".into(), 45_000));
    let live: Vec<(&str, usize)> = live.iter().map(|(i, r)| (i.as_str(), *r)).collect();
    assert!(merge_pick(&live, 95_846).is_empty());
}

#[test]
fn the_smallest_merge_while_they_lower_the_count() {
    let live = [("a", 10), ("b", 20), ("c", 30), ("d", 100), ("e", 100)];
    assert_eq!(ids(&merge_pick(&live, 100)), ["a", "b", "c"], "60 rows into one");
    // Over half the cap: two of them do not fit one output.
    assert!(merge_pick(&[("a", 60), ("b", 60), ("c", 60), ("d", 100)], 100).is_empty());
    assert!(merge_pick(&[("a", 10), ("b", 51), ("c", 51)], 100).is_empty());
}

#[test]
fn a_large_segment_is_not_rewritten_for_a_few_small_ones() {
    let mut live: Vec<(String, usize)> = (0..7).map(|i| (format!("s{i}"), 33_000 + i)).collect();
    live.push(("big".into(), 264_000));
    let live: Vec<(&str, usize)> = live.iter().map(|(i, r)| (i.as_str(), *r)).collect();
    let picked = merge_pick(&live, 1_000_000);
    assert_eq!(picked.len(), 7, "{picked:?}");
    assert!(!picked.contains("big"));
    // Once the small ones hold as many rows as it, it joins.
    let live = [("a", 100), ("b", 150), ("big", 250), ("c", 600)];
    assert_eq!(ids(&merge_pick(&live, 1_000)), ["a", "b", "big"]);
}

#[test]
fn one_merge_writes_at_most_four_outputs() {
    let live: Vec<(String, usize)> = (0..40).map(|i| (format!("s{i:02}"), 30)).collect();
    let live: Vec<(&str, usize)> = live.iter().map(|(i, r)| (i.as_str(), *r)).collect();
    let picked = merge_pick(&live, 100);
    let rows: usize = picked.len() * 30;
    assert!(rows.div_ceil(100) <= 4 && picked.len() == 13, "{} picked", picked.len());
}

/// Folds of 20k–45k rows (a bulk load's compaction rounds) into a namespace
/// merged as `compact_locked` does (once there are 8 segments, outputs filled
/// to the cap first): (rows rewritten by merges, segments at the end, most
/// segments at once).
fn ingest(total: usize, cap: usize) -> (usize, usize, usize) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut segs, mut done, mut rewritten, mut most) = (Vec::<usize>::new(), 0, 0, 0);
    while done < total {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let fold = (20_000 + (seed >> 33) as usize % 25_000).min(total - done);
        done += fold;
        segs.push(fold);
        while segs.len() >= 8 {
            let names: Vec<String> = (0..segs.len()).map(|i| format!("{i:04}")).collect();
            let live: Vec<(&str, usize)> =
                names.iter().map(String::as_str).zip(segs.iter().copied()).collect();
            let picked = merge_pick(&live, cap);
            if picked.is_empty() {
                break;
            }
            let rows: usize = live.iter().filter(|(n, _)| picked.contains(*n)).map(|(_, r)| r).sum();
            segs = live.iter().filter(|(n, _)| !picked.contains(*n)).map(|(_, r)| *r).collect();
            segs.extend(std::iter::repeat_n(cap, rows / cap));
            segs.extend(Some(rows % cap).filter(|r| *r > 0));
            rewritten += rows;
        }
        most = most.max(segs.len());
    }
    (rewritten, segs.len(), most)
}

#[test]
fn an_ingest_rewrites_each_row_a_few_times() {
    // Taking the large segment into every merge (and repacking segments near the cap)
    // rewrote 2.37M rows for these 1M, ending on 5 segments; 102M rows for 10M (ten times
    // the data), ending on 10; 2.07M for 1M under the small cap, ending on 10.
    let (rewritten, segments, most) = ingest(1_000_000, 1_000_000);
    assert!(rewritten < 1_500_000 && segments <= 8 && most <= 8, "{rewritten} {segments} {most}");
    let (rewritten, segments, most) = ingest(10_000_000, 1_000_000);
    assert!(rewritten < 30_000_000 && segments <= 20 && most <= 20, "{rewritten} {segments} {most}");
    // Under a memory budget's small cap, segments fill to half of it at least.
    let (rewritten, segments, _) = ingest(1_000_000, 100_000);
    assert!(rewritten < 1_200_000 && segments <= 15, "{rewritten} {segments}");
}
