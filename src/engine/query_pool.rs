//! Bounded query execution: query evaluation (CPU work) runs on blocking
//! threads, at most a fixed number at once, under a per-request deadline, so
//! the runtime's async workers stay free for `/health`, I/O and every other
//! tenant however heavy the queries are.
//!
//! Invariants:
//! - Never more than `slots` evaluations of each lane run at once, plus one on
//!   the lane's guest slot (below): a query holds a slot of its lane for its
//!   whole evaluation. Queries on
//!   namespaces of at most [`SMALL_NAMESPACE_DOCS`] documents use their own
//!   lane, so a small tenant is not queued behind large scans (its work is
//!   bounded by its size and the request caps).
//! - Slots are shared fairly among tenants (a tenant is a project,
//!   `org/project`): a tenant may hold every regular slot of a lane (a node
//!   serving one project loses nothing), but never the lane's **guest slot**,
//!   which only a tenant holding no slot of the lane may take — so a project
//!   arriving while another holds every regular slot runs at once, on the
//!   guest slot. A freed slot goes to the waiting tenant holding the fewest
//!   slots of the lane, the one served least recently among equals (round
//!   robin), each tenant's own queries in arrival order. A project sending
//!   many or costly queries thus delays its own queries, not another
//!   project's. A free slot is never left idle while a query that may take
//!   it waits.
//! - At most `max_queued` queries wait for a slot; one more fails at once as
//!   [`super::ErrorKind::Backpressure`] with a retry hint (429 with
//!   `retry-after-ms`; the SDK retries it with backoff).
//! - The deadline covers waiting and evaluation. Past it the query fails as
//!   [`super::ErrorKind::Timeout`] (408, which the SDK retries) naming `query_timeout_ms`; an evaluation
//!   notices within a few hundred rows ([`crate::deadline`]) and its partial
//!   result is discarded, so the slot frees promptly. A query that stops
//!   waiting (deadline, or its request dropped) leaves the queue, and a slot
//!   granted to it as it left is passed on.
//! - An evaluation never holds the last async worker: it runs on a blocking
//!   thread ([`QueryPool::run`]) or on the caller's thread ([`QueryPool::run_here`]),
//!   there on the worker itself while the runtime's other workers are free of such
//!   evaluations (at most `workers - 1` at once in the process), else after the
//!   worker handed its other tasks to another thread (`tokio::task::block_in_place`).
//!   A one-worker runtime never evaluates on its worker. Why on the worker: the
//!   hand-off wakes a thread on another core, which the query's helpers then wait
//!   for (BENCHMARKS.md "An evaluation on its own worker (stop 64)"). A task woken on
//!   that worker just before would wait for the whole evaluation (tokio's per-worker
//!   LIFO slot, which no other worker takes from: another tenant's request waited a
//!   heavy query's length before its handler began), so the evaluation first moves
//!   it where another worker takes it ([`unstrand_the_lifo_slot`]).
//!   The slots' lock is held only for bookkeeping, never across an await or an
//!   evaluation.
//! - An evaluation may borrow its lane's idle regular slots for helper threads that search its
//!   segments beside it (`crate::fanout`): a slot is lent only while it is free and no query
//!   waits, held by the helper like a query's, and given back (passed on) when the helper ends.
//!   So a query alone on the node uses every core, and a busy node runs one thread per slot.
//! - Every evaluation runs in an integrity scope (`crate::integrity`): a read of segment bytes
//!   that changed since they were verified fails the query as `Corrupted` (its result is
//!   discarded), carrying the [`crate::integrity::Rot`] for the engine to act on.
//! - The pool belongs to the engine (one per engine, [`super::Engine::query_pool`]): every
//!   evaluation is entered through a read view (`engine/read.rs`), which runs it here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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
    large: Arc<FairSlots>,
    small: Arc<FairSlots>,
    waiting: AtomicUsize,
    /// Changed by a configuration reload ([`QueryPool::retune`]).
    max_queued: AtomicUsize,
    /// The per-query deadline in ms (reloadable too).
    timeout_ms: AtomicU64,
}

