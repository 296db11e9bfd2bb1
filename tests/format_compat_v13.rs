//! Format compatibility of what stop 42 (issue 34) added, frozen in `tests/fixtures/v13/`,
//! written once by `write_v13_fixtures` and never regenerated:
//! - `named_cold.bin`, a named cold IVF section (segment kind 24, `storage-format.md` 11.8): it
//!   must parse to the attribute, shape and lists built here, and the builder must write
//!   exactly its bytes (canonical and deterministic);
//! - `wal_batch_in_any.bin`, a WAL batch with flag bit 2 (`WAL_FLAG_IN_ANY_ELEMENT`, 3.1) whose
//!   `delete_by_filter` is an `In` on an array attribute: it decodes to the batch built here
//!   (the flag kept), and encoding that batch gives its bytes.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_v13::write_v13_fixtures`

use std::path::PathBuf;

use serde_json::json;
use tidepool::format::wal::{WalBatch, WAL_APPLY_FLAGS, WAL_FLAG_IN_ANY_ELEMENT};
use tidepool::index::vector::ann::AnnParams;
use tidepool::index::vector::coldnamed::{self, NamedColdHead};
use tidepool::index::vector::distance::Metric;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v13").join(name)
}

/// 1,100 rows of 6 dims in a few clusters (every row holds the attribute), cosine.
fn input() -> Vec<f32> {
    (0..1100 * 6).map(|i| ((i / 6 % 9) as f32 + 1.0) * (((i * 31) % 17) as f32 / 17.0 + 0.5)).collect()
}

fn built() -> Vec<u8> {
    let params = AnnParams { threads: 1, ..AnnParams::default() };
    coldnamed::build("body_vec", 6, Metric::CosineDistance, &input(), &params).expect("a section")
}

#[test]
fn v13_named_cold_section_reads_back() {
    let path = fixture_path("named_cold.bin");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    assert_eq!(built(), bytes, "the builder is canonical");
    let h = NamedColdHead::parse(&bytes).unwrap();
    assert_eq!(h.attr(), "body_vec");
    let ivf = h.ivf();
    assert_eq!((ivf.rows(), ivf.dim(), ivf.metric()), (1100, 6, Metric::CosineDistance));
    assert!(ivf.default_nprobe() >= 1 && ivf.default_nprobe() <= ivf.nlist());
    let v = input();
    let mut seen = 0;
    for c in 0..ivf.nlist() {
        let r = ivf.list_range(c);
        let block = &bytes[(h.ivf_at() + r.start) as usize..(h.ivf_at() + r.end) as usize];
        let list = ivf.open_list(c, block).unwrap();
        for (row, x) in list.rows.iter().zip(list.vectors.chunks_exact(6)) {
            assert_eq!(x, &v[*row as usize * 6..*row as usize * 6 + 6]);
            seen += 1;
        }
    }
    assert_eq!(seen, 1100);
}

fn in_any_batch() -> WalBatch {
    let body = json!({"delete_by_filter": ["numbers", "In", [2, 4]]});
    let req = tidepool::engine::WriteRequest::from_json(&body).unwrap();
    WalBatch { seq: 7, created_at_ms: 1_764_000_000_000, requests: vec![req.record], flags: WAL_APPLY_FLAGS }
}

#[test]
fn v13_wal_batch_keeps_its_in_flag() {
    let path = fixture_path("wal_batch_in_any.bin");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    let b = WalBatch::decode(&bytes).unwrap();
    assert_ne!(b.flags & WAL_FLAG_IN_ANY_ELEMENT, 0, "the flag is kept with the decoded batch");
    assert_eq!(b, in_any_batch());
    assert_eq!(in_any_batch().encode(), bytes, "the encoding is canonical");
}

#[test]
#[ignore = "writes fixtures; run once with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v13_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        return;
    }
    for (name, bytes) in [("named_cold.bin", built()), ("wal_batch_in_any.bin", in_any_batch().encode())] {
        let path = fixture_path(name);
        if !path.exists() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
    }
}
