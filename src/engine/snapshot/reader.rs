//! Reading snapshot files (format in `storage-format.md` 9.6): a streaming,
//! verifying reader. The framing's decoders are `format/snapshot.rs`'s; this
//! reader feeds them the bytes, checks the whole-file crc32c and what only a
//! whole file can tell (the objects are exactly the manifest's, no trailing
//! bytes).
//!
//! Invariants:
//! - Every checksum is verified before what it covers is used; no allocation
//!   is sized by an unchecked length; every length is capped; the objects
//!   must be exactly the manifest's objects. Corruption is an
//!   [`EngineError::invalid_input`] saying what is wrong, with the decoding
//!   error as its cause.
//! - Object data is either returned whole ([`SnapshotReader::next_object`]) or
//!   only checked, in chunks of [`CHUNK`] bytes ([`SnapshotReader::skip_object`],
//!   used by [`verify_snapshot`] and [`scan_snapshot`]): verifying a snapshot
//!   holds no object in memory, whatever its size.

use std::collections::BTreeSet;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{bad, bad_format, io_err, SnapshotInfo};
use crate::engine::{EngineError, ErrorKind};
use crate::format::manifest::Manifest;
use crate::format::snapshot::{
    check_footer, decode_record_header, decode_record_key_len, SnapshotHeader, RECORD_KEY_LEN_BYTES,
    RECORD_TAIL_BYTES, SNAPSHOT_FOOTER_COVERED_LEN, SNAPSHOT_HEADER_LEN,
};

/// Bytes read at a time while checking object data.
const CHUNK: usize = 1 << 20;

/// Where one verified object's data sits in a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpan {
    /// The object's key as recorded (the source namespace's).
    pub key: String,
    /// Offset of its first data byte in the file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// A streaming, verifying snapshot reader.
pub struct SnapshotReader<'a, R> {
    r: &'a mut R,
    crc: u32,
    bytes: u64,
    /// The manifest of the snapshot.
    pub manifest: Manifest,
    /// Objects the header announces.
    pub objects: u32,
    read_objects: u32,
    expected: BTreeSet<String>,
}

/// A record header read and checked: key, data length, data crc32c.
struct RecordHeader {
    key: String,
    len: u64,
    crc: u32,
}

impl<'a, R: AsyncRead + Unpin + Send> SnapshotReader<'a, R> {
    async fn take(&mut self, n: usize) -> Result<Vec<u8>, EngineError> {
        // Grow with the data actually read, so a length near a cap in a
        // truncated file fails without allocating it up front.
        let mut buf = Vec::with_capacity(n.min(CHUNK));
        let limit = u64::try_from(n).map_err(|_| bad("length overflow"))?;
        (&mut *self.r).take(limit).read_to_end(&mut buf).await.map_err(io_err)?;
        if buf.len() != n {
            return Err(bad("it is truncated (it ends before its footer)"));
        }
        self.crc = crc32c::crc32c_append(self.crc, &buf);
        self.bytes += n as u64;
        Ok(buf)
    }