/// Evaluations running on an async worker itself, process-wide ([`WorkerTurn`]).
static ON_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// A turn to evaluate on the caller's async worker without handing the runtime to another
/// thread: granted while fewer than `workers - 1` evaluations hold one (so a worker is
/// always left to serve every other task: I/O, timers, other requests), given back on
/// drop. Counted per process, not per runtime: with several runtimes (tests) that only
/// grants fewer turns.
struct WorkerTurn;

impl WorkerTurn {
    fn take(workers: usize) -> Option<WorkerTurn> {
        let most = workers.saturating_sub(1);
        ON_WORKERS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < most).then_some(n + 1))
            .ok()
            .map(|_| WorkerTurn)
    }
}

impl Drop for WorkerTurn {
    fn drop(&mut self) {
        ON_WORKERS.fetch_sub(1, Ordering::SeqCst);
    }
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
            large: Arc::new(FairSlots::new(slots)),
            small: Arc::new(FairSlots::new(slots)),
            waiting: AtomicUsize::new(0),
            max_queued: AtomicUsize::new(max_queued),
            timeout_ms: AtomicU64::new(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Regular slots per lane (work split into parallel pieces uses this many at once).
    pub fn slots(&self) -> usize {
        self.large.slots()
    }

    /// Apply reloaded settings: they bound queries that start from now on.
    pub fn retune(&self, max_queued: usize, timeout: Duration) {
        self.max_queued.store(max_queued, Ordering::SeqCst);
        self.timeout_ms.store(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::SeqCst))
    }

    /// Evaluates `f` on a blocking thread once a slot of `lane` is free for
    /// `tenant` (the namespace's `org/project`), within the deadline.
    pub async fn run<T, F>(&self, lane: Lane, tenant: &str, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, QueryError> + Send + 'static,
    {
        let (permit, deadline) = self.slot(lane, tenant).await?;
        let task = tokio::task::spawn_blocking(move || {
            let lender = permit.lender();
            let _permit = permit;
            evaluate(deadline, lender, f)
        });
        match task.await {
            Ok(out) => self.outcome(out),
            Err(e) => Err(EngineError::caused_by(super::ErrorKind::Internal, "query task failed", e)),
        }
    }

    /// [`Self::run`] on the calling thread where the runtime allows it, skipping two thread
    /// hand-offs (a wake of a blocking thread, then of the task) — the fixed cost of a short
    /// query. On a multi-thread runtime the evaluation runs on the worker itself while
    /// another worker is left free ([`WorkerTurn`]), else the worker first hands its other
    /// tasks to another thread (`tokio::task::block_in_place`). Elsewhere (a current-thread
    /// runtime) as [`Self::run`]. For one evaluation per task at a time: evaluations a task
    /// runs side by side (`buffered`) would take turns.
    pub async fn run_here<T, F>(&self, lane: Lane, tenant: &str, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, QueryError> + Send + 'static,
    {
        let workers = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                h.metrics().num_workers()
            }
            _ => return self.run(lane, tenant, f).await,
        };
        let (permit, deadline) = self.slot(lane, tenant).await?;
        // A panic fails the query as on a blocking thread, not the caller's task.
        let run = std::panic::AssertUnwindSafe(move || {
            let lender = permit.lender();
            let _permit = permit;
            evaluate(deadline, lender, f)
        });
        let out = match WorkerTurn::take(workers) {
            Some(_turn) => {
                unstrand_the_lifo_slot();
                std::panic::catch_unwind(run)
            }
            None => tokio::task::block_in_place(|| std::panic::catch_unwind(run)),
        };
        match out {
            Ok(out) => self.outcome(out),
            Err(_) => Err(EngineError::internal("query task failed: the evaluation panicked")),
        }
    }

