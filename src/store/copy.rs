//! Streaming copy of one object between two stores, verified on the way; and
//! a large object written part by part ([`Store::put_in_parts`]).
//!
//! Invariants:
//! - Memory is bounded by `PART_BYTES × PARTS_IN_FLIGHT`, whatever the object's
//!   size (a 4 GB segment never sits whole in memory).
//! - The destination object appears only when the streamed bytes have the
//!   expected length and crc32c: the multipart upload is completed after the
//!   check and aborted otherwise (a local directory publishes its staged file
//!   at completion, with the store's fsync policy).
//! - A put in parts publishes the object only when every part was written
//!   (completed, else aborted), like a single put; the caller learns each
//!   part once the store has taken it, so bytes it maps can be given back.
//! - Both keep the books of [`super::durability`] like a put: a failed
//!   completion leaves the key's durability unknown, a completed one clears it.

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::{Store, StoreError};

/// Size of one uploaded part (S3 needs at least 5 MiB but for the last part).
pub const PART_BYTES: usize = 8 << 20;
/// Parts uploaded at once per object.
const PARTS_IN_FLIGHT: usize = 2;

/// Why a verified copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source's bytes are not what the caller expected (nothing was written).
    #[error(
        "object {key}: {found_len} bytes with crc32c {found_crc:08x}, expected {len} bytes with {crc:08x}"
    )]
    Mismatch {
        /// The object.
        key: String,
        /// Bytes read.
        found_len: u64,
        /// Their crc32c.
        found_crc: u32,
        /// Expected length.
        len: u64,
        /// Expected crc32c.
        crc: u32,
    },
}

impl Store {
    /// Copy `key` from this store to `to`, streaming, publishing it only if it
    /// has `len` bytes with crc32c `crc`.
    pub async fn copy_verified(&self, key: &str, to: &Store, len: u64, crc: u32) -> Result<(), CopyError> {
        let path = ObjPath::from(key);
        let scope = to.write_scope(key);
        let got = self.inner.get(&path).await.map_err(|e| Store::err(key, e))?;
        // Opening the upload may create (and fsync) the key's directories.
        let upload = to.inner.put_multipart(&path).await.map_err(|e| Store::err(key, e));
        let upload = match upload {
            Ok(u) => u,
            Err(e) => {
                let r: Result<(), StoreError> = Err(e);
                to.after_write(key, &r, scope, true);
                return r.map_err(CopyError::Store);
            }
        };
        let mut out = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut stream = got.into_stream();
        let (mut found_len, mut found_crc) = (0u64, 0u32);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.abort().await;
                    return Err(Store::err(key, e).into());
                }
            };
            found_crc = crc32c::crc32c_append(found_crc, &chunk);
            found_len += chunk.len() as u64;
            if let Err(e) = out.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = out.abort().await;
                return Err(Store::err(key, e).into());
            }
            out.write(&chunk);
        }
        if (found_len, found_crc) != (len, crc) {
            let _ = out.abort().await;
            return Err(CopyError::Mismatch { key: key.to_owned(), found_len, found_crc, len, crc });
        }
        let done = out.finish().await.map(|_| ()).map_err(|e| Store::err(key, e));
        to.health.record(done.as_ref().err().map(ToString::to_string));
        to.after_write(key, &done, scope, true);
        Ok(done?)
    }
}

impl Store {
    /// Write `data` as `key` in [`PART_BYTES`] parts (a multipart upload,
    /// one part at a time), calling `written` with each part once the store
    /// has it; the object appears only when all of it was written.
    pub async fn put_in_parts(
        &self,
        key: &str,
        data: &Bytes,
        written: &(dyn Fn(&[u8]) + Send + Sync),
    ) -> Result<(), StoreError> {
        let path = ObjPath::from(key);
        let scope = self.write_scope(key);
        let r = async {
            let mut upload = self.inner.put_multipart(&path).await.map_err(|e| Store::err(key, e))?;
            for at in (0..data.len()).step_by(PART_BYTES) {
                let part = data.slice(at..(at + PART_BYTES).min(data.len()));
                if let Err(e) = upload.put_part(part.clone().into()).await {
                    let _ = upload.abort().await;
                    return Err(Store::err(key, e));
                }
                written(&part);
            }
            upload.complete().await.map(|_| ()).map_err(|e| Store::err(key, e))
        }
        .await;
        self.health.record(r.as_ref().err().map(ToString::to_string));
        self.after_write(key, &r, scope, true);
        r
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[tokio::test]
    async fn large_objects_stream_and_bad_ones_never_appear() {
        let (from, dir) = (Store::memory(), tempfile::tempdir().unwrap());
        let to = Store::local(dir.path()).unwrap();
        let data: Vec<u8> = (0..(PART_BYTES * 2 + 12_345)).map(|i| (i % 251) as u8).collect();
        let crc = crc32c::crc32c(&data);
        from.put("o/big", Bytes::from(data.clone())).await.unwrap();
        from.copy_verified("o/big", &to, data.len() as u64, crc).await.unwrap();
        assert_eq!(to.get("o/big").await.unwrap(), Bytes::from(data.clone()));
        let wrong = from.copy_verified("o/big", &to, data.len() as u64, crc ^ 1).await;
        assert!(matches!(wrong, Err(CopyError::Mismatch { .. })));
        from.put("o/short", Bytes::from(data[..100].to_vec())).await.unwrap();
        let short = from.copy_verified("o/short", &to, data.len() as u64, crc).await;
        assert!(matches!(short, Err(CopyError::Mismatch { .. })));
        assert!(!to.exists("o/short").await.unwrap(), "a mismatching object is never published");
        assert!(matches!(
            from.copy_verified("o/missing", &to, 1, 0).await,
            Err(CopyError::Store(StoreError::NotFound(_)))
        ));
    }

    #[tokio::test]
    async fn a_put_in_parts_writes_the_whole_object_and_reports_each_part() {
        let dir = tempfile::tempdir().unwrap();
        let to = Store::local(dir.path()).unwrap();
        let data: Vec<u8> = (0..(PART_BYTES * 2 + 777)).map(|i| (i % 253) as u8).collect();
        let data = Bytes::from(data);
        let seen = std::sync::Mutex::new(Vec::new());
        to.put_in_parts("o/parts", &data, &|p| seen.lock().unwrap().push(p.len())).await.unwrap();
        assert_eq!(to.get("o/parts").await.unwrap(), data);
        assert_eq!(*seen.lock().unwrap(), vec![PART_BYTES, PART_BYTES, 777]);
    }
}
