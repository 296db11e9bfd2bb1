//! Reading snapshot files (format in `storage-format.md` 9.6): a streaming,
//! verifying reader.
//!
//! Invariants:
//! - Every checksum is verified before what it covers is used; no allocation
//!   is sized by an unchecked length; every length is capped; the objects
//!   must be exactly the manifest's objects. Corruption is an
//!   [`EngineError::invalid_input`] saying what is wrong.
//! - Object data is either returned whole ([`SnapshotReader::next_object`]) or
//!   only checked, in chunks of [`CHUNK`] bytes ([`SnapshotReader::skip_object`],
//!   used by [`verify_snapshot`] and [`scan_snapshot`]): verifying a snapshot
//!   holds no object in memory, whatever its size.

use std::collections::BTreeSet;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    bad, io_err, SnapshotInfo, MAX_SNAPSHOT_KEY_BYTES, MAX_SNAPSHOT_OBJECTS, MAX_SNAPSHOT_OBJECT_BYTES,
    SNAPSHOT_END_MAGIC, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
use crate::engine::{EngineError, ErrorKind};
use crate::format::manifest::{Manifest, MAX_MANIFEST_BYTES};

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
        (&mut *self.r).take(limit).read_to_end(&mut buf).await.map_err(|e| io_err(&e))?;
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
        if &h[0..8] != SNAPSHOT_MAGIC {
            return Err(bad("it does not start with the magic TIDE.SNP (not a tidepool snapshot)"));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version == 0 || version > SNAPSHOT_VERSION {
            return Err(bad(format!(
                "unsupported snapshot version {version} (this build reads versions 1..={SNAPSHOT_VERSION})"
            )));
        }
        if crc32c::crc32c(&h[0..40]) != le32(&h[40..44]) {
            return Err(bad("header checksum mismatch"));
        }
        if u16::from_le_bytes([h[10], h[11]]) != 0 {
            return Err(bad("unknown header flags"));
        }
        s.objects = le32(&h[12..16]);
        if s.objects > MAX_SNAPSHOT_OBJECTS {
            return Err(bad("too many objects"));
        }
        let generation = u64::from_le_bytes(h[16..24].try_into().map_err(|_| bad("header"))?);
        let manifest_len = le32(&h[32..36]) as usize;
        if manifest_len > MAX_MANIFEST_BYTES {
            return Err(bad("manifest length exceeds the manifest size cap"));
        }
        let manifest = s.take(manifest_len).await?;
        if crc32c::crc32c(&manifest) != le32(&h[36..40]) {
            return Err(bad("manifest checksum mismatch"));
        }
        let m = Manifest::decode(&manifest).map_err(|e| bad(format!("its manifest is invalid: {e}")))?;
        if m.generation != generation {
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
        let len = self.take(4).await?;
        let key_len = le32(&len);
        if key_len == 0 || key_len > MAX_SNAPSHOT_KEY_BYTES {
            return Err(bad(format!("object record {n}: bad key length {key_len}")));
        }
        let key = self.take(key_len as usize).await?;
        let tail = self.take(16).await?;
        let mut head = len;
        head.extend_from_slice(&key);
        head.extend_from_slice(&tail[0..12]);
        if crc32c::crc32c(&head) != le32(&tail[12..16]) {
            return Err(bad(format!("object record {n}: record header checksum mismatch")));
        }
        let key = String::from_utf8(key).map_err(|_| bad(format!("object record {n}: key is not UTF-8")))?;
        let data_len = u64::from_le_bytes(tail[0..8].try_into().map_err(|_| bad("record"))?);
        if data_len > MAX_SNAPSHOT_OBJECT_BYTES {
            return Err(bad(format!("object {key}: length {data_len} exceeds the cap")));
        }
        if !self.expected.remove(&key) {
            return Err(bad(format!("object {key} is not referenced by its manifest, or appears twice")));
        }
        self.read_objects = n;
        Ok(Some(RecordHeader { key, len: data_len, crc: le32(&tail[8..12]) }))
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
        let f = self.take(12).await?;
        let crc = self.crc;
        let mut stored = [0u8; 4];
        self.r.read_exact(&mut stored).await.map_err(|e| io_err(&e))?;
        if &f[0..8] != SNAPSHOT_END_MAGIC || le32(&f[8..12]) != self.objects {
            return Err(bad("the footer is missing or damaged"));
        }
        if u32::from_le_bytes(stored) != crc {
            return Err(bad("whole-file checksum mismatch"));
        }
        let mut extra = [0u8; 1];
        if self.r.read(&mut extra).await.map_err(|e| io_err(&e))? != 0 {
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

/// A little-endian u32 from the first 4 bytes (callers pass exactly 4; a
/// shorter slice reads as 0, which every check then refuses).
fn le32(b: &[u8]) -> u32 {
    b.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map_or(0, u32::from_le_bytes)
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
