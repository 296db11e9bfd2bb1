//! Prometheus metrics: every family the daemon exports on `GET /metrics`,
//! defined here and nowhere else, encoded by `prometheus-client` in the
//! OpenMetrics text format (which Prometheus scrapes natively).
//!
//! Families (all prefixed `tidepool_`; counters carry the `_total` suffix on
//! the wire):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `http_requests` | counter | `method`, `route` (the router's pattern, e.g. `/v2/namespaces/:ns/query`; `unmatched` for 404/405), `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `query_duration_seconds` | histogram | `kind`: `ann`, `knn`, `bm25`, `sparse`, `filter`, `scan`, `aggregate`, `multi` |
//! | `namespace_documents` | gauge | `namespace` (`org/project/ns`; the top N loaded namespaces by bytes, the rest summed under `_other`) |
//! | `namespace_logical_bytes` | gauge | `namespace` (same rule) |
//! | `namespaces_loaded` | gauge | — |
//! | `wal_backlog_batches` | gauge | `namespace` (top N by backlog bytes, the rest under `_other`) |
//! | `wal_backlog_bytes` | gauge | `namespace` (same rule) |
//! | `cache_bytes` | gauge | `tier`: `memory`, `disk` |
//! | `cache_hits` | counter | `tier` |
//! | `cache_misses` | counter | `tier` |
//! | `cache_evictions` | counter | `tier` |
//! | `compactions` | counter | `outcome`: `compacted`, `noop`, `failed` |
//! | `compaction_duration_seconds` | histogram | — (runs that compacted or failed) |
//! | `compaction_written_bytes` | counter | — |
//! | `compaction_loads` | counter | `how`: `refolded`, `replayed` (how the state after a compaction's commit was built) |
//! | `store_requests` | counter | `op`: `get`, `get_range`, `put`, `put_if_absent`, `head`, `list`, `delete`, `other` |
//! | `store_errors` | counter | `op` (faults only: not-found and already-exists answers are outcomes, not errors) |
//! | `store_request_duration_seconds` | histogram | `op` |
//! | `model_texts` | counter | `model` (a configured model's name), `op`: `embed`, `rerank` (texts embedded, pairs scored) |
//! | `model_tokens` | counter | `model`, `op` (tokens fed to the model, after truncation) |
//! | `model_seconds` | counter | `model`, `op` (wall time of inference calls) |
//! | `memory_budget_bytes` | gauge | — (the node's memory budget, `engine/budget.rs`; 0: none) |
//! | `memory_used_bytes` | gauge | — (what counts against it: anonymous RSS + write bodies in flight) |
//! | `memory_write_refusals` | counter | — (writes answered 429 because the budget was reached) |
//! | `process_resident_memory_bytes` | gauge | — (Linux `/proc/self/status`) |
//! | `process_open_fds` | gauge | — (Linux `/proc/self/fd`) |
//! | `process_start_time_seconds` | gauge | — |
//! | `uptime_seconds` | gauge | — |
//! | `build` | info | `version` |
//!
//! Invariants:
//! - Bounded cardinality: label values are static strings (route patterns,
//!   kinds, ops, tiers) or status codes, except `namespace`, which holds at
//!   most `top_namespaces` values plus `_other`, and `model`, which holds only
//!   names of configured models.
//! - Recording is cheap: a read-locked map lookup keyed by `&'static str`s
//!   and atomic adds; no allocation once a label set has been seen.
//! - One [`Metrics`] per engine, passed down as an `Arc` (no globals);
//!   scrape-time values (namespace sizes, cache tiers, process) are set by
//!   [`Metrics::render`] from a [`Gauges`] the engine gathers, under a lock,
//!   so two concurrent scrapes never interleave their refreshes.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Default number of namespaces exported by name.
pub const DEFAULT_TOP_NAMESPACES: usize = 10;
/// The `namespace` label value of everything past the top N.
pub const OTHER_NAMESPACES: &str = "_other";
/// The HTTP content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the HTTP families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Request method.
    pub method: &'static str,
    /// Route pattern.
    pub route: &'static str,
    /// Response status code.
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HowLabels {
    how: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NsLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// An object-store operation, as the `op` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Whole-object GET.
    Get,
    /// Ranged GET.
    GetRange,
    /// Unconditional PUT.
    Put,
    /// Conditional create.
    PutIfAbsent,
    /// HEAD.
    Head,
    /// LIST (recursive or by delimiter).
    List,
    /// DELETE (one per key).
    Delete,
    /// Copy, rename, multipart.
    Other,
}

