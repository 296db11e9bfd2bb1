//! Object-storage key layout (see `storage-format.md`, "Key layout").
//!
//! ```text
//! {org}/{project}/namespaces/{ns}/CURRENT                       generation hint
//! {org}/{project}/namespaces/{ns}/manifests/{gen:020}.json      immutable manifest
//! {org}/{project}/namespaces/{ns}/manifests/{gen:020}.gc        GC tombstone of a collected manifest
//! {org}/{project}/namespaces/{ns}/wal/{seq:020}-{token}.wal      immutable WAL batch
//! {org}/{project}/namespaces/{ns}/schemas/{gen:020}-{cid}.json  immutable schema object
//! {org}/{project}/namespaces/{ns}/segments/{id}/{file}           immutable segment files
//! _tidepool/sync/leases/{org}/{project}/{ns}/{epoch:020}.lease   sync push lease (a sync remote only)
//! _tidepool/sync/sweep-lease/{epoch:020}.lease                   remote sweep lease (a sync remote only)
//! ```
//!
//! Objects named by a sequence number (manifests and their GC tombstones,
//! sync lease epochs) are named through one [`Series`], the naming
//! `store::seqlog::SeqLog` works with.
//!
//! Invariants:
//! - Numbers are zero-padded to 20 digits, so listing order equals numeric
//!   order and every u64 fits.
//! - Every component is validated by [`NsPath::new`]: ASCII letters, digits,
//!   `-`, `_`, `.`; no `..`; not starting with `.`; 1..=128 bytes. This is the
//!   path-traversal defence for the local-directory store.
//! - Ownership: a namespace only ever deletes keys for which
//!   [`NsPath::owns`] is true; a manifest may reference keys of other
//!   namespaces of the same org/project (branches), never delete them.

use std::fmt;

/// File name of the generation hint.
pub const CURRENT_FILE: &str = "CURRENT";
/// Suffix of a manifest (`manifests/{gen:020}.json`).
pub const MANIFEST_SUFFIX: &str = ".json";
/// Suffix of a manifest's GC tombstone (`manifests/{gen:020}.gc`).
pub const TOMBSTONE_SUFFIX: &str = ".gc";
/// Suffix of a sync lease epoch (`{epoch:020}.lease`, `storage-format.md` 12.4).
pub const LEASE_SUFFIX: &str = ".lease";

/// Where the sync push leases live in a sync remote (12.4).
pub const SYNC_LEASES_DIR: &str = "_tidepool/sync/leases/";
/// Where the remote sweep's lease epochs live in a sync remote (12.5).
pub const SWEEP_LEASE_DIR: &str = "_tidepool/sync/sweep-lease/";

/// How a series of sequence-numbered objects is named: object `n` is
/// `{dir}{n:020}{object suffix}` and, in a series with tombstones, its
/// tombstone is `{dir}{n:020}{tombstone suffix}`. Every key of a series is
/// directly under `dir` (which ends with `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    dir: String,
    object: &'static str,
    tombstone: Option<&'static str>,
}

impl Series {
    /// The series of objects `{dir}{n:020}{object}` (tombstones
    /// `{dir}{n:020}{tombstone}` when given).
    pub fn new(dir: impl Into<String>, object: &'static str, tombstone: Option<&'static str>) -> Series {
        Series { dir: dir.into(), object, tombstone }
    }

    /// The lease epochs under `dir` (12.4): no tombstones.
    pub fn leases(dir: impl Into<String>) -> Series {
        Series::new(dir, LEASE_SUFFIX, None)
    }

    /// The directory every key of the series is in.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Whether the series has tombstones.
    pub fn has_tombstones(&self) -> bool {
        self.tombstone.is_some()
    }

    /// The key of object `n`.
    pub fn key(&self, n: u64) -> String {
        format!("{}{n:020}{}", self.dir, self.object)
    }

    /// The key of object `n`'s tombstone (None: the series has none).
    pub fn tombstone_key(&self, n: u64) -> Option<String> {
        self.tombstone.map(|t| format!("{}{n:020}{t}", self.dir))
    }

    /// The number of an object key of this series.
    pub fn number_of(&self, key: &str) -> Option<u64> {
        self.parse(key, self.object)
    }

    /// The number of a tombstone key of this series.
    pub fn tombstone_number_of(&self, key: &str) -> Option<u64> {
        self.parse(key, self.tombstone?)
    }

    fn parse(&self, key: &str, suffix: &str) -> Option<u64> {
        numbered_file(key.strip_prefix(&self.dir)?, suffix)
    }
}

