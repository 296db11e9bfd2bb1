//! Bounded query execution: query evaluation (CPU work) runs on blocking
//! threads, at most a fixed number at once, under a per-request deadline, so
//! the runtime's async workers stay free for `/health`, I/O and every other
//! tenant however heavy the queries are.
//!
//! Invariants:
//! - Never more than `slots` evaluations of each lane run at once: a query
//!   holds a semaphore permit for its whole evaluation. Queries on
//!   namespaces of at most [`SMALL_NAMESPACE_DOCS`] documents use their own
//!   lane, so a small tenant is not queued behind large scans (its work is
//!   bounded by its size and the request caps).
//! - At most `max_queued` queries wait for a permit; one more fails at once as
//!   [`super::ErrorKind::Backpressure`] with a retry hint (429 with
//!   `retry-after-ms`; the SDK retries it with backoff).
//! - The deadline covers waiting and evaluation. Past it the query fails as
//!   [`super::ErrorKind::Timeout`] (408, which the SDK retries) naming `query_timeout_ms`; an evaluation
//!   notices within a few hundred rows ([`crate::deadline`]) and its partial
//!   result is discarded, so the slot frees promptly.
//! - Nothing here runs query code on an async worker.
//! - Every evaluation runs in an integrity scope (`crate::integrity`): a read of segment bytes
//!   that changed since they were verified fails the query as `Corrupted` (its result is
//!   discarded), carrying the [`crate::integrity::Rot`] for the engine to act on.
//! - The pool belongs to the engine (one per engine, [`super::Engine::query_pool`]): every
//!   evaluation is entered through a read view (`engine/read.rs`), which runs it here.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::EngineError;
use crate::query::QueryError;

/// Default per-request query deadline (below the SDK's 60 s read timeout).
pub const DEFAULT_QUERY_TIMEOUT_MS: u64 = 30_000;
/// Default number of queries that may wait for a query slot.
pub const DEFAULT_MAX_QUEUED_QUERIES: usize = 256;

/// Namespaces up to this many documents are queried in the small lane.
pub const SMALL_NAMESPACE_DOCS: u64 = 1_000;
/// The wait a 429 asks for when the queue is full.
const QUEUE_FULL_RETRY_MS: u64 = 1_000;

/// Which set of slots a query uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Namespaces larger than [`SMALL_NAMESPACE_DOCS`].
    Large,
    /// Namespaces of at most [`SMALL_NAMESPACE_DOCS`] documents.
    Small,
}

impl Lane {
    /// The lane of a namespace of `docs` documents.
    pub fn of(docs: u64) -> Lane {
        if docs <= SMALL_NAMESPACE_DOCS {
            Lane::Small
        } else {
            Lane::Large
        }
    }
}

/// The bounded executor shared by every request.
#[derive(Debug)]
pub struct QueryPool {
    large: Arc<Semaphore>,
    small: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Changed by a configuration reload ([`QueryPool::retune`]).
    max_queued: AtomicUsize,
    /// The per-query deadline in ms (reloadable too).
    timeout_ms: AtomicU64,
}

/// Counts a waiting query for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl QueryPool {
    /// `slots` evaluations per lane at once (0: the number of cores),
    /// `max_queued` waiting, each query bounded by `timeout`.
    pub fn new(slots: usize, max_queued: usize, timeout: Duration) -> Self {
        let slots =
            if slots == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { slots };
        QueryPool {
            large: Arc::new(Semaphore::new(slots)),
            small: Arc::new(Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            max_queued: AtomicUsize::new(max_queued),
            timeout_ms: AtomicU64::new(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Apply reloaded settings: they bound queries that start from now on.
    pub fn retune(&self, max_queued: usize, timeout: Duration) {
        self.max_queued.store(max_queued, Ordering::SeqCst);
        self.timeout_ms.store(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::SeqCst))
    }

    /// Evaluates `f` on a blocking thread once a slot of `lane` is free,
    /// within the deadline.
    pub async fn run<T, F>(&self, lane: Lane, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, QueryError> + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout();
        let semaphore = match lane {
            Lane::Large => &self.large,
            Lane::Small => &self.small,
        };
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => self.wait_for(semaphore, deadline).await?,
        };
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Bytes that changed since they were verified fail the query whatever else happened.
            crate::integrity::within(|| crate::deadline::with_deadline(deadline, f))
        });
        match task.await {
            Ok(Err(rot)) => Err(EngineError::rot(rot)),
            Ok(Ok(Ok(out))) => Ok(out?),
            Ok(Ok(Err(crate::deadline::Expired))) => Err(self.timed_out()),
            Err(e) => Err(EngineError::caused_by(super::ErrorKind::Internal, "query task failed", e)),
        }
    }

    async fn wait_for(
        &self,
        semaphore: &Arc<Semaphore>,
        deadline: Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, EngineError> {
        let max_queued = self.max_queued.load(Ordering::SeqCst);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= max_queued {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::backpressure(
                format!("too many queries waiting (max_queued_queries = {max_queued}); retry later"),
                QUEUE_FULL_RETRY_MS,
            ));
        }
        let _waiting = Waiting(&self.waiting);
        let acquire = semaphore.clone().acquire_owned();
        match tokio::time::timeout_at(deadline.into(), acquire).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(EngineError::internal("the query pool is closed").with_source(e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> EngineError {
        EngineError::timeout(format!(
            "query exceeded the query deadline of {} ms (query_timeout_ms)",
            self.timeout().as_millis()
        ))
    }
}

impl Default for QueryPool {
    fn default() -> Self {
        let timeout = Duration::from_millis(DEFAULT_QUERY_TIMEOUT_MS);
        QueryPool::new(0, DEFAULT_MAX_QUEUED_QUERIES, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ErrorKind;

    fn spin_until_expired() -> Result<u64, QueryError> {
        let mut n = 0u64;
        while !crate::deadline::expired() {
            n += 1;
        }
        Ok(n)
    }

    #[tokio::test]
    async fn a_query_past_its_deadline_is_408() {
        let pool = QueryPool::new(1, 4, Duration::from_millis(50));
        let e = pool.run(Lane::Large, spin_until_expired).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("query_timeout_ms"), "{}", e.message());
    }

    #[tokio::test]
    async fn a_full_queue_is_429_and_lanes_are_separate() {
        let pool = Arc::new(QueryPool::new(1, 1, Duration::from_millis(400)));
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::Large, spin_until_expired).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::Large, || Ok(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let full = pool.run(Lane::Large, || Ok(2)).await.unwrap_err();
        assert_eq!(full.kind(), ErrorKind::Backpressure);
        assert!(full.retry_after_ms() > 0);
        assert_eq!(pool.run(Lane::Small, || Ok(3)).await.unwrap(), 3, "the small lane is free");
        assert_eq!(busy.await.unwrap().unwrap_err().kind(), ErrorKind::Timeout);
        // The queued query ran once the busy one gave its slot up (or, on a
        // slow machine, reached its own deadline first): never a 429.
        match queued.await.unwrap() {
            Ok(n) => assert_eq!(n, 1),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
        }
    }
}