impl StoreOp {
    fn label(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::GetRange => "get_range",
            StoreOp::Put => "put",
            StoreOp::PutIfAbsent => "put_if_absent",
            StoreOp::Head => "head",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Other => "other",
        }
    }
}

/// The outcome of one compaction run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionOutcome {
    /// A generation was committed.
    Compacted,
    /// Nothing to do.
    Noop,
    /// It failed (it is retried later).
    Failed,
}

/// One loaded namespace at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceGauge {
    /// `org/project/ns`.
    pub namespace: String,
    /// Live documents.
    pub documents: u64,
    /// Logical bytes of the live documents.
    pub logical_bytes: u64,
    /// WAL batches not yet folded into segments.
    pub wal_batches: u64,
    /// Bytes of those batches.
    pub wal_bytes: u64,
}

/// One cache tier at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierGauge {
    /// Resident bytes.
    pub bytes: u64,
    /// Hits so far (None: the tier's hits are counted by [`Metrics`] itself).
    pub hits: Option<u64>,
    /// Misses so far (same rule).
    pub misses: Option<u64>,
    /// Evictions so far (same rule).
    pub evictions: Option<u64>,
}

/// Scrape-time values the engine gathers (see `Engine::gauges`).
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Every loaded namespace.
    pub namespaces: Vec<NamespaceGauge>,
    /// The memory tier (loaded namespace states).
    pub memory: TierGauge,
    /// The disk cache tier.
    pub disk: TierGauge,
    /// The node's memory budget (None: none).
    pub budget: Option<BudgetGauge>,
}

/// The node's memory budget at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetGauge {
    /// The budget.
    pub bytes: u64,
    /// Use counted against it.
    pub used: u64,
    /// Writes refused for memory so far.
    pub refusals: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn compaction_histogram() -> Histogram {
    // 10 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// The metric families and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    render_lock: Mutex<()>,
    top_namespaces: usize,
    started: Instant,
    start_unix: f64,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpLabels>,
    query_duration: HistogramFamily<KindLabels>,
    store_requests: Family<OpLabels, Counter>,
    store_errors: Family<OpLabels, Counter>,
    store_duration: HistogramFamily<OpLabels>,
    compactions: Family<OutcomeLabels, Counter>,
    compaction_duration: Histogram,
    compaction_bytes: Counter,
    compaction_loads: Family<HowLabels, Counter>,
    model_texts: Family<ModelLabels, Counter>,
    model_tokens: Family<ModelLabels, Counter>,
    model_seconds: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    ns_documents: Family<NsLabels, Gauge>,
    ns_bytes: Family<NsLabels, Gauge>,
    namespaces_loaded: Gauge,
    wal_batches: Family<NsLabels, Gauge>,
    wal_bytes: Family<NsLabels, Gauge>,
    cache_bytes: Family<TierLabels, Gauge>,
    cache_hits: Family<TierLabels, Counter>,
    cache_misses: Family<TierLabels, Counter>,
    cache_evictions: Family<TierLabels, Counter>,
    memory_budget: Gauge,
    memory_used: Gauge,
    memory_refusals: Counter,
    rss: Gauge,
    open_fds: Gauge,
    start_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(DEFAULT_TOP_NAMESPACES)
    }
}

