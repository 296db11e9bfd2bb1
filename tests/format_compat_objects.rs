//! Format compatibility of the small protocol objects: the GC tombstone body
//! (`storage-format.md` 9.4, `format/tombstone.rs`) and the sync lease record
//! (12.4, `format/lease.rs`).
//!
//! Invariants guarded here:
//! - The frozen fixtures under `tests/fixtures/v9/` were written by the
//!   encoders of the build before these objects moved into `format/` (a
//!   manifest GC pass and `sync::lease::acquire`, on a fixed clock) and are
//!   never regenerated: they decode to the content below, forever.
//! - Today's encoders write those bytes exactly (the encodings did not
//!   change), and damaged copies are refused rather than misread.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_objects::write_v9_fixtures`

use crate::fixtures;

use fixtures::{fixture_dir, read_fixture, write_missing};
use tidepool::format::lease::Lease;
use tidepool::format::tombstone::Tombstone;

/// The fixed clock the fixtures were written at.
const AT_MS: u64 = 1_764_000_000_000;

fn v9_tombstone() -> Tombstone {
    Tombstone { generation: 1, collected_at_ms: AT_MS }
}

fn v9_lease() -> Lease {
    Lease { epoch: 1, node: "edge-1".into(), expires_at_ms: AT_MS + 90_000 }
}

fn v9_sweep_lease() -> Lease {
    Lease { epoch: 1, node: "node-b.example".into(), expires_at_ms: AT_MS + 86_400_000 }
}

#[test]
fn v9_tombstone_fixture_reads_back() {
    let bytes = read_fixture("v9", "tombstone.gc");
    assert_eq!(Tombstone::decode(&bytes).unwrap(), v9_tombstone());
    assert_eq!(bytes, b"{\"magic\":\"tidepool.gc\",\"generation\":1,\"collected_at_ms\":1764000000000}\n");
}

#[test]
fn v9_lease_fixtures_read_back() {
    assert_eq!(Lease::decode(&read_fixture("v9", "lease.lease")).unwrap(), v9_lease());
    assert_eq!(Lease::decode(&read_fixture("v9", "lease_sweep.lease")).unwrap(), v9_sweep_lease());
}

#[test]
fn current_encoders_reproduce_the_v9_fixtures_byte_for_byte() {
    assert_eq!(v9_tombstone().encode(), read_fixture("v9", "tombstone.gc"));
    assert_eq!(v9_lease().encode(), read_fixture("v9", "lease.lease"));
    assert_eq!(v9_sweep_lease().encode(), read_fixture("v9", "lease_sweep.lease"));
}

#[test]
fn damaged_v9_fixtures_are_refused_not_misread() {
    for name in ["lease.lease", "lease_sweep.lease"] {
        let good = read_fixture("v9", name);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            assert!(Lease::decode(&bad).is_err(), "{name}: flip at {i}");
        }
    }
    let good = read_fixture("v9", "tombstone.gc");
    for cut in 0..good.len() {
        assert!(Tombstone::decode(&good[..cut]).is_err(), "tombstone cut at {cut}");
    }
}

/// Writes the v9 fixtures that do not exist yet. Run manually (see the module
/// doc); never overwrites a file, since released fixtures are frozen.
#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v9_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v9");
    std::fs::create_dir_all(&dir).unwrap();
    let files = vec![
        ("tombstone.gc", v9_tombstone().encode()),
        ("lease.lease", v9_lease().encode()),
        ("lease_sweep.lease", v9_sweep_lease().encode()),
    ];
    write_missing(&dir, files);
}
