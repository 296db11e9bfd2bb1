//! The node's memory budget: how much memory the daemon lets itself use, what
//! counts against it, and the backpressure that keeps writes inside it.
//!
//! The budget is derived once at start (and again on `SIGHUP`) unless
//! `memory_budget_bytes` sets it: the memory limit of the process's cgroup
//! (v2 `memory.max`, the lowest along its path; v1 `memory.limit_in_bytes`),
//! capped by `MemTotal`, else `MemAvailable` plus the process's own resident
//! memory — times [`LIMIT_SHARE`]; the rest is headroom for what the budget
//! cannot see at once (the page cache of mapped segments and spilled vectors
//! the kernel charges to the cgroup, allocator slack, a compaction's builders
//! growing between two checks).
//!
//! Invariants:
//! - Use is the process's anonymous resident memory (`/proc/self/statm`:
//!   resident − file-backed, which the kernel cannot reclaim without swap)
//!   plus the bodies of writes admitted and not yet answered (at their
//!   declared length, then at the length they decode to once read: a gzip
//!   or chunked body is charged in full before it is parsed; once parsed, its
//!   full-text values are charged again, [`TEXT_COST_FACTOR`] times, for the
//!   tokens and postings they become before it is applied). Mapped files
//!   (segments, spilled overlay vectors, compaction spools) are page cache the
//!   kernel reclaims under the limit, so they do not count.
//! - A write is admitted only while use plus its body's cost stays within
//!   [`WRITE_SHARE`] of the budget; the rest is left to queries and
//!   compaction, which are never refused for memory. Before refusing, the
//!   engine sheds what it can (every unpinned loaded state but the one in use,
//!   freed heap pages, a compaction of the overlay kicked), at most once per
//!   [`RELIEF_INTERVAL_MS`]. A refusal is `Backpressure` (429 with
//!   `retry-after`), so nothing acknowledged is ever lost and writes resume by
//!   themselves once use falls.
//! - The memory tier (loaded states, overlay heap and full-text overlay index
//!   included) is budgeted [`TIER_SHARE`] of the node budget in the daemon.
//! - A compaction's index builds get [`COMPACTION_SHARE`]: an output segment
//!   holds at most as many rows as fit it at an estimated
//!   [`BUILD_BYTES_PER_ROW`] + [`BUILD_BYTES_PER_DIM`] × dimensions each
//!   (never fewer than [`MIN_SEGMENT_ROWS`], never more than
//!   `max_segment_rows`), since one segment's builds are held at once.
//! - While a compaction builds, the memory one output segment's builds are
//!   expected to take ([`BUILD_HELD_BYTES_PER_ROW`] + [`BUILD_HELD_BYTES_PER_DIM`]
//!   × dimensions a row) is held against the budget
//!   ([`Engine::hold_build_memory`]) as a write body is: a
//!   write admitted just before the builders grow would otherwise see room
//!   they are about to take. It is counted twice as the builders grow into
//!   it (in use and held), which errs towards refusing writes, never towards
//!   the OOM killer.
//! - A compaction's graphs get 8-bit traversal codes while the namespace's
//!   rows would take at most [`SQ8_GRAPH_SHARE`] of the budget with them,
//!   4-bit RaBitQ codes past it (`graph_codes = "auto"`): serving keeps the
//!   traversal bytes resident, and a namespace larger than the node's memory
//!   must fit them in a fraction of it.
//! - An engine opened without a budget ([`MemoryBudget::unbounded`]) never
//!   reads `/proc` on the write path.
//! - Every path is read under an injectable root (`/` in the daemon), so tests
//!   derive budgets from fake `/sys` and `/proc` trees.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::compact::GraphCodeChoice;
use super::{Engine, EngineError};
use crate::index::vector::graph::GraphCode;
use crate::layout::NsPath;