impl Metrics {
    /// Every family registered; `top_namespaces` namespaces exported by name.
    pub fn new(top_namespaces: usize) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("tidepool"),
            render_lock: Mutex::new(()),
            top_namespaces,
            started: Instant::now(),
            start_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            query_duration: Family::new_with_constructor(latency_histogram),
            store_requests: Family::default(),
            store_errors: Family::default(),
            store_duration: Family::new_with_constructor(latency_histogram),
            compactions: Family::default(),
            compaction_duration: compaction_histogram(),
            compaction_bytes: Counter::default(),
            compaction_loads: Family::default(),
            model_texts: Family::default(),
            model_tokens: Family::default(),
            model_seconds: Family::default(),
            ns_documents: Family::default(),
            ns_bytes: Family::default(),
            namespaces_loaded: Gauge::default(),
            wal_batches: Family::default(),
            wal_bytes: Family::default(),
            cache_bytes: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_evictions: Family::default(),
            memory_budget: Gauge::default(),
            memory_used: Gauge::default(),
            memory_refusals: Counter::default(),
            rss: Gauge::default(),
            open_fds: Gauge::default(),
            start_time: Gauge::default(),
            uptime: Gauge::default(),
        };
        m.register_all();
        m.create_zero_series();
        m
    }

    /// Series that dashboards rate or sum exist from the start (at 0), not
    /// only after their first event.
    fn create_zero_series(&self) {
        const OPS: [StoreOp; 8] = [
            StoreOp::Get,
            StoreOp::GetRange,
            StoreOp::Put,
            StoreOp::PutIfAbsent,
            StoreOp::Head,
            StoreOp::List,
            StoreOp::Delete,
            StoreOp::Other,
        ];
        for op in OPS {
            let labels = OpLabels { op: op.label() };
            drop(self.store_requests.get_or_create(&labels));
            drop(self.store_errors.get_or_create(&labels));
        }
        for outcome in ["compacted", "noop", "failed"] {
            drop(self.compactions.get_or_create(&OutcomeLabels { outcome }));
        }
        for how in ["refolded", "replayed"] {
            drop(self.compaction_loads.get_or_create(&HowLabels { how }));
        }
    }

    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register("http_requests", "HTTP requests by route pattern and status", self.http_requests.clone());
        r.register(
            "http_request_duration_seconds",
            "Time to the response head, by route pattern and status",
            self.http_duration.clone(),
        );
        r.register(
            "query_duration_seconds",
            "Query evaluation time by kind (ann, knn, bm25, sparse, filter, scan, aggregate, multi)",
            self.query_duration.clone(),
        );
        r.register("store_requests", "Object-store requests by operation", self.store_requests.clone());
        r.register(
            "store_errors",
            "Object-store requests that failed (not-found and already-exists excluded)",
            self.store_errors.clone(),
        );
        r.register(
            "store_request_duration_seconds",
            "Object-store request latency by operation",
            self.store_duration.clone(),
        );
        r.register("compactions", "Compaction runs by outcome", self.compactions.clone());
        r.register(
            "compaction_duration_seconds",
            "Duration of compaction runs that compacted or failed",
            self.compaction_duration.clone(),
        );
        r.register(
            "compaction_written_bytes",
            "Segment bytes written by compactions",
            self.compaction_bytes.clone(),
        );
        r.register(
            "compaction_loads",
            "States installed after a compaction's commit, refolded from the states around it or replayed",
            self.compaction_loads.clone(),
        );
        r.register(
            "model_texts",
            "Texts a local model embedded or pairs it scored",
            self.model_texts.clone(),
        );
        r.register(
            "model_tokens",
            "Tokens fed to a local model, after truncation",
            self.model_tokens.clone(),
        );
        r.register(
            "model_seconds",
            "Wall time of a local model's inference calls",
            self.model_seconds.clone(),
        );
        r.register(
            "namespace_documents",
            "Live documents of the largest loaded namespaces (the rest under namespace=\"_other\")",
            self.ns_documents.clone(),
        );
        r.register(
            "namespace_logical_bytes",
            "Logical bytes of the largest loaded namespaces (the rest under namespace=\"_other\")",
            self.ns_bytes.clone(),
        );
        r.register(
            "namespaces_loaded",
            "Namespaces loaded in the memory tier",
            self.namespaces_loaded.clone(),
        );
        r.register(
            "wal_backlog_batches",
            "WAL batches not yet compacted into segments (largest backlogs by name, the rest under _other)",
            self.wal_batches.clone(),
        );
        r.register(
            "wal_backlog_bytes",
            "WAL bytes not yet compacted into segments (largest backlogs by name, the rest under _other)",
            self.wal_bytes.clone(),
        );
        r.register("cache_bytes", "Resident bytes per cache tier", self.cache_bytes.clone());
        r.register("cache_hits", "Cache hits per tier", self.cache_hits.clone());
        r.register("cache_misses", "Cache misses per tier", self.cache_misses.clone());
        r.register("cache_evictions", "Cache evictions per tier", self.cache_evictions.clone());
        r.register("memory_budget_bytes", "The node's memory budget (0: none)", self.memory_budget.clone());
        r.register(
            "memory_used_bytes",
            "Memory counted against the budget: anonymous RSS plus write bodies in flight",
            self.memory_used.clone(),
        );
        r.register(
            "memory_write_refusals",
            "Writes answered 429 because the memory budget was reached",
            self.memory_refusals.clone(),
        );
        r.register("process_resident_memory_bytes", "Resident set size", self.rss.clone());
        r.register("process_open_fds", "Open file descriptors", self.open_fds.clone());
        r.register(
            "process_start_time_seconds",
            "Start time, seconds since the Unix epoch",
            self.start_time.clone(),
        );
        r.register("uptime_seconds", "Seconds since start", self.uptime.clone());
        r.register(
            "build",
            "Build information",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }),
        );
    }

    /// Namespaces exported by name.
    pub fn top_namespaces(&self) -> usize {
        self.top_namespaces
    }

    /// One HTTP request answered.
    pub fn observe_http(&self, labels: &HttpLabels, elapsed: Duration) {
        self.http_requests.get_or_create(labels).inc();
        self.http_duration.get_or_create(labels).observe(elapsed.as_secs_f64());
    }

    /// One query evaluated; `kind` is one of the documented kinds.
    pub fn observe_query(&self, kind: &'static str, elapsed: Duration) {
        self.query_duration.get_or_create(&KindLabels { kind }).observe(elapsed.as_secs_f64());
    }

    /// One object-store request finished (`failed`: a fault, not an outcome).
    pub fn observe_store(&self, op: StoreOp, elapsed: Duration, failed: bool) {
        let labels = OpLabels { op: op.label() };
        self.store_requests.get_or_create(&labels).inc();
        self.store_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    /// One compaction run finished.
    pub fn observe_compaction(&self, outcome: CompactionOutcome, elapsed: Duration, bytes_written: u64) {
        let outcome = match outcome {
            CompactionOutcome::Compacted => "compacted",
            CompactionOutcome::Noop => "noop",
            CompactionOutcome::Failed => "failed",
        };
        self.compactions.get_or_create(&OutcomeLabels { outcome }).inc();
        if outcome != "noop" {
            // A run with nothing to do would only pull the quantiles towards zero.
            self.compaction_duration.observe(elapsed.as_secs_f64());
        }
        self.compaction_bytes.inc_by(bytes_written);
    }

    /// The state after a compaction's commit was refolded (true) or built by
    /// replaying its WAL (false).
    pub fn observe_compaction_load(&self, refolded: bool) {
        let how = if refolded { "refolded" } else { "replayed" };
        self.compaction_loads.get_or_create(&HowLabels { how }).inc();
    }

    /// A read found the namespace state loaded (`hit`) or had to load it.
    pub fn observe_memory_tier(&self, hit: bool) {
        let family = if hit { &self.cache_hits } else { &self.cache_misses };
        family.get_or_create(&TierLabels { tier: "memory" }).inc();
    }

    /// One inference call of model `model` (`op`: `embed` or `rerank`) over `texts` texts.
    pub fn observe_model(&self, model: &str, op: &'static str, texts: usize, tokens: u64, elapsed: Duration) {
        let labels = ModelLabels { model: model.to_owned(), op };
        self.model_texts.get_or_create(&labels).inc_by(texts as u64);
        self.model_tokens.get_or_create(&labels).inc_by(tokens);
        self.model_seconds.get_or_create(&labels).inc_by(elapsed.as_secs_f64());
    }

    /// A loaded namespace state was dropped by the memory tier's budget.
    pub fn observe_memory_eviction(&self) {
        self.cache_evictions.get_or_create(&TierLabels { tier: "memory" }).inc();
    }

    /// Refresh the scrape-time values from `gauges` and the process, and
    /// encode every family (OpenMetrics text, [`CONTENT_TYPE`]).
    /// Only namespaces starting with `named` (an `org/project/` prefix) are
    /// exported by name; the others count in `_other`.
    pub fn render(&self, gauges: &Gauges, named: Option<&str>) -> String {
        let _one_scrape = self.render_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_namespaces(&gauges.namespaces, named);
        self.set_tier("memory", &gauges.memory);
        self.set_tier("disk", &gauges.disk);
        self.set_process();
        if let Some(b) = gauges.budget {
            self.memory_budget.set(saturate(b.bytes));
            self.memory_used.set(saturate(b.used));
            self.memory_refusals.inner().store(b.refusals, Ordering::Relaxed);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    fn set_namespaces(&self, all: &[NamespaceGauge], named: Option<&str>) {
        self.namespaces_loaded.set(saturate(all.len() as u64));
        let by = |key: fn(&NamespaceGauge) -> u64| top_n(all, self.top_namespaces, named, key);
        let (top, rest) = by(|n| n.logical_bytes);
        set_family(&self.ns_documents, &top, &rest, |n| n.documents);
        set_family(&self.ns_bytes, &top, &rest, |n| n.logical_bytes);
        let (top, rest) = by(|n| n.wal_bytes);
        set_family(&self.wal_batches, &top, &rest, |n| n.wal_batches);
        set_family(&self.wal_bytes, &top, &rest, |n| n.wal_bytes);
    }

    fn set_tier(&self, tier: &'static str, g: &TierGauge) {
        let labels = TierLabels { tier };
        self.cache_bytes.get_or_create(&labels).set(saturate(g.bytes));
        let counters = [
            (&self.cache_hits, g.hits),
            (&self.cache_misses, g.misses),
            (&self.cache_evictions, g.evictions),
        ];
        for (family, value) in counters {
            let counter = family.get_or_create(&labels);
            if let Some(v) = value {
                counter.inner().store(v, Ordering::Relaxed);
            }
        }
    }

    fn set_process(&self) {
        self.rss.set(saturate(process::rss_bytes().unwrap_or(0)));
        self.open_fds.set(saturate(process::open_fds().unwrap_or(0)));
        self.start_time.set(self.start_unix);
        self.uptime.set(self.started.elapsed().as_secs_f64());
    }
}

fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The `n` namespaces under `named` with the largest `key` (ties by name),
/// and the rest.
fn top_n<'a>(
    all: &'a [NamespaceGauge],
    n: usize,
    named: Option<&str>,
    key: fn(&NamespaceGauge) -> u64,
) -> (Vec<&'a NamespaceGauge>, Vec<&'a NamespaceGauge>) {
    let (mut sorted, mut hidden): (Vec<&NamespaceGauge>, Vec<&NamespaceGauge>) =
        all.iter().partition(|g| named.is_none_or(|p| g.namespace.starts_with(p)));
    sorted.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.namespace.cmp(&b.namespace)));
    hidden.extend(sorted.split_off(n.min(sorted.len())));
    (sorted, hidden)
}