/// The number of a file name `{n:020}{suffix}` (exactly 20 digits).
fn numbered_file(file: &str, suffix: &str) -> Option<u64> {
    let digits = file.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// A fully qualified namespace: org / project / namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsPath {
    org: String,
    project: String,
    ns: String,
}

/// A bad org, project or namespace name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} name {name:?}: {why}")]
pub struct NameError {
    what: &'static str,
    name: String,
    why: &'static str,
}

/// Validate one path component.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let err = |why| Err(NameError { what, name: name.to_owned(), why });
    if name.is_empty() || name.len() > 128 {
        return err("must be 1 to 128 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return err("may only contain ASCII letters, digits, '-', '_' and '.'");
    }
    if name.starts_with('.') || name.contains("..") {
        return err("must not start with '.' or contain '..'");
    }
    Ok(())
}

impl NsPath {
    /// Build and validate a namespace path.
    pub fn new(org: &str, project: &str, ns: &str) -> Result<NsPath, NameError> {
        validate_name("org", org)?;
        validate_name("project", project)?;
        validate_name("namespace", ns)?;
        Ok(NsPath { org: org.to_owned(), project: project.to_owned(), ns: ns.to_owned() })
    }

    /// Parse `org/project/namespace`.
    pub fn parse(s: &str) -> Result<NsPath, NameError> {
        let mut it = s.splitn(3, '/');
        let (Some(o), Some(p), Some(n)) = (it.next(), it.next(), it.next()) else {
            return Err(NameError {
                what: "namespace path",
                name: s.to_owned(),
                why: "must be org/project/namespace",
            });
        };
        NsPath::new(o, p, n)
    }

    /// The org.
    pub fn org(&self) -> &str {
        &self.org
    }
    /// The project.
    pub fn project(&self) -> &str {
        &self.project
    }
    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// `org/project`, the scope of refcounts.
    pub fn project_id(&self) -> String {
        format!("{}/{}", self.org, self.project)
    }

    /// `{org}/{project}/namespaces/{ns}/`.
    pub fn prefix(&self) -> String {
        format!("{}/{}/namespaces/{}/", self.org, self.project, self.ns)
    }
    /// `{org}/{project}/namespaces/`.
    pub fn project_namespaces_prefix(org: &str, project: &str) -> String {
        format!("{org}/{project}/namespaces/")
    }
    /// The generation hint key.
    pub fn current_key(&self) -> String {
        format!("{}{CURRENT_FILE}", self.prefix())
    }
    /// Prefix of all manifests.
    pub fn manifests_prefix(&self) -> String {
        format!("{}manifests/", self.prefix())
    }
    /// The manifests and their GC tombstones, as one series (5.1–5.3).
    pub fn manifest_series(&self) -> Series {
        Series::new(self.manifests_prefix(), MANIFEST_SUFFIX, Some(TOMBSTONE_SUFFIX))
    }
    /// The manifest of a generation.
    pub fn manifest_key(&self, generation: u64) -> String {
        format!("{}manifests/{generation:020}{MANIFEST_SUFFIX}", self.prefix())
    }
    /// The GC tombstone of a collected manifest generation.
    pub fn manifest_tombstone_key(&self, generation: u64) -> String {
        format!("{}manifests/{generation:020}{TOMBSTONE_SUFFIX}", self.prefix())
    }
    /// A WAL batch object.
    pub fn wal_key(&self, seq: u64, token: &str) -> String {
        format!("{}wal/{seq:020}-{token}.wal", self.prefix())
    }
    /// A schema object (4.5): introduced by `generation`, in the commit
    /// attempt `commit_id`.
    pub fn schema_key(&self, generation: u64, commit_id: &str) -> String {
        format!("{}schemas/{generation:020}-{commit_id}.json", self.prefix())
    }
    /// Where the sync push lease epochs of this namespace live in a sync
    /// remote (12.4): outside every namespace prefix.
    pub fn lease_dir(&self) -> String {
        format!("{SYNC_LEASES_DIR}{}/{}/{}/", self.org, self.project, self.ns)
    }
    /// A file of a segment.
    pub fn segment_key(&self, segment_id: &str, file: &str) -> String {
        format!("{}segments/{segment_id}/{file}", self.prefix())
    }
    /// Whether this namespace owns (may delete) `key`.
    pub fn owns(&self, key: &str) -> bool {
        key.starts_with(&self.prefix())
    }
}

impl fmt::Display for NsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.project, self.ns)
    }
}