    /// A slot of `lane` for `tenant` (waiting for one if need be) and the query's deadline.
    async fn slot(&self, lane: Lane, tenant: &str) -> Result<(SlotPermit, Instant), EngineError> {
        let deadline = Instant::now() + self.timeout();
        let slots = match lane {
            Lane::Large => &self.large,
            Lane::Small => &self.small,
        };
        let permit = match slots.acquire(tenant, || self.admit())? {
            Acquired::Now(p) => p,
            Acquired::Later(ticket, waiting) => {
                let _waiting = waiting;
                self.wait_for(ticket, deadline).await?
            }
        };
        Ok((permit, deadline))
    }

    /// What an evaluation's outcome means to the caller.
    fn outcome<T>(&self, out: Evaluated<T>) -> Result<T, EngineError> {
        match out {
            Err(rot) => Err(EngineError::rot(rot)),
            Ok(Ok(out)) => Ok(out?),
            Ok(Err(crate::deadline::Expired)) => Err(self.timed_out()),
        }
    }

    /// Counts one more waiting query, or refuses it when `max_queued` wait.
    fn admit(&self) -> Result<Waiting<'_>, EngineError> {
        let max_queued = self.max_queued.load(Ordering::SeqCst);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= max_queued {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::backpressure(
                format!("too many queries waiting (max_queued_queries = {max_queued}); retry later"),
                QUEUE_FULL_RETRY_MS,
            ));
        }
        Ok(Waiting(&self.waiting))
    }

    async fn wait_for(&self, ticket: Ticket, deadline: Instant) -> Result<SlotPermit, EngineError> {
        match tokio::time::timeout_at(deadline.into(), ticket.granted()).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(EngineError::internal("the query pool dropped a waiting query")),
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

/// Frees the worker's LIFO slot before an evaluation on the worker. A task woken on this worker
/// just before sits in that slot, which no other worker takes from, and would wait for the whole
/// evaluation (another tenant's request waited a heavy query's length before its handler began:
/// `tests/tenant_fairness.rs`). A spawned empty task takes the slot: the task it held moves to the
/// worker's queue and a parked worker is woken to take it; with the slot empty, nothing else
/// happens. A `yield_now` would run that task too, but sends the worker searching, which wakes the
/// other core on every query (BENCHMARKS "An evaluation on its own worker (stop 64)").
fn unstrand_the_lifo_slot() {
    drop(tokio::spawn(async {}));
}

/// An evaluation's outcome: bytes found changed, past the deadline, or the query's own result.
type Evaluated<T> = Result<Result<Result<T, QueryError>, crate::deadline::Expired>, crate::integrity::Rot>;

/// Runs `f` in an integrity scope under `deadline`, on whichever thread calls it, with the
/// lane's idle slots lent to it (`crate::fanout`).
fn evaluate<T>(
    deadline: Instant,
    lender: Arc<dyn crate::fanout::Lender>,
    f: impl FnOnce() -> Result<T, QueryError>,
) -> Evaluated<T> {
    // Bytes that changed since they were verified fail the query whatever else happened.
    crate::integrity::within(|| {
        crate::deadline::with_deadline(deadline, || crate::fanout::with_lender(lender, f))
    })
}

/// Lends a lane's free regular slots to the helpers of one tenant's evaluation.
struct SlotLender {
    slots: Arc<FairSlots>,
    tenant: Arc<str>,
}

impl crate::fanout::Lender for SlotLender {
    fn lend(&self) -> Option<Box<dyn Send>> {
        self.slots.lend(&self.tenant).map(|p| Box::new(p) as Box<dyn Send>)
    }
}

/// One lane's slots, shared fairly among tenants (see the module's invariants).
#[derive(Debug)]
struct FairSlots {
    state: Mutex<SlotState>,
}

#[derive(Debug)]
struct SlotState {
    slots: usize,
    /// Regular slots held now, over all tenants.
    in_use: usize,
    /// Whether the guest slot is held (by a tenant that held no other slot when it took it).
    guest_in_use: bool,
    /// Tenants holding or waiting for a slot (an idle tenant is forgotten).
    tenants: HashMap<Arc<str>, Tenant>,
    /// Counts grants: a tenant's last one orders equals round robin.
    grants: u64,
    /// Numbers waiting queries, so a leaving one finds its entry.
    next_ticket: u64,
}

#[derive(Debug, Default)]
struct Tenant {
    running: usize,
    last_served: u64,
    queue: VecDeque<(u64, oneshot::Sender<SlotPermit>)>,
}

/// A slot held: given back (and passed on) when dropped.
#[derive(Debug)]
struct SlotPermit {
    slots: Arc<FairSlots>,
    tenant: Arc<str>,
    /// Holds the lane's guest slot (not a regular one).
    guest: bool,
}

/// A query's place in a lane's queue; dropping it leaves the queue.
struct Ticket {
    slots: Arc<FairSlots>,
    tenant: Arc<str>,
    id: u64,
    rx: oneshot::Receiver<SlotPermit>,
}

enum Acquired<W> {
    Now(SlotPermit),
    /// Queued, with what `admit` returned (held while waiting).
    Later(Ticket, W),
}

impl FairSlots {
    fn slots(&self) -> usize {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).slots
    }

    fn new(slots: usize) -> FairSlots {
        let state = SlotState {
            slots,
            in_use: 0,
            guest_in_use: false,
            tenants: HashMap::new(),
            grants: 0,
            next_ticket: 0,
        };
        FairSlots { state: Mutex::new(state) }
    }

    /// The bookkeeping; a panic elsewhere cannot leave it half-updated (no
    /// code that may panic runs under the lock), so a poisoned lock is used.
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `tenant` now if one is free to it, else a place in the
    /// queue once `admit` (the queue bound) allows it. Both decided under
    /// the lock, so no slot frees unseen between the two.
    fn acquire<W>(
        self: &Arc<Self>,
        tenant: &str,
        admit: impl FnOnce() -> Result<W, EngineError>,
    ) -> Result<Acquired<W>, EngineError> {
        let mut state = self.lock();
        let key = state.key(tenant);
        let running = state.tenants.entry(key.clone()).or_default().running;
        if state.in_use < state.slots {
            return Ok(Acquired::Now(state.grant(self, &key, false)));
        }
        if running == 0 && !state.guest_in_use {
            return Ok(Acquired::Now(state.grant(self, &key, true)));
        }
        let waiting = match admit() {
            Ok(w) => w,
            Err(e) => {
                state.forget_if_idle(&key);
                return Err(e);
            }
        };
        let (tx, rx) = oneshot::channel();
        let id = state.next_ticket;
        state.next_ticket += 1;
        if let Some(t) = state.tenants.get_mut(&key) {
            t.queue.push_back((id, tx));
        }
        Ok(Acquired::Later(Ticket { slots: self.clone(), tenant: key, id, rx }, waiting))
    }

    /// A regular slot for a helper of `tenant`'s evaluation, only while one is free and no query
    /// waits (a free slot is never left idle while a query that may take it waits, so a helper
    /// never takes a slot a waiting query could have had).
    fn lend(self: &Arc<Self>, tenant: &Arc<str>) -> Option<SlotPermit> {
        let mut state = self.lock();
        if state.in_use >= state.slots || state.tenants.values().any(|t| !t.queue.is_empty()) {
            return None;
        }
        Some(state.grant(self, tenant, false))
    }

    /// Gives `tenant`'s slot back and passes free slots on.
    fn release(self: &Arc<Self>, tenant: &Arc<str>, guest: bool) {
        let handed = {
            let mut state = self.lock();
            if guest {
                state.guest_in_use = false;
            } else {
                state.in_use = state.in_use.saturating_sub(1);
            }
            if let Some(t) = state.tenants.get_mut(tenant) {
                t.running = t.running.saturating_sub(1);
            }
            state.forget_if_idle(tenant);
            state.dispatch(self)
        };
        // Outside the lock: a permit whose query has left comes back here
        // (dropped), which takes the lock again.
        for (tx, permit) in handed {
            drop(tx.send(permit));
        }
    }

    /// Takes a leaving query's entry out of the queue (if it is still there).
    fn leave(&self, tenant: &Arc<str>, id: u64) {
        let mut state = self.lock();
        if let Some(t) = state.tenants.get_mut(tenant) {
            t.queue.retain(|(i, _)| *i != id);
        }
        state.forget_if_idle(tenant);
    }
}

