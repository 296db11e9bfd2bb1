//! A fault-injecting object store wrapper for crash and ambiguity tests.
//!
//! It forwards to an inner store and can (a) fail one matching put before
//! performing it, (b) perform one matching put and then report an error (the
//! "succeeded, then timed out" ambiguity), and (c) simulate a crash: after N
//! successful mutations every further put/delete fails, so whatever the
//! writer does after that point never reaches storage; (d) fail every
//! matching put with an OS error (ENOSPC: a full disk) until healed; (e) hold
//! every matching put (it waits, unperformed) until released.
//!
//! Invariant: reads are never altered; the inner store always holds exactly
//! what a real store would hold after the same crash.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// When an injected put failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail without writing.
    Before,
    /// Write, then report an error.
    After,
}

#[derive(Debug, Default)]
struct State {
    one_shot: Vec<(String, Fault)>,
    /// Puts whose key contains the part fail with this OS error until healed.
    errno: Vec<(String, i32)>,
    crash_after: Option<u64>,
    /// Puts whose key contains one of these parts wait until released.
    held: Vec<String>,
    /// Puts waiting now because they are held.
    waiting: usize,
    mutations: u64,
    /// GETs per key part of interest (`count_reads_of`), and in total.
    reads: u64,
    read_filter: Option<String>,
}

/// One held put's place in [`State::waiting`], given up when its wait ends.
struct Waiting<'a>(&'a FaultStore);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state().waiting -= 1;
    }
}

/// The wrapper.
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Mutex<State>>,
    released: tokio::sync::Notify,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic { store: "FaultStore", source: format!("injected fault: {what}").into() }
}

impl FaultStore {
    /// Wrap a store.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<FaultStore> {
        let state = Arc::new(Mutex::new(State::default()));
        Arc::new(FaultStore { inner, state, released: tokio::sync::Notify::new() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Fail the next put whose key contains `key_part`.
    pub fn fail_next_put(&self, key_part: &str, fault: Fault) {
        self.state().one_shot.push((key_part.to_owned(), fault));
    }

    /// Fail every put whose key contains `key_part` with the OS error `errno`
    /// (28: ENOSPC) before writing, until [`FaultStore::heal`].
    pub fn fail_puts_with_errno(&self, key_part: &str, errno: i32) {
        self.state().errno.push((key_part.to_owned(), errno));
    }

    /// Hold every put whose key contains `key_part`: it waits, unperformed,
    /// until [`FaultStore::release_puts`] (or [`FaultStore::heal`]).
    pub fn hold_puts(&self, key_part: &str) {
        self.state().held.push(key_part.to_owned());
    }

    /// Let every held put go on.
    pub fn release_puts(&self) {
        self.state().held.clear();
        self.released.notify_waiters();
    }

    /// How many puts are waiting now because they are held: a test knows
    /// that the writer has reached its put.
    pub fn waiting_puts(&self) -> usize {
        self.state().waiting
    }

    /// Wait while a put of `key` is held (counted in [`FaultStore::waiting_puts`]
    /// however the wait ends: released, or the put dropped).
    async fn wait_if_held(&self, key: &str) {
        let held = |s: &State| s.held.iter().any(|k| key.contains(k.as_str()));
        if !held(&self.state()) {
            return;
        }
        self.state().waiting += 1;
        let _counted = Waiting(self);
        loop {
            // Created before the check: a release in between still wakes it.
            let released = self.released.notified();
            if !held(&self.state()) {
                return;
            }
            released.await;
        }
    }

    /// After `n` more successful mutations, fail every put and delete.
    pub fn crash_after_mutations(&self, n: u64) {
        let mut s = self.state();
        s.crash_after = Some(s.mutations + n);
    }

    /// Successful mutations so far.
    pub fn mutations(&self) -> u64 {
        self.state().mutations
    }

    /// Count only GETs whose key contains `key_part` from now on (resets the count).
    pub fn count_reads_of(&self, key_part: &str) {
        let mut s = self.state();
        s.read_filter = Some(key_part.to_owned());
        s.reads = 0;
    }

    /// GETs counted since `count_reads_of` (all GETs if never called).
    pub fn reads(&self) -> u64 {
        self.state().reads
    }

    /// Remove every injected fault.
    pub fn heal(&self) {
        {
            let mut s = self.state();
            s.one_shot.clear();
            s.errno.clear();
            s.crash_after = None;
        }
        self.release_puts();
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decide the fate of a mutation of `key`: Err = fail before, Ok(true) =
/// perform it, then report an error.
fn admit(state: &Mutex<State>, key: &str, is_put: bool) -> Result<bool> {
    let mut s = lock(state);
    if s.crash_after.is_some_and(|n| s.mutations >= n) {
        return Err(injected("crashed"));
    }
    if let Some((_, errno)) = s.errno.iter().find(|(k, _)| is_put && key.contains(k.as_str())) {
        let source = Box::new(std::io::Error::from_raw_os_error(*errno));
        return Err(object_store::Error::Generic { store: "FaultStore", source });
    }
    if is_put {
        if let Some(i) = s.one_shot.iter().position(|(k, _)| key.contains(k.as_str())) {
            let (_, fault) = s.one_shot.remove(i);
            if fault == Fault::Before {
                return Err(injected("put failed before writing"));
            }
            s.mutations += 1;
            return Ok(true);
        }
    }
    s.mutations += 1;
    Ok(false)
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.wait_if_held(location.as_ref()).await;
        let fail_after = admit(&self.state, location.as_ref(), true)?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        if fail_after {
            return Err(injected("put landed, then the response was lost"));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.wait_if_held(location.as_ref()).await;
        admit(&self.state, location.as_ref(), true)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        {
            let mut s = self.state();
            if s.read_filter.as_deref().is_none_or(|f| location.as_ref().contains(f)) {
                s.reads += 1;
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        // Each delete is admitted on its own, so a crash point can fall between two.
        let state = self.state.clone();
        let inner = self.inner.clone();
        locations
            .then(move |p| {
                let state = state.clone();
                let inner = inner.clone();
                async move {
                    let p = p?;
                    admit(&state, p.as_ref(), false)?;
                    let mut out = inner.delete_stream(futures::stream::iter([Ok(p)]).boxed());
                    out.next().await.unwrap_or_else(|| Err(injected("delete stream ended early")))
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        admit(&self.state, to.as_ref(), true)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        admit(&self.state, to.as_ref(), true)?;
        self.inner.rename_opts(from, to, options).await
    }
}
