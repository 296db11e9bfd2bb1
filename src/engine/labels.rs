//! Namespace labels: key/value pairs an operator attaches to a namespace
//! (`PATCH /v1/namespaces/{ns}/metadata {"labels": {...}}`, or `labels` in a
//! write body), shown in its metadata and used to filter the listing
//! (`GET /v1/namespaces?label=k:v`); and the namespace's `read_only` flag
//! (`PATCH .../metadata {"read_only": bool}`), changed the same way.
//!
//! Invariants:
//! - `read_only` lives in the manifest too (`Manifest::read_only`), so branches, copies and sync
//!   carry it; while it is set the write path (`engine/write.rs`, which schema changes take too)
//!   and namespace deletion refuse with `ReadOnly` (403) under the commit lock, and a
//!   deduplicated retry of an earlier write still answers as before.
//! - Labels live in the manifest (`Manifest::labels`): a label change is one
//!   generation committed through the commit unit — on its own with no new
//!   object ([`Engine::set_labels`]), or in the generation of the write that
//!   carries it (`WriteRequest::labels`, `engine/write.rs`); every later
//!   generation, branch, copy and snapshot keeps them.
//! - A key is 1–63 of `[a-z0-9_.-]` starting with a letter or digit; a value
//!   is at most 255 bytes of `[A-Za-z0-9_.:/-]` (no `,`: the listing filter
//!   separates pairs with commas); at most [`MAX_LABELS`] per namespace.
//!   Anything else is `InvalidInput` and changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::commit::{CommitError, Derived, MAX_COMMIT_ATTEMPTS};
use super::{set_cached, Engine, EngineError, Snapshot};
use crate::format::manifest::Manifest;
use crate::layout::NsPath;

/// Most labels one namespace carries.
pub const MAX_LABELS: usize = 64;

/// Changes to a namespace's labels: a value sets the key, `None` removes it.
pub type LabelChanges = BTreeMap<String, Option<String>>;

fn valid_key(k: &str) -> bool {
    (1..=63).contains(&k.len())
        && k.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 255 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
}

/// Check every change; the first invalid one is the error.
pub fn validate_changes(changes: &LabelChanges) -> Result<(), EngineError> {
    for (k, v) in changes {
        if !valid_key(k) {
            return Err(EngineError::invalid_input(format!(
                "label key {k:?} must be 1-63 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
            )));
        }
        if v.as_deref().is_some_and(|v| !valid_value(v)) {
            return Err(EngineError::invalid_input(format!(
                "label {k:?}: a value is at most 255 characters of A-Z, a-z, 0-9, '_', '.', ':', '/', '-'"
            )));
        }
    }
    Ok(())
}

/// `labels` with `changes` applied, or an error past [`MAX_LABELS`].
pub(super) fn applied(
    labels: &BTreeMap<String, String>,
    changes: &LabelChanges,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut out = labels.clone();
    for (k, v) in changes {
        match v {
            Some(v) => out.insert(k.clone(), v.clone()),
            None => out.remove(k),
        };
    }
    if out.len() > MAX_LABELS {
        return Err(EngineError::invalid_input(format!("a namespace carries at most {MAX_LABELS} labels")));
    }
    Ok(out)
}

/// Whether `m` carries every `key:value` pair of `filter`.
pub fn matches(m: &Manifest, filter: &[(String, String)]) -> bool {
    filter.iter().all(|(k, v)| m.labels.get(k) == Some(v))
}

impl Engine {
    /// Apply label changes to an existing namespace: one generation, no new
    /// object. Returns the committed manifest.
    pub async fn set_labels(
        &self,
        path: &NsPath,
        changes: &LabelChanges,
    ) -> Result<Arc<Manifest>, EngineError> {
        validate_changes(changes)?;
        self.commit_settings(path, |live, next| {
            next.labels = applied(&live.labels, changes)?;
            Ok(())
        })
        .await
    }

    /// Make an existing namespace read-only, or writable again: one generation, no new object.
    pub async fn set_read_only(&self, path: &NsPath, read_only: bool) -> Result<Arc<Manifest>, EngineError> {
        self.commit_settings(path, |_, next| {
            next.read_only = read_only;
            Ok(())
        })
        .await
    }

    /// Commit the live manifest with `change` applied as the next generation (same content).
    async fn commit_settings(
        &self,
        path: &NsPath,
        change: impl Fn(&Manifest, &mut Manifest) -> Result<(), EngineError>,
    ) -> Result<Arc<Manifest>, EngineError> {
        let h = self.handle(path);
        let _g = h.commit_lock.lock().await;
        let before = self.reload(&h).await?;
        let not_found = || EngineError::not_found(format!("namespace {} not found", path.ns()));
        let (now, ids) = (self.clock.now_ms(), &self.ids);
        let committed = self
            .log(path)
            .commit(
                before.manifest.clone(),
                &[],
                MAX_COMMIT_ATTEMPTS,
                |a| self.backoff(a),
                |base| {
                    let live = base.filter(|m| !m.deleted).ok_or_else(not_found)?;
                    let mut next = live.clone();
                    change(live, &mut next)?;
                    next.previous_generation = Some(live.generation);
                    next.generation = live.generation + 1;
                    next.data_generation = Some(live.content_version());
                    next.commit_id = ids.next_token();
                    next.committed_at_ms = now;
                    Ok(Derived::Commit(next))
                },
            )
            .await;
        match committed {
            Ok(c) => {
                let m = Arc::new(c.manifest);
                // The rows are those of the base the commit unit used; reload
                // when it rebased on a generation this process had not seen.
                if before.manifest.as_ref().map(|b| b.generation + 1) == Some(m.generation) {
                    set_cached(&h, Snapshot { manifest: Some(m.clone()), state: before.state.clone() });
                } else {
                    super::clear_cached(&h);
                }
                Ok(m)
            }
            Err(CommitError::Lost) => {
                super::clear_cached(&h);
                Err(EngineError::conflict(format!(
                    "namespace {} is being written concurrently; retry",
                    path.ns()
                )))
            }
            Err(CommitError::Failed(e)) => {
                super::clear_cached(&h);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_the_cap_are_checked() {
        let ok: LabelChanges = [("env".to_owned(), Some("prod-1".to_owned()))].into();
        assert!(validate_changes(&ok).is_ok());
        for bad in ["", "Env", "-x", "a b", &"k".repeat(64)] {
            let c: LabelChanges = [(bad.to_owned(), Some("v".to_owned()))].into();
            assert!(validate_changes(&c).is_err(), "{bad:?}");
        }
        let comma: LabelChanges = [("k".to_owned(), Some("a,b".to_owned()))].into();
        assert!(validate_changes(&comma).is_err());
        let many: LabelChanges = (0..=MAX_LABELS).map(|i| (format!("k{i}"), Some("v".to_owned()))).collect();
        assert!(applied(&BTreeMap::new(), &many).is_err());
        let set = applied(&BTreeMap::new(), &ok).unwrap();
        let removed = applied(&set, &[("env".to_owned(), None)].into()).unwrap();
        assert!(removed.is_empty());
    }
}