/// The share of the limit the budget takes (4/5): the rest is headroom.
pub const LIMIT_SHARE: (u64, u64) = (4, 5);
/// The share of the budget past which writes are refused (9/10).
pub const WRITE_SHARE: (u64, u64) = (9, 10);
/// The share of the budget the memory tier's loaded states get (1/2).
pub const TIER_SHARE: (u64, u64) = (1, 2);
/// The share of the budget one compaction's index builds get (1/4).
pub const COMPACTION_SHARE: (u64, u64) = (1, 4);
/// Build memory per output row besides its vectors: id, graph links, lists.
/// Measured: 368k rows of 384-d in one segment took anonymous memory from
/// 340 MB to 519 MB (BENCHMARKS.md, "Memory budget").
pub const BUILD_BYTES_PER_ROW: u64 = 256;
/// Build memory per output row and vector dimension (codes, sampled rows).
pub const BUILD_BYTES_PER_DIM: u64 = 4;
/// What a compaction's builds are expected to grow use by, per output row
/// besides its vectors, and per row and dimension: held against the budget
/// while they run ([`Engine::hold_build_memory`]). Measured: 486 B a row at
/// 384-d (the 368k-row build above). Smaller than the segment cap's
/// estimate, which must leave room for a build's transient peaks; held in
/// full while the builders also grow into use, this already errs towards
/// refusing writes. At 300k rows in a 246 MiB cgroup (BENCHMARKS.md, "Memory
/// budget"): holding nothing let a build take use 13 MB past the budget;
/// holding the cap's estimate cut ingest to 1.8k rows/s; this, 11.6k.
pub const BUILD_HELD_BYTES_PER_ROW: u64 = 128;
/// See [`BUILD_HELD_BYTES_PER_ROW`].
pub const BUILD_HELD_BYTES_PER_DIM: u64 = 1;
/// The share of the budget a namespace's graph traversal bytes may take with
/// 8-bit codes (1/4): past it, new segments get 4-bit RaBitQ codes
/// (`graph_codes = "auto"`, the daemon's default). The traversal bytes are
/// what a warm query walks, so they are what serving keeps resident: at 1M
/// 384-d rows 8-bit codes take 0.34× the raw vectors, 4-bit ones 0.22×
/// (BENCHMARKS.md, "Graph codes chosen by the memory budget").
pub const SQ8_GRAPH_SHARE: (u64, u64) = (1, 4);
/// Traversal bytes a row costs per vector attribute with 8-bit codes besides
/// one byte per dimension: its norm (4) and 32 links of 4 bytes.
pub const SQ8_ROW_OVERHEAD: u64 = 132;
/// The fewest rows a budget makes an output segment hold.
pub const MIN_SEGMENT_ROWS: usize = 10_000;
/// What a write body costs while in flight, per byte: the body buffered, the
/// request typed from it, its WAL record and its rows entering the overlay.
/// Measured (BENCHMARKS.md, "Memory budget"): a fresh daemon's anonymous
/// memory grew by 4.25× a 10 MB and a 42 MB body of base64 vectors while
/// each was written (1.0–3.0× once its heap had room from earlier writes);
/// at 2× four writers in flight took a 246 MiB cgroup 33–53 MB past the
/// budget. The rest of a first write's growth is the headroom's.
pub const BODY_COST_FACTOR: u64 = 4;
/// What a byte of full-text value costs in flight on top of its body's
/// [`BODY_COST_FACTOR`]: its tokens and, for 64 or more rows with text, the
/// overlay chunk built from them (analysed before the write queues and held
/// until it is answered, the chunk until the commit takes it), and the
/// overlay's postings and terms. Measured (BENCHMARKS.md, "What a full-text
/// write costs in flight", and "A write's overlay chunk built before its
/// commit (stop 65)"): a fresh daemon's anonymous memory grew by up to 11.8×
/// the body while writes of the 1M BM25 corpus's rows were in flight (2.2 MB
/// bodies, four at once; the same before the chunk was built ahead), by 2.7×
/// for a base64 vector body.
pub const TEXT_COST_FACTOR: u64 = 9;
/// Shedding under pressure runs at most this often.
pub const RELIEF_INTERVAL_MS: u64 = 1000;
/// The retry hint of a write refused for memory.
pub const RETRY_AFTER_MS: u64 = 1000;
/// A cgroup v1 "limit" this large means no limit (the kernel's
/// `PAGE_COUNTER_MAX` in bytes is just below 2^63).
const UNLIMITED_V1: u64 = 1 << 60;

/// The memory tier's byte budget within a node budget of `node_bytes`.
pub fn tier_bytes(node_bytes: u64) -> u64 {
    share(node_bytes, TIER_SHARE)
}

