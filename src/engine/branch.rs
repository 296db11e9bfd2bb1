//! Copy-on-write branches, shallow copies and deep copies of namespaces.
//!
//! A branch (or shallow copy) of `src` at `dst` is one new manifest for `dst`
//! that references the very objects (WAL batches, segment files, deletion
//! sets, the schema object) the source's manifest references; nothing is read or copied, so it
//! costs the same for ten documents and ten million. A deep copy rewrites
//! every object under the destination's own prefix first, so the copy shares
//! nothing.
//!
//! Invariants (see `storage-format.md`, "Branches, copies and lineage"):
//! - Order: (deep copy: new objects →) refcounts of every referenced key +1
//!   in the project → conditional create of the destination's manifest →
//!   CURRENT. A crash anywhere leaks counts or objects, never loses them.
//! - After raising the counts a branch re-reads them: a key whose count is now
//!   below 2 had no other live holder when we raised it (it may be in the
//!   middle of being reclaimed), so the branch is refused and its increments
//!   are given back. Objects whose count was positive cannot reach zero while
//!   the branch holds its own reference.
//! - Source and destination are in the same org/project (refcounts are per
//!   project); they differ; the destination does not exist, was deleted, or
//!   holds no rows.
//! - Two-namespace operations take the project lock shared (repair takes it
//!   exclusively), then both commit locks in increasing `NsPath` order, so
//!   two concurrent forks in opposite directions cannot deadlock.
//! - Rows are addressed by segment-local positions, so no global row ids
//!   exist and a branch can never collide with rows it shares (issue 6
//!   item 3 holds by construction; `row_id_hwm` stays 0).
//! - Writes and compactions of either side afterwards only touch that side's
//!   manifest and prefix; deleting either side releases its references, and
//!   an object is physically deleted only at count zero, by its owner (or by
//!   repair's sweep).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value as Json;

use super::commit::{CommitError, Derived};
use super::labels::LabelChanges;
use super::request::{ForkFrom, ForkKind};
use super::{clear_cached, Engine, EngineError, ErrorKind, WriteResponse};
use crate::format::manifest::{Lineage, Manifest};
use crate::layout::NsPath;
use crate::ops::RowCounts;
use crate::store::StoreError;

/// What a branch or copy produced.
#[derive(Debug, Clone)]
pub struct ForkOutcome {
    /// The destination's committed manifest.
    pub manifest: Arc<Manifest>,
    /// The source generation it was taken from.
    pub source_generation: u64,
    /// Objects now shared with the source (branch / shallow copy).
    pub objects_shared: usize,
    /// Objects duplicated under the destination's prefix (deep copy).
    pub objects_copied: usize,
}

impl Engine {
    /// The per-project lock: branch, copy and restore hold it shared, repair
    /// holds it exclusively (so no refcount is raised for a manifest repair
    /// cannot see yet).
    pub(crate) fn project_lock(&self, project: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut map = self.project_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(project.to_owned()).or_default().clone()
    }

    /// Create a copy-on-write branch of `src` at `dst` (lineage recorded),
    /// as of `generation` (None: the newest).
    pub async fn branch_namespace(
        &self,
        src: &NsPath,
        dst: &NsPath,
        generation: Option<u64>,
    ) -> Result<ForkOutcome, EngineError> {
        self.fork(src, dst, ForkKind::Branch, generation).await
    }

    /// Copy `src` to `dst`: copy-on-write when `deep` is false (no lineage),
    /// otherwise every object is duplicated under `dst`'s prefix.
    pub async fn copy_namespace(
        &self,
        src: &NsPath,
        dst: &NsPath,
        deep: bool,
        generation: Option<u64>,
    ) -> Result<ForkOutcome, EngineError> {
        let kind = if deep { ForkKind::DeepCopy } else { ForkKind::ShallowCopy };
        self.fork(src, dst, kind, generation).await
    }

    /// The lineage of a namespace's newest generation (None: not a branch).
    pub async fn lineage(&self, path: &NsPath) -> Result<Option<Lineage>, EngineError> {
        Ok(self.latest_manifest(path).await?.filter(|m| !m.deleted).and_then(|m| m.lineage.clone()))
    }

