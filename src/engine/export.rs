//! Time travel (reading a retained older generation) and the NDJSON export.
//!
//! Invariants:
//! - A read "as of generation g" sees exactly manifest g: it is refused when
//!   g is newer than the newest generation, was collected by manifest GC (its
//!   `.gc` tombstone exists or its `.json` is gone), or is a delete tombstone.
//!   An older generation whose objects were already reclaimed (e.g. WAL
//!   batches folded by a compaction and released) fails with a clear error
//!   instead of returning a partial state.
//! - An export is one consistent generation: the snapshot is taken once, then
//!   its documents are streamed in id order, each as one JSON line in the
//!   shape `tidepool write` reads back (`{"id": …, "vector": […], attr: …}`).
//!   Memory stays constant: documents are iterated from the snapshot and
//!   written out in bounded chunks.

use std::ops::Bound;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{cached, Engine, EngineError, ErrorKind, Snapshot};
use crate::format::manifest::Manifest;
use crate::layout::NsPath;

/// Bytes buffered before an export chunk is written out.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// The generation exported.
    pub generation: u64,
    /// Documents written.
    pub documents: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl Engine {
    /// The manifest of `generation` (None: the newest), which must be live:
    /// retained (not collected by manifest GC) and not a delete tombstone.
    pub async fn manifest_at(
        &self,
        path: &NsPath,
        generation: Option<u64>,
    ) -> Result<Arc<Manifest>, EngineError> {
        let not_found = || EngineError::not_found(format!("namespace {} not found", path.ns()));
        let newest = self.latest_manifest(path).await?.ok_or_else(not_found)?;
        let Some(g) = generation.filter(|g| *g != newest.generation) else {
            if newest.deleted {
                return Err(not_found());
            }
            return Ok(newest);
        };
        if g > newest.generation {
            return Err(EngineError::not_found(format!(
                "generation {g} of namespace {} does not exist (the newest is {})",
                path.ns(),
                newest.generation
            )));
        }
        let collected = || {
            EngineError::not_found(format!(
                "generation {g} of namespace {} is no longer retained (collected by manifest GC)",
                path.ns()
            ))
        };
        if self.store.exists(&path.manifest_tombstone_key(g)).await? {
            return Err(collected());
        }
        let m = self.log(path).read(g).await?.ok_or_else(collected)?;
        if m.deleted {
            return Err(EngineError::not_found(format!(
                "namespace {} was deleted at generation {g}",
                path.ns()
            )));
        }
        Ok(Arc::new(m))
    }

    /// A snapshot as of `generation` (time travel), or the newest one.
    /// `strong` applies to the newest only.
    pub async fn snapshot_at(
        &self,
        path: &NsPath,
        generation: Option<u64>,
        strong: bool,
    ) -> Result<Snapshot, EngineError> {
        let Some(g) = generation else { return self.existing(path, strong).await };
        if let Some(s) = cached(&self.handle(path)).filter(|s| s.generation() == g && s.exists()) {
            return Ok(s);
        }
        let m = self.manifest_at(path, Some(g)).await?;
        self.materialize(path, m, None).await.map_err(|e| {
            if e.kind() == ErrorKind::Corrupted && e.message().contains("missing") {
                return EngineError::not_found(format!(
                    "generation {g} of namespace {} can no longer be read: {} (its objects were reclaimed \
                     after a newer generation replaced them)",
                    path.ns(),
                    e.message()
                ));
            }
            e
        })
    }

    /// Stream every live document of `snap` as NDJSON into `w`.
    pub async fn export_ndjson<W: AsyncWrite + Unpin + Send>(
        &self,
        snap: &Snapshot,
        w: &mut W,
    ) -> Result<ExportSummary, EngineError> {
        export_ndjson(snap, w).await.inspect_err(|e| self.forget_rotten(e))
    }
}

/// Stream every live document of `snap` as NDJSON into `w` (id order).
pub async fn export_ndjson<W: AsyncWrite + Unpin + Send>(
    snap: &Snapshot,
    w: &mut W,
) -> Result<ExportSummary, EngineError> {
    let io = |e: std::io::Error| EngineError::io("export stream", e);
    let state = snap.state.clone();
    let mut out = ExportSummary { generation: snap.generation(), documents: 0, bytes: 0 };
    let mut buf = Vec::with_capacity(EXPORT_CHUNK_BYTES + 4096);
    let mut lower: Option<crate::model::DocId> = None;
    // Iterate in bounded runs so no iterator borrow is held across an await.
    loop {
        let mut last = None;
        // A run is one integrity scope: a row whose bytes changed since they were verified ends
        // the export with an error instead of a line missing or wrong (`crate::integrity`).
        crate::integrity::within(|| -> Result<(), EngineError> {
            let bound = lower.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            for doc in state.iter_from(bound) {
                serde_json::to_writer(&mut buf, &doc.to_json())
                    .map_err(|e| EngineError::caused_by(ErrorKind::Internal, "export encoding", e))?;
                buf.push(b'\n');
                out.documents += 1;
                last = Some(doc.id.clone());
                if buf.len() >= EXPORT_CHUNK_BYTES {
                    break;
                }
            }
            Ok(())
        })
        .map_err(EngineError::rot)??;
        if !buf.is_empty() {
            w.write_all(&buf).await.map_err(io)?;
            out.bytes += buf.len() as u64;
            buf.clear();
        }
        match last {
            Some(id) => lower = Some(id),
            None => break,
        }
    }
    w.flush().await.map_err(io)?;
    Ok(out)
}