/// The generation of a manifest key (`.../manifests/{gen:020}.json`).
pub fn manifest_generation(key: &str) -> Option<u64> {
    numbered_file(key.rsplit('/').next()?, MANIFEST_SUFFIX)
}

/// The generation of a GC tombstone key (`.../manifests/{gen:020}.gc`).
pub fn tombstone_generation(key: &str) -> Option<u64> {
    numbered_file(key.rsplit('/').next()?, TOMBSTONE_SUFFIX)
}

/// The sequence number of a WAL key (`.../wal/{seq:020}-{token}.wal`).
pub fn wal_seq(key: &str) -> Option<u64> {
    let file = key.rsplit('/').next()?;
    let stem = file.strip_suffix(".wal")?;
    let (digits, _token) = stem.split_once('-')?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// The namespace name of a key under `{org}/{project}/namespaces/`.
pub fn namespace_of_key<'a>(project_prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(project_prefix)?.split('/').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        let p = NsPath::new("acme", "search", "docs").unwrap();
        assert_eq!(p.current_key(), "acme/search/namespaces/docs/CURRENT");
        assert_eq!(p.manifest_key(7), "acme/search/namespaces/docs/manifests/00000000000000000007.json");
        assert_eq!(p.wal_key(42, "ab"), "acme/search/namespaces/docs/wal/00000000000000000042-ab.wal");
        assert_eq!(p.segment_key("s1", "data"), "acme/search/namespaces/docs/segments/s1/data");
    }

    #[test]
    fn listing_order_equals_numeric_order() {
        let p = NsPath::new("a", "b", "c").unwrap();
        assert!(p.manifest_key(9) < p.manifest_key(10));
        assert!(p.wal_key(9, "z") < p.wal_key(10, "a"));
        assert_eq!(manifest_generation(&p.manifest_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(wal_seq(&p.wal_key(u64::MAX, "t")), Some(u64::MAX));
        assert_eq!(manifest_generation(&p.manifest_tombstone_key(3)), None);
    }

    #[test]
    fn the_manifest_series_names_exactly_the_manifest_keys() {
        let p = NsPath::new("acme", "search", "docs").unwrap();
        let s = p.manifest_series();
        for g in [0, 1, 7, 10, u64::MAX] {
            assert_eq!(s.key(g), p.manifest_key(g));
            assert_eq!(s.tombstone_key(g), Some(p.manifest_tombstone_key(g)));
            assert_eq!(s.number_of(&p.manifest_key(g)), Some(g));
            assert_eq!(s.tombstone_number_of(&p.manifest_tombstone_key(g)), Some(g));
            assert_eq!(s.number_of(&p.manifest_tombstone_key(g)), None);
            assert_eq!(tombstone_generation(&p.manifest_tombstone_key(g)), Some(g));
        }
        assert_eq!(s.number_of("acme/search/namespaces/other/manifests/00000000000000000001.json"), None);
        assert_eq!(s.number_of(&format!("{}0000000000000000001.json", s.dir())), None, "19 digits");
        assert_eq!(s.number_of(&format!("{}+0000000000000000001.json", s.dir())), None, "a sign");
        let l = Series::leases(NsPath::new("a", "b", "c").unwrap().lease_dir());
        assert_eq!(l.key(3), "_tidepool/sync/leases/a/b/c/00000000000000000003.lease");
        let sweep = Series::leases(SWEEP_LEASE_DIR);
        assert_eq!(sweep.key(1), "_tidepool/sync/sweep-lease/00000000000000000001.lease");
        assert_eq!((l.tombstone_key(3), l.number_of(&l.key(3))), (None, Some(3)));
    }

    #[test]
    fn ownership_is_exact_prefix() {
        let base = NsPath::new("a", "b", "base").unwrap();
        let base2 = NsPath::new("a", "b", "base2").unwrap();
        let k = base.wal_key(1, "t");
        assert!(base.owns(&k));
        assert!(!base2.owns(&k));
    }

    #[test]
    fn names_are_validated() {
        assert!(NsPath::new("a", "b", "docs-v1.2_x").is_ok());
        for bad in ["", "a/b", "..", ".hidden", "a..b", "sp ace", &"x".repeat(129)] {
            assert!(NsPath::new("a", "b", bad).is_err(), "{bad:?}");
        }
        assert_eq!(NsPath::parse("a/b/c").unwrap().to_string(), "a/b/c");
        assert!(NsPath::parse("a/b").is_err());
    }
}