    /// A write body carrying `branch_from_namespace` / `copy_from_namespace`.
    pub(crate) async fn write_fork(
        &self,
        dst: &NsPath,
        f: &ForkFrom,
        labels: &LabelChanges,
    ) -> Result<WriteResponse, EngineError> {
        let src = NsPath::new(dst.org(), dst.project(), &f.source)
            .map_err(|e| EngineError::caused_by(ErrorKind::InvalidInput, "source namespace", e))?;
        let out = self.fork_labelled(&src, dst, (f.kind, f.generation), labels).await?;
        Ok(WriteResponse {
            counts: RowCounts::default(),
            generation: out.manifest.generation,
            deduplicated: false,
            affected: None,
            bytes_written: 0,
            embedding: None,
        })
    }

    /// Branch, shallow copy or deep copy (see the module doc for the order).
    pub async fn fork(
        &self,
        src: &NsPath,
        dst: &NsPath,
        kind: ForkKind,
        generation: Option<u64>,
    ) -> Result<ForkOutcome, EngineError> {
        self.fork_labelled(src, dst, (kind, generation), &LabelChanges::new()).await
    }

    /// [`Engine::fork`] whose new generation also carries `labels` applied to the source's (a
    /// write that creates a namespace by branching or copying, with `labels`: one generation).
    async fn fork_labelled(
        &self,
        src: &NsPath,
        dst: &NsPath,
        (kind, generation): (ForkKind, Option<u64>),
        labels: &LabelChanges,
    ) -> Result<ForkOutcome, EngineError> {
        if src.org() != dst.org() || src.project() != dst.project() {
            return Err(EngineError::invalid_input(
                "source and destination must be in the same org/project (refcounts are per project)",
            ));
        }
        if src == dst {
            return Err(EngineError::invalid_input("source and destination namespaces must differ"));
        }
        let project = src.project_id();
        let plock = self.project_lock(&project);
        let _shared = plock.read().await;
        let (hs, hd) = (self.handle(src), self.handle(dst));
        let (first, second) = if src < dst { (&hs, &hd) } else { (&hd, &hs) };
        let _g1 = first.commit_lock.lock().await;
        let _g2 = second.commit_lock.lock().await;

        let source = self.manifest_at(src, generation).await?;
        // Checked before anything is raised or copied: a refused label change writes nothing.
        let new_labels = super::labels::applied(&source.labels, labels)?;
        let base = self.fork_destination_base(dst).await?;
        let keys = source.object_keys();

        let (manifest, held, copied) = match kind {
            ForkKind::Branch | ForkKind::ShallowCopy => {
                self.log(dst).hold_shared(&keys).await?;
                let lineage = (kind == ForkKind::Branch)
                    .then(|| Lineage { parent: src.to_string(), parent_generation: source.generation });
                let m = self.derived_manifest(&source, dst, base.as_deref(), lineage, None)?;
                (m, keys.clone(), 0)
            }
            ForkKind::DeepCopy => {
                let map = relocation_map(&keys, dst, &mut || self.ids.next_token())?;
                let written = self.copy_objects(&map).await?;
                let m = self.adopt_copies(&source, dst, base.as_deref(), &map, &written).await?;
                let n = written.len();
                (m, written, n)
            }
        };
        let committed = self.commit_fork(dst, base, &held, Manifest { labels: new_labels, ..manifest }).await;
        clear_cached(&hd);
        let manifest = committed?;
        Ok(ForkOutcome {
            manifest: Arc::new(manifest),
            source_generation: source.generation,
            objects_shared: if kind == ForkKind::DeepCopy { 0 } else { keys.len() },
            objects_copied: copied,
        })
    }

    /// The destination's newest manifest, refusing a destination with rows.
    pub(crate) async fn fork_destination_base(
        &self,
        dst: &NsPath,
    ) -> Result<Option<Arc<Manifest>>, EngineError> {
        let base = self.latest_manifest(dst).await?;
        if let Some(b) = base.as_ref().filter(|b| !b.deleted) {
            let state = self.snapshot(dst, true).await?;
            if !state.state.is_empty() || !b.segments.is_empty() {
                return Err(EngineError::precondition_failed(format!(
                    "destination namespace {} already exists and holds documents; delete it first",
                    dst.ns()
                )));
            }
        }
        Ok(base)
    }

    /// Copy every object of `map` (old key → new key), returning the new keys.
    /// On failure the objects written so far are deleted (best effort).
    async fn copy_objects(&self, map: &BTreeMap<String, String>) -> Result<Vec<String>, EngineError> {
        let mut written = Vec::with_capacity(map.len());
        for (from, to) in map {
            let step = async {
                let bytes = self.store.get(from).await.map_err(|e| match e {
                    StoreError::NotFound(k) => EngineError::corrupted(format!(
                        "the source references a missing object {k} (reclaimed, or a damaged store)"
                    )),
                    other => other.into(),
                })?;
                self.store.put(to, bytes).await.map_err(EngineError::from)
            };
            if let Err(e) = step.await {
                self.delete_quietly(&written).await;
                return Err(e);
            }
            written.push(to.clone());
        }
        Ok(written)
    }

