//! Format compatibility of the named cold IVF section (segment kind 24, `storage-format.md`
//! 11.8): `tests/fixtures/v13/named_cold.bin` was written once by `write_v13_fixtures` and is
//! never regenerated. It must parse to the attribute, shape and lists built here, and the
//! builder must write exactly its bytes (the encoding is canonical and deterministic).
//!
//! To write a missing fixture (an existing file is never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test format_compat_named_cold -- --ignored write_v13_fixtures`

use std::path::PathBuf;

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

#[test]
#[ignore = "writes fixtures; run once with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v13_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        return;
    }
    let path = fixture_path("named_cold.bin");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, built()).unwrap();
    }
}