fn share(v: u64, (num, den): (u64, u64)) -> u64 {
    u64::try_from(u128::from(v) * u128::from(num) / u128::from(den)).unwrap_or(u64::MAX)
}

/// Where a limit came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// `memory_budget_bytes` was set: the budget itself, no share taken.
    Configured,
    /// A cgroup v2 `memory.max` (the file).
    CgroupV2(PathBuf),
    /// A cgroup v1 `memory.limit_in_bytes` (the file).
    CgroupV1(PathBuf),
    /// `MemAvailable` of `/proc/meminfo` plus the process's resident memory.
    MemAvailable,
}

/// A resolved budget and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The budget in bytes.
    pub bytes: u64,
    /// The limit it was derived from (equal to `bytes` when configured).
    pub limit: u64,
    /// Where the limit came from.
    pub source: LimitSource,
}

impl Derived {
    /// A budget set by configuration.
    pub fn configured(bytes: u64) -> Derived {
        Derived { bytes, limit: bytes, source: LimitSource::Configured }
    }

    /// How it was found, for `config check` and the start-up log.
    pub fn describe(&self) -> String {
        let of = |what: String| format!("{} of {what} ({} bytes)", fraction(LIMIT_SHARE), self.limit);
        match &self.source {
            LimitSource::Configured => "set by memory_budget_bytes".into(),
            LimitSource::CgroupV2(p) => of(format!("cgroup v2 {}", p.display())),
            LimitSource::CgroupV1(p) => of(format!("cgroup v1 {}", p.display())),
            LimitSource::MemAvailable => of("MemAvailable + own RSS".into()),
        }
    }
}

fn fraction((num, den): (u64, u64)) -> String {
    format!("{num}/{den}")
}

/// A configured budget, or the one derived from the files under `root`.
pub fn resolve(configured: Option<u64>, root: &Path) -> Derived {
    configured.map_or_else(|| derive(root), Derived::configured)
}

/// The budget derived from the cgroup limit or `MemAvailable` under `root`.
pub fn derive(root: &Path) -> Derived {
    let total = meminfo(root, "MemTotal:");
    let (limit, source) = match cgroup_limit(root) {
        Some((limit, file)) => (total.map_or(limit, |t| limit.min(t)), file),
        None => {
            let available = meminfo(root, "MemAvailable:").or(total).unwrap_or(0);
            (available.saturating_add(own_rss(root)), LimitSource::MemAvailable)
        }
    };
    Derived { bytes: share(limit, LIMIT_SHARE), limit, source }
}

/// The process's cgroup memory limit: v2 (the lowest `memory.max` from its
/// cgroup up to the root), else v1; `None` when unlimited or unknown.
fn cgroup_limit(root: &Path) -> Option<(u64, LimitSource)> {
    let text = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let fs = root.join("sys/fs/cgroup");
    if let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) {
        if let Some(found) = v2_limit(&fs, path) {
            return Some(found);
        }
    }
    let path = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then_some(path)
    })?;
    v1_limit(&fs.join("memory"), path)
}

fn v2_limit(fs: &Path, path: &str) -> Option<(u64, LimitSource)> {
    let mut dir = fs.join(path.trim_start_matches('/'));
    let mut lowest: Option<(u64, PathBuf)> = None;
    loop {
        let file = dir.join("memory.max");
        if let Some(limit) = read_limit(&file, u64::MAX) {
            if lowest.as_ref().is_none_or(|(l, _)| limit < *l) {
                lowest = Some((limit, file));
            }
        }
        if dir == fs || !dir.pop() {
            break;
        }
    }
    lowest.map(|(l, f)| (l, LimitSource::CgroupV2(f)))
}

fn v1_limit(mount: &Path, path: &str) -> Option<(u64, LimitSource)> {
    // Inside a container the host's path may not exist under the mount: its
    // own cgroup is then the mount's root.
    let own = mount.join(path.trim_start_matches('/')).join("memory.limit_in_bytes");
    let file = if own.exists() { own } else { mount.join("memory.limit_in_bytes") };
    read_limit(&file, UNLIMITED_V1).map(|l| (l, LimitSource::CgroupV1(file)))
}