    pub(crate) async fn delete_quietly(&self, keys: &[String]) {
        for k in keys {
            self.cache.invalidate(k);
            if let Err(e) = self.store.delete(k).await {
                tracing::warn!(key = %k, error = %e, "cleanup delete failed; the object leaks until repair");
            }
        }
    }

    /// `source` re-targeted at `dst`: next generation of `dst`, fresh commit
    /// id, timestamps now, keys optionally relocated.
    /// Steps 2–3 for objects just copied to `dst` under the relocation `map` (a deep copy, a
    /// restore): raise their refcounts, then derive the destination manifest. On failure the
    /// copies are undone — deleted while nothing counts them, released once counted — and the
    /// error returned.
    pub(crate) async fn adopt_copies(
        &self,
        source: &Manifest,
        dst: &NsPath,
        base: Option<&Manifest>,
        map: &BTreeMap<String, String>,
        written: &[String],
    ) -> Result<Manifest, EngineError> {
        let log = self.log(dst);
        if let Err(e) = log.raise(written).await {
            self.delete_quietly(written).await;
            return Err(e);
        }
        match self.derived_manifest(source, dst, base, None, Some(map)) {
            Ok(m) => Ok(m),
            Err(e) => {
                log.release(written.to_vec()).await;
                Err(e)
            }
        }
    }

    pub(crate) fn derived_manifest(
        &self,
        source: &Manifest,
        dst: &NsPath,
        base: Option<&Manifest>,
        lineage: Option<Lineage>,
        relocate: Option<&BTreeMap<String, String>>,
    ) -> Result<Manifest, EngineError> {
        let mut m = match relocate {
            Some(map) => rewrite_keys(source, map)?,
            None => source.clone(),
        };
        let now = self.clock.now_ms();
        m.namespace = dst.to_string();
        m.generation = base.map_or(1, |b| b.generation + 1);
        m.previous_generation = base.map(|b| b.generation);
        m.commit_id = self.ids.next_token();
        m.created_at_ms = now;
        m.committed_at_ms = now;
        m.deleted = false;
        m.next_wal_seq = source.next_wal_seq.max(base.map_or(0, |b| b.next_wal_seq));
        m.row_id_hwm = 0;
        m.data_generation = None;
        m.lineage = lineage;
        m.validate()
            .map_err(|e| EngineError::caused_by(ErrorKind::Internal, "derived manifest is invalid", e))?;
        Ok(m)
    }

    /// Publish a derived manifest (a branch, copy or restore) as the next
    /// generation of `dst` through the commit unit. No rebase: a destination
    /// written concurrently is a conflict (the objects `held` for it are
    /// released). After an unknown outcome they are kept (a leak at worst,
    /// reclaimed by repair, never a dangling manifest).
    pub(crate) async fn commit_fork(
        &self,
        dst: &NsPath,
        base: Option<Arc<Manifest>>,
        held: &[String],
        m: Manifest,
    ) -> Result<Manifest, EngineError> {
        let mut m = Some(m);
        let committed = self
            .log(dst)
            .commit(base, held, 1, |_| async {}, |_| Ok(m.take().map_or(Derived::Refuse, Derived::Commit)))
            .await;
        match committed {
            Ok(c) => Ok(c.manifest),
            Err(CommitError::Lost) => Err(EngineError::conflict(format!(
                "namespace {} was written concurrently while it was being created; retry",
                dst.ns()
            ))),
            Err(CommitError::Failed(e)) => Err(e),
        }
    }
}

/// The key a copied object of the same project gets under `dst`'s prefix:
/// the owner's prefix `{org}/{project}/namespaces/{owner}/` becomes `dst`'s,
/// the directory part of the tail (`wal/`, `segments/{id}/`) is kept, and the
/// file name gets the fresh `token`: a WAL batch `{seq:020}-{old}.wal` becomes
/// `{seq:020}-{token}.wal` (its seq stays readable from the key), any other
/// file `{name}` becomes `{token}-{name}`. So a copied object never lands on
/// a key that exists already (e.g. a deleted namespace's object that one of
/// its branches still references), and a failed copy may delete what it wrote.
pub(crate) fn relocate_key(key: &str, dst: &NsPath, token: &str) -> Result<String, EngineError> {
    let project_prefix = NsPath::project_namespaces_prefix(dst.org(), dst.project());
    let rest = key
        .strip_prefix(&project_prefix)
        .and_then(|r| r.split_once('/'))
        .map(|(_, rest)| rest)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            EngineError::corrupted(format!(
                "object key {key} is not under a namespace of project {project_prefix}"
            ))
        })?;
    let (dir, name) = rest.rsplit_once('/').map_or(("", rest), |(d, n)| (d, n));
    let renamed = match name.strip_suffix(".wal").and_then(|stem| stem.split_once('-')) {
        Some((seq, _)) if seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{seq}-{token}.wal")
        }
        _ => format!("{token}-{name}"),
    };
    let dir = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    Ok(format!("{}{dir}{renamed}", dst.prefix()))
}

