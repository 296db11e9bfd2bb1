//! Snapshot I/O errors keep their cause and are classified once: a full disk
//! is `StorageFull` (507), another local I/O failure `Unavailable`.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use crate::engine::{Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use crate::layout::NsPath;
use crate::store::Store;

/// A writer whose every write fails with the OS error `errno`.
struct Failing(i32);

impl AsyncWrite for Failing {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::Error::from_raw_os_error(self.0)))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
const EIO: i32 = 5;

fn io_cause(e: &crate::engine::EngineError) -> Option<i32> {
    std::error::Error::source(e)?.downcast_ref::<std::io::Error>()?.raw_os_error()
}

#[test]
fn a_full_disk_or_quota_is_storage_full_and_keeps_the_io_error() {
    for errno in [ENOSPC, EDQUOT] {
        let e = EngineError::io("writing the snapshot", std::io::Error::from_raw_os_error(errno));
        assert_eq!(e.kind(), ErrorKind::StorageFull, "{errno}");
        assert!(e.retry_after_ms() > 0);
        assert_eq!(io_cause(&e), Some(errno));
    }
    let e = EngineError::io("writing the snapshot", std::io::Error::from_raw_os_error(EIO));
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(io_cause(&e), Some(EIO));
}

#[tokio::test]
async fn writing_a_snapshot_onto_a_full_disk_is_storage_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path().to_path_buf(), store)).await.unwrap();
    let ns = NsPath::new("o", "p", "full").unwrap();
    let body = serde_json::json!({"upsert_rows": [{"id": 1, "n": 1}]});
    engine.write(&ns, WriteRequest::from_json(&body).unwrap()).await.unwrap();
    for (errno, kind) in [(ENOSPC, ErrorKind::StorageFull), (EIO, ErrorKind::Unavailable)] {
        let err = engine.write_snapshot(&ns, None, &mut Failing(errno)).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{errno}: {err}");
        assert_eq!(io_cause(&err), Some(errno), "the I/O error is the cause");
    }
}