/// A limit file's value; `None` when absent, unlimited, or unreadable
/// (logged: a budget is then derived from what else there is).
fn read_limit(file: &Path, unlimited_from: u64) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    match parse_limit(&text) {
        Ok(Some(v)) if v < unlimited_from => Some(v),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "ignoring an unreadable memory limit");
            None
        }
    }
}

/// A cgroup limit file's text: `max` is unlimited (`None`), else a byte
/// count; anything else is an error naming what was found.
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "max" => Ok(None),
        t => t.parse().map(Some).map_err(|_| format!("expected a byte count or \"max\", found {t:?}")),
    }
}

/// A `/proc/meminfo` field in bytes.
fn meminfo(root: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let kib: u64 =
        text.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn own_rss(root: &Path) -> u64 {
    statm(root).map_or(0, |(resident, _)| resident)
}

/// Resident and anonymous resident bytes from `/proc/self/statm` (pages:
/// size, resident, shared — the file-backed part — ...).
fn statm(root: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(root.join("proc/self/statm")).ok()?;
    let mut f = text.split_whitespace().skip(1).map(str::parse::<u64>);
    let (resident, shared) = (f.next()?.ok()?, f.next()?.ok()?);
    let page = rustix::param::page_size() as u64;
    Some((resident * page, resident.saturating_sub(shared) * page))
}

/// Rows whose index builds of `dims` dimensions fit the compaction's share of
/// `budget`, between [`MIN_SEGMENT_ROWS`] and `configured`.
fn build_rows(budget: u64, dims: u64, configured: usize) -> usize {
    let rows = share(budget, COMPACTION_SHARE) / (BUILD_BYTES_PER_ROW + BUILD_BYTES_PER_DIM * dims);
    usize::try_from(rows).unwrap_or(usize::MAX).max(MIN_SEGMENT_ROWS).min(configured)
}

/// The codes a graph built with `budget` gets for a namespace of `rows` rows
/// carrying `attrs` vector attributes of `dims` dimensions in all: 8-bit
/// while their traversal bytes fit [`SQ8_GRAPH_SHARE`] of the budget.
fn graph_code_within(budget: u64, rows: u64, dims: u64, attrs: u64) -> GraphCode {
    let sq8 = rows.saturating_mul(dims.saturating_add(SQ8_ROW_OVERHEAD.saturating_mul(attrs)));
    if sq8 > share(budget, SQ8_GRAPH_SHARE) {
        GraphCode::RaBitQ { bits: 4 }
    } else {
        GraphCode::Sq8
    }
}

/// Vector dimensions a row of `state` carries: the default vector and every
/// named one.
fn vector_dims(state: &crate::state::NsState) -> u64 {
    vector_attrs(state).map(u64::from).sum()
}

/// The dimensions of each vector attribute of `state` (the default one first).
fn vector_attrs(state: &crate::state::NsState) -> impl Iterator<Item = u32> + '_ {
    let named =
        state.schema.iter().filter(|(k, _)| k.as_str() != crate::model::VECTOR_ATTR).filter_map(|(_, a)| {
            match a.ty {
                crate::schema::AttrType::Vector { dim, .. } => u32::try_from(dim).ok(),
                _ => None,
            }
        });
    state.vector_dim.into_iter().chain(named)
}

/// The budget a running engine enforces, and what is reserved against it.
#[derive(Debug)]
pub struct MemoryBudget {
    /// The budget in bytes (`u64::MAX`: none).
    bytes: AtomicU64,
    /// Costs of write bodies admitted and not yet answered.
    reserved: Arc<AtomicU64>,
    /// When shedding last ran (engine clock, ms).
    last_relief_ms: AtomicU64,
    /// Writes refused for memory.
    refusals: AtomicU64,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::unbounded()
    }
}

