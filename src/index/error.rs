//! The one error type of the index modules: every section reader (ANN, graph, cold IVF, text,
//! attribute, sparse) reports bad bytes as an [`IndexError`] with a kind (what went wrong) and
//! the section it happened in (which gives the message). No I/O happens below `index`, so there
//! is no underlying source error to carry.
//!
//! Invariants: constructing an error never allocates (the detail is a `&'static str`), so a
//! reader may build and drop errors on a hot path; the `Display` text of each (section, kind)
//! pair is the text the per-module error types printed before they were merged.

use std::fmt;

/// The index section an error was found in (it names the section in the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSection {
    /// The dense-vector sections: IVF-SQ8 (`ann`), graph and cold IVF.
    Ann,
    /// A full-text (BM25) section.
    Text,
    /// An attribute (filter) index section.
    Attribute,
    /// A sparse-vector section.
    Sparse,
    /// A MUVERA (multi-vector) section.
    Muvera,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexErrorKind {
    /// Structurally invalid bytes; the detail says which check failed.
    Corrupt(&'static str),
    /// The stored crc32c does not match the bytes.
    Checksum,
    /// A version (or index kind) this build cannot read.
    Unsupported {
        /// Stored version.
        version: u32,
        /// Stored index kind (0 where the section has none).
        kind: u8,
    },
}

/// An index section could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexError {
    section: IndexSection,
    kind: IndexErrorKind,
}

impl IndexError {
    /// An error of `kind` in `section`.
    pub const fn new(section: IndexSection, kind: IndexErrorKind) -> Self {
        IndexError { section, kind }
    }
    /// Structurally invalid bytes in `section`.
    pub const fn corrupt(section: IndexSection, what: &'static str) -> Self {
        IndexError::new(section, IndexErrorKind::Corrupt(what))
    }
    /// What went wrong.
    pub fn kind(&self) -> IndexErrorKind {
        self.kind
    }
    /// The section it went wrong in.
    pub fn section(&self) -> IndexSection {
        self.section
    }
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IndexErrorKind::{Checksum, Corrupt, Unsupported};
        use IndexSection::{Ann, Attribute, Sparse, Text};
        match (self.section, self.kind) {
            (Ann, Corrupt(what)) => write!(f, "corrupt ann section: {what}"),
            (Text, Corrupt(what)) => write!(f, "corrupt text index: {what}"),
            (Attribute, Corrupt(what)) => write!(f, "corrupt attribute index: {what}"),
            (Sparse, Corrupt(what)) => write!(f, "corrupt sparse section: {what}"),
            (IndexSection::Muvera, Corrupt(what)) => write!(f, "corrupt muvera section: {what}"),
            (Ann, Checksum) => write!(f, "ann section checksum mismatch"),
            (Ann, Unsupported { version, kind }) => {
                write!(f, "unsupported ann section (version {version}, kind {kind})")
            }
            (Text, Unsupported { version, .. }) => write!(f, "unsupported text index version {version}"),
            (section, Checksum) => write!(f, "{section:?} index section checksum mismatch"),
            (section, Unsupported { version, kind }) => {
                write!(f, "unsupported {section:?} index section (version {version}, kind {kind})")
            }
        }
    }
}

impl std::error::Error for IndexError {}
