//! Frozen fixture files for the format compatibility tests (`tests/format_compat*.rs`).
//!
//! Invariant: a released fixture is never overwritten: [`write_missing`] writes only files that
//! do not exist yet.

#![allow(dead_code)]

use std::path::PathBuf;

/// `tests/fixtures/{version}`.
pub fn fixture_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(version)
}

/// The bytes of fixture `name` of `version` (panics, naming it, when it is missing).
pub fn read_fixture(version: &str, name: &str) -> Vec<u8> {
    let path = fixture_dir(version).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

/// Write the fixture files that do not exist yet (released fixtures are frozen: an existing
/// file is never overwritten).
pub fn write_missing(dir: &std::path::Path, files: Vec<(&str, Vec<u8>)>) {
    for (name, bytes) in files {
        let path = dir.join(name);
        if path.exists() {
            eprintln!("keeping existing {}", path.display());
            continue;
        }
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