impl MemoryBudget {
    /// No budget: nothing is measured, every write is admitted.
    pub fn unbounded() -> MemoryBudget {
        MemoryBudget::new(u64::MAX)
    }

    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> MemoryBudget {
        MemoryBudget {
            bytes: AtomicU64::new(bytes),
            reserved: Arc::default(),
            last_relief_ms: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// The budget in bytes (`u64::MAX`: none).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Replace the budget (a reload).
    pub fn set(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Use now: anonymous resident memory plus reserved write bodies.
    pub fn used(&self) -> u64 {
        let anon = statm(Path::new("/")).map_or(0, |(_, anon)| anon);
        anon.saturating_add(self.reserved.load(Ordering::Relaxed))
    }

    /// Writes refused for memory so far.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Past this use, writes are refused.
    pub fn write_threshold(&self) -> u64 {
        share(self.bytes(), WRITE_SHARE)
    }

    /// Reserve `cost` whatever use is (work that is never refused for
    /// memory, so that writes see it).
    fn hold(&self, cost: u64) -> Admission {
        self.reserved.fetch_add(cost, Ordering::Relaxed);
        Admission { reserved: self.reserved.clone(), cost }
    }

    /// Reserve `cost` if use stays within the write threshold with it.
    fn try_reserve(&self, cost: u64) -> Option<Admission> {
        let admission = Admission { reserved: self.reserved.clone(), cost };
        self.reserved.fetch_add(cost, Ordering::Relaxed);
        (self.used() <= self.write_threshold()).then_some(admission)
    }
}

/// A write's reservation against the budget, released when dropped (once
/// the write is answered).
#[must_use]
#[derive(Debug)]
pub struct Admission {
    reserved: Arc<AtomicU64>,
    cost: u64,
}

impl Admission {
    /// Take `other`'s reservation into this one: both are released together.
    fn absorb(&mut self, mut other: Admission) {
        self.cost += std::mem::take(&mut other.cost);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.cost, Ordering::Relaxed);
    }
}

impl Engine {
    /// The node's memory budget.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.node_memory
    }

    /// Rows one output segment of `state` may hold: `configured`, lowered so
    /// the segment's index builds fit the compaction's share of the budget.
    pub(super) fn segment_rows_cap(&self, state: &crate::state::NsState, configured: usize) -> usize {
        let budget = self.node_memory.bytes();
        if budget == u64::MAX {
            return configured;
        }
        build_rows(budget, vector_dims(state), configured)
    }

    /// The traversal codes the graphs of a compaction of `state` get: `choice`,
    /// or with [`GraphCodeChoice::ByBudget`] 8-bit codes unless the
    /// namespace's rows would take more than [`SQ8_GRAPH_SHARE`] of the
    /// budget with them (4-bit RaBitQ then; 8-bit without a budget).
    pub(super) fn graph_code_for(&self, state: &crate::state::NsState, choice: GraphCodeChoice) -> GraphCode {
        let budget = self.node_memory.bytes();
        match choice {
            GraphCodeChoice::Fixed(code) => code,
            GraphCodeChoice::ByBudget if budget == u64::MAX => GraphCode::Sq8,
            GraphCodeChoice::ByBudget => {
                let attrs = vector_attrs(state).count() as u64;
                graph_code_within(budget, state.len(), vector_dims(state), attrs)
            }
        }
    }

    /// Hold the estimated build memory of one output segment of `rows` rows
    /// of `state` against the budget while a compaction builds (module doc);
    /// `None` without a budget.
    pub(super) fn hold_build_memory(&self, state: &crate::state::NsState, rows: usize) -> Option<Admission> {
        if self.node_memory.bytes() == u64::MAX {
            return None;
        }
        let per_row = BUILD_HELD_BYTES_PER_ROW + BUILD_HELD_BYTES_PER_DIM * vector_dims(state);
        Some(self.node_memory.hold(per_row.saturating_mul(rows as u64)))
    }

    /// Admit a write to `path` whose body is `body_bytes` long, or refuse it
    /// (429, `Backpressure`) when it would take use past the write threshold
    /// even after shedding. Hold the admission until the write is answered.
    pub async fn admit_write(
        &self,
        path: &NsPath,
        body_bytes: u64,
    ) -> Result<Option<Admission>, EngineError> {
        if self.node_memory.bytes() == u64::MAX {
            return Ok(None);
        }
        let cost = body_bytes.saturating_mul(BODY_COST_FACTOR);
        self.reserve(path, cost, || format!("a {body_bytes}-byte write")).await.map(Some)
    }

    /// Charge an admitted write for the body it turned out to be once read:
    /// `body_bytes` after decompression. A gzip body's declared length is
    /// its compressed size and a chunked body declares none, so admission
    /// alone would let either in nearly free; the rest is reserved now, or
    /// the write refused (429) before it is parsed.
    pub async fn charge_body(
        &self,
        path: &NsPath,
        admission: &mut Option<Admission>,
        body_bytes: u64,
    ) -> Result<(), EngineError> {
        let Some(held) = admission else { return Ok(()) };
        let cost = body_bytes.saturating_mul(BODY_COST_FACTOR);
        if cost > held.cost {
            held.absorb(self.reserve(path, cost - held.cost, || format!("a {body_bytes}-byte write")).await?);
        }
        Ok(())
    }

    /// Charge an admitted write, once parsed, for its full-text values (the
    /// bytes of the strings it sets on attributes the namespace will search
    /// as full text after the request's own settings): [`TEXT_COST_FACTOR`]
    /// each, on top of its body's charge; 429 (`Backpressure`) when that
    /// does not fit even after shedding.
    pub async fn charge_text(
        &self,
        path: &NsPath,
        admission: &mut Option<Admission>,
        req: &super::WriteRequest,
    ) -> Result<(), EngineError> {
        let Some(held) = admission else { return Ok(()) };
        let text = self.full_text_bytes(path, &req.record);
        if text > 0 {
            let what = || format!("the analysis of a write's {text} bytes of full text");
            held.absorb(self.reserve(path, text.saturating_mul(TEXT_COST_FACTOR), what).await?);
        }
        Ok(())
    }

    /// The bytes of `record`'s strings on full-text attributes, under the schema
    /// its namespace's cached state (or none) and its own settings give.
    fn full_text_bytes(&self, path: &NsPath, record: &crate::ops::RequestRecord) -> u64 {
        use crate::model::{value_bytes, Value};
        if record.ops.attr_maps().next().is_none() {
            return 0;
        }
        let cached = super::cached(&self.handle(path)).map(|s| s.state);
        let empty = crate::state::NsState::default();
        let Some(schema) = super::apply::schema_after(cached.as_deref().unwrap_or(&empty), record) else {
            return 0;
        };
        let attrs: Vec<&String> =
            crate::state::text::full_text_attrs(&schema).map(|(name, _)| name).collect();
        let text =
            |v: &Value| if matches!(v, Value::Str(_) | Value::Array(_)) { value_bytes(v) as u64 } else { 0 };
        let in_map = |m: &crate::attr_map::AttrMap<Value>| {
            attrs.iter().filter_map(|a| m.get(a.as_str())).map(text).sum::<u64>()
        };
        record.ops.attr_maps().map(in_map).sum()
    }

    /// Reserve `cost` for `what` (named in the refusal), shedding once if
    /// it does not fit; `Backpressure` when it still does not.
    async fn reserve(
        &self,
        path: &NsPath,
        cost: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Admission, EngineError> {
        let budget = &self.node_memory;
        if let Some(a) = budget.try_reserve(cost) {
            return Ok(a);
        }
        if self.relieve_memory_pressure(path).await {
            if let Some(a) = budget.try_reserve(cost) {
                return Ok(a);
            }
        }
        budget.refusals.fetch_add(1, Ordering::Relaxed);
        Err(EngineError::backpressure(
            format!(
                "memory budget reached: {} bytes in use, {} would pass the write \
                 threshold of {} bytes (9/10 of memory_budget_bytes {}); retry once compaction frees memory",
                budget.used(),
                what(),
                budget.write_threshold(),
                budget.bytes()
            ),
            RETRY_AFTER_MS,
        ))
    }

    /// Shed what memory the engine can give back at once, and kick a
    /// compaction of the overlay; false when it ran too recently to try again.
    async fn relieve_memory_pressure(&self, path: &NsPath) -> bool {
        let now = self.clock.now_ms();
        let last = self.node_memory.last_relief_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < RELIEF_INTERVAL_MS && last != 0 {
            return false;
        }
        self.node_memory.last_relief_ms.store(now.max(1), Ordering::Relaxed);
        self.shed_memory_tier();
        self.compact_for_memory(path);
        let _ = tokio::task::spawn_blocking(crate::heap::give_back_freed).await;
        tracing::info!(namespace = %path, used = self.node_memory.used(), budget = self.node_memory.bytes(),
            "memory budget reached: shed loaded states and kicked compaction");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_files_parse_max_numbers_and_refuse_garbage() {
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("8589934592\n"), Ok(Some(8 << 30)));
        assert!(parse_limit("").unwrap_err().contains("\"\""));
        assert!(parse_limit("8G").unwrap_err().contains("\"8G\""));
        assert!(parse_limit("-1").is_err());
    }

    #[test]
    fn shares_do_not_overflow_and_round_down() {
        assert_eq!(share(u64::MAX, LIMIT_SHARE), 14_757_395_258_967_641_292);
        assert_eq!(share(10, WRITE_SHARE), 9);
        assert_eq!(tier_bytes(7), 3);
    }

    #[test]
    fn a_budget_caps_the_rows_of_a_segment_build() {
        // 8 GiB × 4/5: the 1M default nearly fits at 384-d; a 512 MiB cgroup's budget takes 60k.
        assert_eq!(build_rows(6_871_947_673, 384, 1_000_000), 958_698);
        assert_eq!(build_rows(429_496_729, 384, 1_000_000), 59_918);
        assert_eq!(build_rows(1 << 20, 384, 1_000_000), MIN_SEGMENT_ROWS);
        assert_eq!(build_rows(u64::MAX / 2, 384, 1_000_000), 1_000_000);
        assert_eq!(build_rows(u64::MAX / 2, 0, 5), 5, "never above the setting");
    }

    #[test]
    fn graphs_get_4_bit_codes_once_8_bit_ones_would_take_a_quarter_of_the_budget() {
        // 819 MiB × 4/5 (the 1M benchmark's cgroup): 1M rows of 384-d take 516 MB at 8 bits.
        let budget = 687_026_995;
        assert_eq!(graph_code_within(budget, 1_000_000, 384, 1), GraphCode::RaBitQ { bits: 4 });
        assert_eq!(graph_code_within(budget, 300_000, 384, 1), GraphCode::Sq8, "155 MB < 172 MB");
        assert_eq!(graph_code_within(budget, 340_000, 384, 1), GraphCode::RaBitQ { bits: 4 });
        // A second attribute costs its own norm and links.
        assert_eq!(graph_code_within(budget, 300_000, 384, 2), GraphCode::RaBitQ { bits: 4 });
        // 8 GiB × 4/5: 8-bit codes up to 3.3M rows of 384-d.
        let node = 6_871_947_673;
        assert_eq!(graph_code_within(node, 3_300_000, 384, 1), GraphCode::Sq8);
        assert_eq!(graph_code_within(node, 3_400_000, 384, 1), GraphCode::RaBitQ { bits: 4 });
        assert_eq!(graph_code_within(u64::MAX, u64::MAX, u64::MAX, 1), GraphCode::RaBitQ { bits: 4 });
    }

    #[test]
    fn held_build_memory_refuses_a_write_that_would_fit_without_it() {
        let b = MemoryBudget::new(u64::MAX / 2);
        let used = b.used();
        // A threshold 1 GiB above use now: other tests' threads may allocate meanwhile.
        b.set((used + (1 << 30)) * 10 / 9 + 1);
        assert!(b.try_reserve(256 << 20).is_some(), "256 MiB fits under the threshold");
        let build = b.hold(900 << 20);
        assert!(b.try_reserve(256 << 20).is_none(), "not beside a build holding 900 MiB");
        drop(build);
        assert!(b.try_reserve(256 << 20).is_some(), "fits again once the build is done");
    }

    #[test]
    fn an_admission_holds_its_cost_until_dropped() {
        let b = MemoryBudget::new(u64::MAX / 2);
        let a = b.try_reserve(1000).unwrap();
        assert_eq!(b.reserved.load(Ordering::Relaxed), 1000);
        drop(a);
        assert_eq!(b.reserved.load(Ordering::Relaxed), 0);
        let held = b.hold(500);
        assert_eq!(b.reserved.load(Ordering::Relaxed), 500);
        drop(held);
        let tiny = MemoryBudget::new(1);
        assert!(tiny.try_reserve(0).is_none(), "any process uses more than 0.9 bytes");
        assert_eq!(tiny.reserved.load(Ordering::Relaxed), 0, "a refused reservation is released");
    }
}
