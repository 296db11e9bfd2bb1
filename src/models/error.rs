//! The one error type of the model modules.
//!
//! Invariants: every error names the model directory it is about (and, where one file is at fault,
//! that file), so a daemon refusing to start can say which path to fix; loading and inference never
//! panic on bad files or inputs, they return one of these.

use std::path::PathBuf;

use super::ModelKind;

/// What went wrong, without the details (for callers that branch on it, e.g. an HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelErrorKind {
    /// The directory or one of its required files does not exist.
    Missing,
    /// A file exists but cannot be read or does not hold what it must.
    Damaged,
    /// A well-formed model this build cannot run (another architecture, activation, module).
    Unsupported,
    /// The model cannot do what was asked (embedding with a cross-encoder).
    WrongKind,
    /// A forward pass failed (a tokenizer error, non-finite output).
    Inference,
    /// Two models were configured under one name.
    Duplicate,
}

/// A model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The directory or a required file in it does not exist.
    #[error("model directory {}: {file} is missing", path.display())]
    Missing {
        /// The model directory.
        path: PathBuf,
        /// The file (relative to the directory), or "the directory" itself.
        file: String,
    },
    /// A file cannot be read or does not hold a usable model part.
    #[error("model directory {}: {file} is damaged: {detail}", path.display())]
    Damaged {
        /// The model directory.
        path: PathBuf,
        /// The file at fault, relative to the directory.
        file: String,
        /// Which check failed.
        detail: String,
        /// The underlying error (I/O, JSON, safetensors, tokenizer), where there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A well-formed model this build cannot run.
    #[error("model directory {}: unsupported: {detail}", path.display())]
    Unsupported {
        /// The model directory.
        path: PathBuf,
        /// What is not supported.
        detail: String,
    },
    /// The model's kind cannot do what was asked.
    #[error("model {name} ({}) is a {kind:?} model and cannot {wanted}", path.display())]
    WrongKind {
        /// The model's configured name.
        name: String,
        /// The model directory.
        path: PathBuf,
        /// What the model is.
        kind: ModelKind,
        /// What was asked of it ("embed texts").
        wanted: &'static str,
    },
    /// A forward pass failed.
    #[error("model {name} ({}): inference failed: {detail}", path.display())]
    Inference {
        /// The model's configured name.
        name: String,
        /// The model directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// Two models share a name.
    #[error("model name {name} is configured twice ({} and {})", first.display(), second.display())]
    Duplicate {
        /// The shared name.
        name: String,
        /// The first directory given for it.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
}

impl ModelError {
    /// What went wrong.
    pub fn kind(&self) -> ModelErrorKind {
        match self {
            ModelError::Missing { .. } => ModelErrorKind::Missing,
            ModelError::Damaged { .. } => ModelErrorKind::Damaged,
            ModelError::Unsupported { .. } => ModelErrorKind::Unsupported,
            ModelError::WrongKind { .. } => ModelErrorKind::WrongKind,
            ModelError::Inference { .. } => ModelErrorKind::Inference,
            ModelError::Duplicate { .. } => ModelErrorKind::Duplicate,
        }
    }

    /// The file `file` of `path` is damaged; `detail` says how.
    pub(crate) fn damaged(path: &std::path::Path, file: &str, detail: impl Into<String>) -> Self {
        ModelError::Damaged {
            path: path.to_path_buf(),
            file: file.to_string(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Like [`ModelError::damaged`], keeping the underlying error as the source.
    pub(crate) fn damaged_by(
        path: &std::path::Path,
        file: &str,
        detail: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ModelError::Damaged {
            path: path.to_path_buf(),
            file: file.to_string(),
            detail: detail.into(),
            source: Some(source.into()),
        }
    }

    /// The model in `path` needs something this build does not run.
    pub(crate) fn unsupported(path: &std::path::Path, detail: impl Into<String>) -> Self {
        ModelError::Unsupported { path: path.to_path_buf(), detail: detail.into() }
    }
}