impl SlotState {
    /// The map's key for `tenant` (shared by its permits and tickets).
    fn key(&self, tenant: &str) -> Arc<str> {
        self.tenants.get_key_value(tenant).map_or_else(|| Arc::from(tenant), |(k, _)| k.clone())
    }

    fn grant(&mut self, slots: &Arc<FairSlots>, tenant: &Arc<str>, guest: bool) -> SlotPermit {
        if guest {
            self.guest_in_use = true;
        } else {
            self.in_use += 1;
        }
        self.grants += 1;
        let grants = self.grants;
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.running += 1;
            t.last_served = grants;
        }
        SlotPermit { slots: slots.clone(), tenant: tenant.clone(), guest }
    }

    /// Fills the free slots from the queues, fewest slots held first, then
    /// least recently served, then the older query: (sender, permit) pairs
    /// to hand over once the lock is released.
    fn dispatch(&mut self, slots: &Arc<FairSlots>) -> Vec<(oneshot::Sender<SlotPermit>, SlotPermit)> {
        let mut handed = Vec::new();
        loop {
            let guest = self.in_use >= self.slots;
            if guest && self.guest_in_use {
                break;
            }
            let Some(tenant) = self.next_served(guest) else { break };
            let Some((_, tx)) = self.tenants.get_mut(&tenant).and_then(|t| t.queue.pop_front()) else {
                break;
            };
            handed.push((tx, self.grant(slots, &tenant, guest)));
        }
        handed
    }

    /// The waiting tenant a free slot goes to, if any may take one (the
    /// guest slot: only a tenant holding none).
    fn next_served(&self, guest: bool) -> Option<Arc<str>> {
        self.tenants
            .iter()
            .filter(|(_, t)| !guest || t.running == 0)
            .filter_map(|(k, t)| t.queue.front().map(|(id, _)| ((t.running, t.last_served, *id), k)))
            .min_by_key(|(order, _)| *order)
            .map(|(_, k)| k.clone())
    }

    fn forget_if_idle(&mut self, tenant: &Arc<str>) {
        if self.tenants.get(tenant).is_some_and(|t| t.running == 0 && t.queue.is_empty()) {
            self.tenants.remove(tenant);
        }
    }
}