/// old key → new key under `dst` for every key (fresh tokens from `token`);
/// refuses two keys landing on one new key.
pub(crate) fn relocation_map(
    keys: &[String],
    dst: &NsPath,
    token: &mut dyn FnMut() -> String,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut map = BTreeMap::new();
    let mut seen = HashMap::new();
    for k in keys {
        let to = relocate_key(k, dst, &token())?;
        if let Some(other) = seen.insert(to.clone(), k.clone()) {
            return Err(EngineError::internal(format!(
                "objects {other} and {k} would both be copied to {to}"
            )));
        }
        map.insert(k.clone(), to);
    }
    Ok(map)
}

/// Replace every object key of the manifest's `wal`, `segments` and `schema_ref` by its
/// image in `map` (through the JSON form, so every key-bearing field of a
/// segment reference is covered, whatever its shape).
pub(crate) fn rewrite_keys(m: &Manifest, map: &BTreeMap<String, String>) -> Result<Manifest, EngineError> {
    fn walk(v: &mut Json, map: &BTreeMap<String, String>) {
        match v {
            Json::String(s) => {
                if let Some(to) = map.get(s.as_str()) {
                    s.clone_from(to);
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|i| walk(i, map)),
            Json::Object(o) => o.values_mut().for_each(|i| walk(i, map)),
            _ => {}
        }
    }
    fn relocated<T>(field: &T, map: &BTreeMap<String, String>) -> Result<T, EngineError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let internal =
            |e: serde_json::Error| EngineError::caused_by(ErrorKind::Internal, "manifest key rewrite", e);
        let mut v = serde_json::to_value(field).map_err(internal)?;
        walk(&mut v, map);
        serde_json::from_value(v).map_err(internal)
    }
    // The schema (resolved or not) is kept: a relocated schema object holds the same bytes.
    let mut out = m.clone();
    out.wal = relocated(&m.wal, map)?;
    out.segments = relocated(&m.segments, map)?;
    out.schema_ref = relocated(&m.schema_ref, map)?;
    let targets: std::collections::HashSet<&String> = map.values().collect();
    if let Some(k) = out.object_keys().iter().find(|k| !targets.contains(k)) {
        return Err(EngineError::internal(format!("object key {k} was not rewritten")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_relocate_under_the_destination_prefix_with_fresh_names() {
        let dst = NsPath::new("o", "p", "copy").unwrap();
        assert_eq!(
            relocate_key("o/p/namespaces/src/wal/00000000000000000003-ab.wal", &dst, "t1").unwrap(),
            "o/p/namespaces/copy/wal/00000000000000000003-t1.wal"
        );
        let wal = relocate_key("o/p/namespaces/src/wal/00000000000000000003-ab.wal", &dst, "t1").unwrap();
        assert_eq!(crate::layout::wal_seq(&wal), Some(3));
        assert_eq!(
            relocate_key("o/p/namespaces/grand/segments/s1/data.seg", &dst, "t2").unwrap(),
            "o/p/namespaces/copy/segments/s1/t2-data.seg"
        );
        // An object already under the destination's prefix still gets a new key.
        let own = "o/p/namespaces/copy/segments/s1/data.seg";
        assert_ne!(relocate_key(own, &dst, "t3").unwrap(), own);
        assert!(relocate_key("o/q/namespaces/src/wal/x", &dst, "t").is_err());
        assert!(relocate_key("o/p/namespaces/src", &dst, "t").is_err());
        let dup = ["o/p/namespaces/a/wal/1".to_owned(), "o/p/namespaces/b/wal/1".to_owned()];
        assert!(relocation_map(&dup, &dst, &mut || "same".to_owned()).is_err());
        let mut n = 0;
        assert!(relocation_map(&dup, &dst, &mut || {
            n += 1;
            format!("t{n}")
        })
        .is_ok());
    }
}
