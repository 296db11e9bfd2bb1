//! Object-storage key layout (see `storage-format.md`, "Key layout").
//!
//! ```text
//! {org}/{project}/namespaces/{ns}/CURRENT                       generation hint
//! {org}/{project}/namespaces/{ns}/manifests/{gen:020}.json      immutable manifest
//! {org}/{project}/namespaces/{ns}/manifests/{gen:020}.gc        GC tombstone of a collected manifest
//! {org}/{project}/namespaces/{ns}/wal/{seq:020}-{token}.wal      immutable WAL batch
//! {org}/{project}/namespaces/{ns}/schemas/{gen:020}-{cid}.json  immutable schema object
//! {org}/{project}/namespaces/{ns}/segments/{id}/{file}           immutable segment files
//! ```
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
    /// The manifest of a generation.
    pub fn manifest_key(&self, generation: u64) -> String {
        format!("{}manifests/{generation:020}.json", self.prefix())
    }
    /// The GC tombstone of a collected manifest generation.
    pub fn manifest_tombstone_key(&self, generation: u64) -> String {
        format!("{}manifests/{generation:020}.gc", self.prefix())
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
    let file = key.rsplit('/').next()?;
    let digits = file.strip_suffix(".json")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
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