    /// Read and verify the header and the manifest.
    pub async fn open(r: &'a mut R) -> Result<SnapshotReader<'a, R>, EngineError> {
        let mut s = SnapshotReader {
            r,
            crc: 0,
            bytes: 0,
            manifest: Manifest::default(),
            objects: 0,
            read_objects: 0,
            expected: BTreeSet::new(),
        };
        let h = s.take(SNAPSHOT_HEADER_LEN).await.map_err(|e| match e.kind() {
            ErrorKind::InvalidInput => bad("it is shorter than a snapshot header"),
            _ => e,
        })?;
        let header = SnapshotHeader::decode(&h).map_err(|e| bad_format("", e))?;
        s.objects = header.objects;
        let manifest_len =
            usize::try_from(header.manifest_len).map_err(|_| bad("manifest length overflow"))?;
        let manifest = s.take(manifest_len).await?;
        if crc32c::crc32c(&manifest) != header.manifest_crc32c {
            return Err(bad("manifest checksum mismatch"));
        }
        let m = Manifest::decode(&manifest)
            .map_err(|e| bad(format!("its manifest is invalid: {e}")).with_source(e))?;
        if m.generation != header.generation {
            return Err(bad("the header and the manifest name different generations"));
        }
        if m.deleted {
            return Err(bad("it captures a deleted namespace"));
        }
        s.expected = m.object_keys().into_iter().collect();
        if s.expected.len() != s.objects as usize {
            return Err(bad(format!(
                "the header announces {} objects but the manifest references {}",
                s.objects,
                s.expected.len()
            )));
        }
        s.manifest = m;
        Ok(s)
    }

    /// The next record's header, checked (None after the last object).
    async fn record_header(&mut self) -> Result<Option<RecordHeader>, EngineError> {
        if self.read_objects == self.objects {
            return Ok(None);
        }
        let n = self.read_objects + 1;
        let in_record = |e| bad_format(&format!("object record {n}"), e);
        let key_len = self.take(RECORD_KEY_LEN_BYTES).await?;
        let declared = decode_record_key_len(&key_len).map_err(in_record)?;
        let key = self.take(usize::try_from(declared).map_err(|_| bad("key length overflow"))?).await?;
        let tail = self.take(RECORD_TAIL_BYTES).await?;
        let header = decode_record_header(&key_len, &key, &tail).map_err(in_record)?;
        let key = header.key;
        if !self.expected.remove(&key) {
            return Err(bad(format!("object {key} is not referenced by its manifest, or appears twice")));
        }
        self.read_objects = n;
        Ok(Some(RecordHeader { key, len: header.data_len, crc: header.data_crc32c }))
    }

    /// The next object (key, verified data), or None after the last one.
    pub async fn next_object(&mut self) -> Result<Option<(String, Bytes)>, EngineError> {
        let Some(h) = self.record_header().await? else { return Ok(None) };
        let data = self.take(usize::try_from(h.len).map_err(|_| bad("object too large"))?).await?;
        if crc32c::crc32c(&data) != h.crc {
            return Err(bad(format!("object {}: data checksum mismatch", h.key)));
        }
        Ok(Some((h.key, Bytes::from(data))))
    }

    /// Check the next object's data in chunks without keeping it; its span
    /// in the file, or None after the last one.
    pub async fn skip_object(&mut self) -> Result<Option<ObjectSpan>, EngineError> {
        let Some(h) = self.record_header().await? else { return Ok(None) };
        let offset = self.bytes;
        let (mut left, mut crc) = (h.len, 0u32);
        while left > 0 {
            let chunk = self.take(left.min(CHUNK as u64) as usize).await?;
            crc = crc32c::crc32c_append(crc, &chunk);
            left -= chunk.len() as u64;
        }
        if crc != h.crc {
            return Err(bad(format!("object {}: data checksum mismatch", h.key)));
        }
        Ok(Some(ObjectSpan { key: h.key, offset, len: h.len }))
    }

    /// Check every remaining object (see [`Self::skip_object`]), then the
    /// footer and the end of input; the spans of the objects checked.
    pub async fn finish_spans(mut self) -> Result<(SnapshotInfo, Vec<ObjectSpan>), EngineError> {
        let mut spans = Vec::new();
        while let Some(span) = self.skip_object().await? {
            spans.push(span);
        }
        let f = self.take(SNAPSHOT_FOOTER_COVERED_LEN).await?;
        let crc = self.crc;
        let mut stored = [0u8; 4];
        self.r.read_exact(&mut stored).await.map_err(io_err)?;
        check_footer(&f, self.objects).map_err(|e| bad_format("", e))?;
        if u32::from_le_bytes(stored) != crc {
            return Err(bad("whole-file checksum mismatch"));
        }
        let mut extra = [0u8; 1];
        if self.r.read(&mut extra).await.map_err(io_err)? != 0 {
            return Err(bad("trailing bytes after the footer"));
        }
        let info = SnapshotInfo {
            namespace: self.manifest.namespace.clone(),
            generation: self.manifest.generation,
            objects: u64::from(self.objects),
            bytes: self.bytes + 4,
        };
        Ok((info, spans))
    }

    /// Read and verify the footer (after checking every remaining object).
    pub async fn finish(self) -> Result<SnapshotInfo, EngineError> {
        self.finish_spans().await.map(|(info, _)| info)
    }
}

/// Verify a whole snapshot stream without storing anything (no object is
/// held in memory).
pub async fn verify_snapshot<R: AsyncRead + Unpin + Send>(r: &mut R) -> Result<SnapshotInfo, EngineError> {
    SnapshotReader::open(r).await?.finish().await
}

/// Verify a whole snapshot stream and say where each object's data is: its
/// manifest, what it holds, and the objects' spans in file order.
pub async fn scan_snapshot<R: AsyncRead + Unpin + Send>(
    r: &mut R,
) -> Result<(Manifest, SnapshotInfo, Vec<ObjectSpan>), EngineError> {
    let reader = SnapshotReader::open(r).await?;
    let manifest = reader.manifest.clone();
    let (info, spans) = reader.finish_spans().await?;
    Ok((manifest, info, spans))
}