impl SlotPermit {
    /// What lends this lane's idle slots to the evaluation holding this permit.
    fn lender(&self) -> Arc<dyn crate::fanout::Lender> {
        Arc::new(SlotLender { slots: self.slots.clone(), tenant: self.tenant.clone() })
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.slots.release(&self.tenant, self.guest);
    }
}

impl Ticket {
    /// The slot, once granted (`None` only if the pool dropped the entry).
    async fn granted(mut self) -> Option<SlotPermit> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slots.leave(&self.tenant, self.id);
        // A permit granted as the query left is in `rx`; dropping `rx` after
        // this returns gives it back (outside the lock), which passes it on.
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
        let e = pool.run(Lane::Large, "o/p", spin_until_expired).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("query_timeout_ms"), "{}", e.message());
    }

    #[tokio::test]
    async fn a_full_queue_is_429_and_lanes_are_separate() {
        let pool = Arc::new(QueryPool::new(1, 1, Duration::from_millis(400)));
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::Large, "o/p", spin_until_expired).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::Large, "o/p", || Ok(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let full = pool.run(Lane::Large, "o/p", || Ok(2)).await.unwrap_err();
        assert_eq!(full.kind(), ErrorKind::Backpressure);
        assert!(full.retry_after_ms() > 0);
        assert_eq!(pool.run(Lane::Small, "o/p", || Ok(3)).await.unwrap(), 3, "the small lane is free");
        assert_eq!(busy.await.unwrap().unwrap_err().kind(), ErrorKind::Timeout);
        // The queued query ran once the busy one gave its slot up (or, on a
        // slow machine, reached its own deadline first): never a 429.
        match queued.await.unwrap() {
            Ok(n) => assert_eq!(n, 1),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
        }
    }

    /// `run_here` evaluates on the caller's thread, and the runtime keeps serving its other
    /// tasks meanwhile (one worker: its core went to another thread while the query blocked).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn run_here_evaluates_on_the_caller_and_frees_the_worker() {
        let pool = QueryPool::new(1, 4, Duration::from_secs(30));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let caller = std::thread::current().id();
        let other = tokio::spawn(async move { tx.send(()).unwrap() });
        let here = pool
            .run_here(Lane::Large, "o/p", move || {
                // Blocks until another task of this one-worker runtime ran.
                rx.recv_timeout(Duration::from_secs(5)).map_err(|e| QueryError::Internal(e.to_string()))?;
                Ok(std::thread::current().id())
            })
            .await
            .unwrap();
        assert_eq!(here, caller);
        other.await.unwrap();
    }

    /// Evaluations on the workers themselves never hold the last one: two that each block
    /// until a task spawned after both started has run, at once on a two-worker runtime, both
    /// finish (one may hold its worker; the other hands its worker's tasks to another thread).
    /// With both on their workers, nothing would run that task: both would fail at 5 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn evaluations_on_the_workers_leave_one_serving() {
        let pool = Arc::new(QueryPool::new(2, 4, Duration::from_secs(30)));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let mut releases = Vec::new();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            releases.push(release_tx);
            let (pool, started) = (pool.clone(), started_tx.clone());
            runs.push(tokio::spawn(async move {
                pool.run_here(Lane::Large, "o/p", move || {
                    started.send(()).map_err(|e| QueryError::Internal(e.to_string()))?;
                    release_rx
                        .recv_timeout(Duration::from_secs(5))
                        .map_err(|e| QueryError::Internal(e.to_string()))
                })
                .await
            }));
        }
        // This thread drives the test, not a worker: waiting here holds no worker.
        for _ in 0..2 {
            started_rx.recv_timeout(Duration::from_secs(5)).expect("both evaluations start");
        }
        tokio::spawn(async move {
            releases.into_iter().for_each(|r| {
                let _ = r.send(());
            })
        });
        for run in runs {
            run.await.unwrap().expect("released by a task a free worker ran");
        }
    }

    /// A task spawned (or woken) by the caller just before its evaluation lands in the
    /// worker's LIFO slot, which no other worker takes from: it runs while the evaluation
    /// blocks (tenant_fairness's tiny query waited a whole heavy query before its handler began).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_woken_just_before_an_evaluation_on_the_worker_does_not_wait_for_it() {
        let pool = Arc::new(QueryPool::new(2, 4, Duration::from_secs(30)));
        let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn(async move {
            tokio::spawn(async move { ran_tx.send(()).unwrap() });
            pool.run_here(Lane::Large, "o/p", move || {
                // Blocks until the task spawned above ran (the evaluation is on a worker).
                ran_rx.recv_timeout(Duration::from_secs(2)).map_err(|e| QueryError::Internal(e.to_string()))
            })
            .await
        });
        caller.await.unwrap().expect("the task spawned before the evaluation ran during it");
    }

    /// `run_here` keeps `run`'s contract: the deadline (408), a panic failing the query
    /// (not the caller) with its slot given back, and a current-thread runtime served too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_here_keeps_the_deadline_and_survives_a_panic() {
        let pool = QueryPool::new(1, 4, Duration::from_millis(50));
        let e = pool.run_here(Lane::Large, "o/p", spin_until_expired).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = pool.run_here(Lane::Large, "o/p", || -> Result<u8, QueryError> { panic!("boom") }).await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Internal);
        assert_eq!(pool.run_here(Lane::Large, "o/p", || Ok(5)).await.unwrap(), 5);
        let state = pool.large.lock();
        assert_eq!((state.in_use, state.tenants.len()), (0, 0), "{state:?}");
    }

    #[tokio::test]
    async fn run_here_on_a_current_thread_runtime_runs_on_a_blocking_thread() {
        let pool = QueryPool::new(1, 4, Duration::from_secs(30));
        let caller = std::thread::current().id();
        let there = pool.run_here(Lane::Large, "o/p", || Ok(std::thread::current().id())).await.unwrap();
        assert_ne!(there, caller);
    }

    /// A query that reports its start and holds its slot until told to end.
    struct Gated {
        started: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
        ends: Vec<std::sync::mpsc::Sender<()>>,
        runs: Vec<tokio::task::JoinHandle<Result<(), EngineError>>>,
    }

    impl Gated {
        /// Submits query `name` of `tenant`; it runs until `end(i)`, `i` its
        /// submission order.
        fn submit(&mut self, pool: &Arc<QueryPool>, tenant: &'static str, name: &'static str, tx: &Tx) {
            let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
            let (pool, tx) = (pool.clone(), tx.clone());
            self.ends.push(end_tx);
            self.runs.push(tokio::spawn(async move {
                pool.run(Lane::Large, tenant, move || {
                    let _ = tx.send(name);
                    let _ = end_rx.recv();
                    Ok(())
                })
                .await
            }));
        }

        fn end(&self, i: usize) {
            self.ends[i].send(()).unwrap();
        }

        /// The next query to start, if one does within a while.
        async fn next_started(&mut self) -> Option<&'static str> {
            tokio::time::timeout(Duration::from_secs(5), self.started.recv()).await.ok().flatten()
        }

        /// That no query starts for a moment.
        async fn none_starts(&mut self) {
            let r = tokio::time::timeout(Duration::from_millis(100), self.started.recv()).await;
            assert!(r.is_err(), "{r:?} started");
        }
    }

    type Tx = tokio::sync::mpsc::UnboundedSender<&'static str>;

    /// Waits until `n` queries wait for a slot (submissions are tasks: this
    /// fixes their order in the queue).
    async fn queued(pool: &QueryPool, n: usize) {
        let since = Instant::now();
        while pool.waiting.load(Ordering::SeqCst) != n {
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "{} queued, not {n}",
                pool.waiting.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn gated(slots: usize) -> (Arc<QueryPool>, Gated, Tx) {
        let pool = Arc::new(QueryPool::new(slots, 64, Duration::from_secs(30)));
        let (tx, started) = tokio::sync::mpsc::unbounded_channel();
        (pool, Gated { started, ends: Vec::new(), runs: Vec::new() }, tx)
    }

    /// Project A's heavy queries take every regular slot (a single project
    /// loses nothing) but never the guest slot: B's tiny query runs at once
    /// while A's third query waits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_project_runs_at_once_on_the_guest_slot() {
        let (pool, mut g, tx) = gated(2);
        // One at a time: submissions are tasks, so their order is fixed by waiting for each.
        for name in ["a1", "a2"] {
            g.submit(&pool, "o/a", name, &tx);
            assert_eq!(g.next_started().await, Some(name));
        }
        g.submit(&pool, "o/a", "a3", &tx);
        queued(&pool, 1).await;
        g.none_starts().await; // a3 waits: the guest slot is not A's to take
        let started = Instant::now();
        assert_eq!(pool.run(Lane::Large, "o/b", || Ok(7)).await.unwrap(), 7);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        g.end(0);
        assert_eq!(g.next_started().await, Some("a3"));
        g.end(1);
        g.end(2);
        for r in g.runs {
            r.await.unwrap().unwrap();
        }
    }

    /// A freed slot goes to the waiting project holding the fewest slots,
    /// not to the query that waited longest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_freed_slot_goes_to_the_project_holding_fewest() {
        let (pool, mut g, tx) = gated(4);
        // Four regular slots, then the guest slot to D.
        for (tenant, name) in [("o/a", "a1"), ("o/a", "a2"), ("o/b", "b1"), ("o/b", "b2"), ("o/d", "d1")] {
            g.submit(&pool, tenant, name, &tx);
            assert_eq!(g.next_started().await, Some(name));
        }
        g.submit(&pool, "o/a", "a3", &tx); // waits first, A holding 2
        queued(&pool, 1).await;
        g.submit(&pool, "o/c", "c1", &tx); // then C, holding none (the guest slot is taken)
        queued(&pool, 2).await;
        g.end(2); // b1 ends
        assert_eq!(g.next_started().await, Some("c1"));
        g.end(3); // b2 ends
        assert_eq!(g.next_started().await, Some("a3"));
        for i in [0, 1, 4, 5, 6] {
            g.end(i);
        }
        for r in g.runs {
            r.await.unwrap().unwrap();
        }
    }

    /// Among waiting projects holding as many slots, the one served least
    /// recently goes first (round robin), each project's queries in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn equal_projects_take_turns() {
        let (pool, mut g, tx) = gated(1);
        g.submit(&pool, "o/x", "x1", &tx);
        assert_eq!(g.next_started().await, Some("x1"));
        g.submit(&pool, "o/g", "g1", &tx); // the guest slot, held throughout
        assert_eq!(g.next_started().await, Some("g1"));
        for (n, (tenant, name)) in [("o/a", "a1"), ("o/a", "a2"), ("o/a", "a3"), ("o/b", "b1"), ("o/b", "b2")]
            .into_iter()
            .enumerate()
        {
            g.submit(&pool, tenant, name, &tx);
            queued(&pool, n + 1).await;
        }
        // Submission order: x1 0, g1 1, a1 2, a2 3, a3 4, b1 5, b2 6.
        for (ends, next) in [(0, "a1"), (2, "b1"), (5, "a2"), (3, "b2"), (6, "a3")] {
            g.end(ends);
            assert_eq!(g.next_started().await, Some(next));
        }
        g.end(4);
        g.end(1);
        for r in g.runs {
            r.await.unwrap().unwrap();
        }
    }

    /// A query that stops waiting (its deadline) leaves the queue: the slot
    /// goes to the next one, and the counts stay right.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_that_stops_waiting_leaves_the_queue() {
        let pool = Arc::new(QueryPool::new(1, 8, Duration::from_millis(300)));
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Lane::Large, "o/a", move || Ok(end_rx.recv())).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The same project: the guest slot is not its to take.
        let gone = pool.run(Lane::Large, "o/a", || Ok(1)).await.unwrap_err();
        assert_eq!(gone.kind(), ErrorKind::Timeout);
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
        end_tx.send(()).unwrap();
        let _ = busy.await.unwrap(); // ran past its deadline: 408 or not, it is over
        assert_eq!(pool.run(Lane::Large, "o/b", || Ok(2)).await.unwrap(), 2);
        let state = pool.large.lock();
        assert_eq!((state.in_use, state.tenants.len()), (0, 0), "{state:?}");
    }

    /// An evaluation alone is lent the lane's other slot; a busy lane lends nothing, and a slot a
    /// lent helper gives back goes to the query waiting for it, not to another helper.
    #[test]
    fn only_an_idle_slot_is_lent() {
        let slots = Arc::new(FairSlots::new(2));
        let Ok(Acquired::Now(mine)) = slots.acquire("o/a", || Ok(())) else { panic!("a free slot") };
        let lent = slots.lend(&mine.tenant).expect("the other slot is idle");
        assert!(slots.lend(&mine.tenant).is_none(), "both slots in use");
        let Ok(Acquired::Now(_guest)) = slots.acquire("o/b", || Ok(())) else { panic!("the guest slot") };
        let Ok(Acquired::Later(ticket, ())) = slots.acquire("o/c", || Ok(())) else { panic!("queued") };
        drop(lent);
        assert!(slots.lend(&mine.tenant).is_none(), "the freed slot went to the waiting query");
        let state = slots.lock();
        assert_eq!((state.in_use, state.tenants["o/c"].running), (2, 1), "{state:?}");
        drop(state);
        drop(ticket);
    }
}