/// Replace a per-namespace family's values: one per top namespace, plus the
/// sum of the rest under `_other` (always present, so sums stay continuous).
fn set_family(
    family: &Family<NsLabels, Gauge>,
    top: &[&NamespaceGauge],
    rest: &[&NamespaceGauge],
    value: fn(&NamespaceGauge) -> u64,
) {
    family.clear();
    for n in top {
        family.get_or_create(&NsLabels { namespace: n.namespace.clone() }).set(saturate(value(n)));
    }
    let other: u64 = rest.iter().map(|n| value(n)).sum();
    family.get_or_create(&NsLabels { namespace: OTHER_NAMESPACES.to_owned() }).set(saturate(other));
}

/// Process figures from `/proc/self` (None off Linux or when unreadable).
mod process {
    /// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
    pub(super) fn rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Entries of `/proc/self/fd` (the directory handle itself excluded).
    pub(super) fn open_fds() -> Option<u64> {
        let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Some(n.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, bytes: u64, wal: u64) -> NamespaceGauge {
        NamespaceGauge {
            namespace: name.into(),
            documents: bytes / 10,
            logical_bytes: bytes,
            wal_batches: wal,
            wal_bytes: wal * 100,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    /// Invariant: at most N namespaces by name; the rest summed under `_other`.
    #[test]
    fn namespaces_are_bounded_to_the_top_n_plus_other() {
        let m = Metrics::new(2);
        let g = Gauges {
            namespaces: vec![
                ns("o/p/a", 100, 0),
                ns("o/p/b", 300, 1),
                ns("o/p/c", 200, 5),
                ns("o/p/d", 50, 2),
            ],
            ..Gauges::default()
        };
        let text = m.render(&g, None);
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/p/b\"} 300").is_some(), "{text}");
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/p/c\"} 200").is_some());
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"_other\"} 150").is_some());
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/p/a\"}").is_none());
        assert!(line(&text, "tidepool_wal_backlog_batches{namespace=\"o/p/c\"} 5").is_some());
        assert!(line(&text, "tidepool_wal_backlog_batches{namespace=\"_other\"} 1").is_some());
        assert!(line(&text, "tidepool_namespaces_loaded 4").is_some());
        // A namespace that left the top N is dropped at the next scrape.
        let text = m.render(&Gauges { namespaces: vec![ns("o/p/a", 1, 0)], ..Gauges::default() }, None);
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/p/a\"} 1").is_some());
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/p/b\"}").is_none());
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"_other\"} 0").is_some());
        // Only the caller's project is named; others count in `_other`.
        let g = Gauges { namespaces: vec![ns("o/p/a", 1, 0), ns("o/q/b", 5, 0)], ..Gauges::default() };
        let text = m.render(&g, Some("o/p/"));
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/p/a\"} 1").is_some());
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"_other\"} 5").is_some());
        assert!(line(&text, "tidepool_namespace_logical_bytes{namespace=\"o/q/b\"}").is_none());
    }

    #[test]
    fn recorded_values_are_encoded() {
        let m = Metrics::default();
        let labels = HttpLabels { method: "POST", route: "/v2/namespaces/:ns/query", status: 200 };
        m.observe_http(&labels, Duration::from_millis(3));
        m.observe_http(&labels, Duration::from_millis(5));
        m.observe_store(StoreOp::PutIfAbsent, Duration::from_millis(1), true);
        m.observe_memory_tier(false);
        let disk = TierGauge { bytes: 7, hits: Some(3), misses: Some(2), evictions: Some(0) };
        let text = m.render(&Gauges { disk, ..Gauges::default() }, None);
        let route = "method=\"POST\",route=\"/v2/namespaces/:ns/query\",status=\"200\"";
        assert!(line(&text, &format!("tidepool_http_requests_total{{{route}}} 2")).is_some(), "{text}");
        assert!(line(&text, &format!("tidepool_http_request_duration_seconds_count{{{route}}} 2")).is_some());
        assert!(line(&text, "tidepool_store_errors_total{op=\"put_if_absent\"} 1").is_some());
        assert!(line(&text, "tidepool_cache_hits_total{tier=\"disk\"} 3").is_some());
        assert!(line(&text, "tidepool_cache_misses_total{tier=\"memory\"} 1").is_some());
        assert!(line(&text, "tidepool_cache_bytes{tier=\"disk\"} 7").is_some());
        assert!(line(&text, "tidepool_build_info{version=").is_some());
        assert!(text.ends_with("# EOF\n"));
        if cfg!(target_os = "linux") {
            let rss = line(&text, "tidepool_process_resident_memory_bytes ").unwrap();
            assert!(rss.rsplit(' ').next().unwrap().parse::<u64>().unwrap() > 0);
        }
    }
}
