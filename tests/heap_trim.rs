//! Freed heap memory goes back to the OS: after many row-sized allocations are
//! freed around a few survivors (what a compaction leaves when it drops an
//! overlay), `heap::give_back_freed` lowers the process's anonymous RSS.
//! One test in this binary, so no other test allocates meanwhile.

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn freed_rows_are_given_back_to_the_os() {
    // 150,000 rows of 1,536 bytes (a 384-d vector), each followed by a small
    // allocation that outlives it, as the allocator sees an overlay.
    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(150_000);
    let mut survivors: Vec<Box<[u8; 24]>> = Vec::with_capacity(150_000);
    for i in 0..150_000u32 {
        rows.push(vec![(i % 251) as u8; 1536]);
        if i % 8 == 0 {
            survivors.push(Box::new([1; 24]));
        }
    }
    let held = rss_anon_kib();
    drop(rows);
    let freed = rss_anon_kib();
    tidepool::heap::give_back_freed();
    let trimmed = rss_anon_kib();
    assert!(
        trimmed + 100 * 1024 < held,
        "anon RSS {held} KiB with the rows, {freed} KiB after freeing them, {trimmed} KiB after give_back_freed"
    );
    assert_eq!(survivors.iter().map(|b| b[0] as usize).sum::<usize>(), survivors.len());
}
