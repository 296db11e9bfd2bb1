//! Daemon configuration for `tidepool serve`.
//!
//! Every setting comes from, in order of precedence: a command-line flag, a
//! `TIDEPOOL_*` environment variable (clap merges these two), the TOML file
//! named by `--config`, then the built-in default. API keys come only from
//! the file (`[[api_keys]]`), never from flags, so they do not leak into
//! process listings.
//!
//! Default data dir: `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`),
//! else `/var/lib/tidepool` when `--system` is given or `$INVOCATION_ID` is
//! set (i.e. run as a systemd service), else `$XDG_DATA_HOME/tidepool`, else
//! `~/.local/share/tidepool`. Default disk cache dir: `$CACHE_DIRECTORY`
//! (systemd's `CacheDirectory=`), else `<data dir>/cache`.
//!
//! Config file: the one `--config` names (it must exist); as a service
//! (`--system` or `$INVOCATION_ID`) without `--config`,
//! `$CONFIGURATION_DIRECTORY/config.toml` or `/etc/tidepool/config.toml` if it
//! exists — a service starts on the defaults when there is none.
//!
//! Invariants: a resolved [`Config`] is complete and validated — every API
//! key is non-empty and unique and names a valid org and project, the body
//! limit is at least 1 KiB, every timeout is positive and the connection cap
//! is at least 1.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::store::S3Options;

pub mod effective;

/// Retained generations may hold at most this fraction of the newest one's bytes.
pub const DEFAULT_RETENTION_MAX_RATIO: f64 = 0.15;
/// Default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7474";
/// Default request body limit (after decompression): 256 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Default time allowed for draining in-flight requests at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Default time an idle connection (or a stalled request body) is kept.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default time a whole request body has to arrive (a 256 MiB body at
/// 4.5 MiB/s; a trickle of single bytes cannot stretch it).
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
/// Default time a whole snapshot upload (restore) has to arrive: snapshots
/// are not bounded by `max_body_bytes` and may be many GiB.
pub const DEFAULT_UPLOAD_TIMEOUT_SECS: u64 = 3600;
/// Default largest snapshot upload (restore), spooled to the data dir's scratch
/// space before anything reads it.
pub const DEFAULT_MAX_RESTORE_BYTES: u64 = 64 << 30;
/// Default cap on open client connections (the packaged unit allows 65536
/// file descriptors; the daemon also lowers the cap to fit the process limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

pub use crate::engine::query_pool::{DEFAULT_MAX_QUEUED_QUERIES, DEFAULT_QUERY_TIMEOUT_MS};
/// Default bound on connecting to an s3:// store.
pub const DEFAULT_S3_CONNECT_TIMEOUT_SECS: u64 = 3;
/// Default longest wait for the next byte from an s3:// store.
pub const DEFAULT_S3_REQUEST_TIMEOUT_SECS: u64 = 10;
/// Default interval of the probe of a store that stopped answering.
pub const DEFAULT_S3_PROBE_INTERVAL_SECS: u64 = 2;

/// A configuration error (reported at start-up, exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The codes a segment's graph index traverses (`graph_codes`): 8-bit codes,
/// or RaBitQ codes of 4, 2 or 1 bits a dimension — smaller to hold in memory,
/// slower per visited row where everything fits (BENCHMARKS.md, "Compact
/// graph codes"). Applies to segments built from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GraphCodes {
    /// 8-bit codes while a namespace's traversal bytes with them fit a quarter
    /// of the memory budget, 4-bit RaBitQ codes past it.
    #[default]
    Auto,
    /// 8 bits a dimension (graph section version 2).
    Sq8,
    /// RaBitQ, 4 bits a dimension (version 3).
    Rabitq4,
    /// RaBitQ, 2 bits a dimension.
    Rabitq2,
    /// RaBitQ, 1 bit a dimension.
    Rabitq1,
}

impl GraphCodes {
    /// The compaction's choice.
    pub fn choice(self) -> crate::engine::compact::GraphCodeChoice {
        use crate::engine::compact::GraphCodeChoice::{ByBudget, Fixed};
        use crate::index::vector::graph::GraphCode;
        match self {
            GraphCodes::Auto => ByBudget,
            GraphCodes::Sq8 => Fixed(GraphCode::Sq8),
            GraphCodes::Rabitq4 => Fixed(GraphCode::RaBitQ { bits: 4 }),
            GraphCodes::Rabitq2 => Fixed(GraphCode::RaBitQ { bits: 2 }),
            GraphCodes::Rabitq1 => Fixed(GraphCode::RaBitQ { bits: 1 }),
        }
    }
}

/// One API key and the project it grants access to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The bearer token.
    pub key: String,
    /// Organisation the key belongs to.
    pub org: String,
    /// Project the key belongs to.
    pub project: String,
    /// Reject write routes (403).
    #[serde(default)]
    pub read_only: bool,
}

/// One local model (`[[models]]` in the file, `--model NAME=DIR` as a flag): a directory in
/// the Hugging Face / sentence-transformers layout (`crate::models`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name schemas and queries use (`"embed": NAME`, `rerank_by.model`).
    pub name: String,
    /// The model directory.
    pub path: PathBuf,
}

impl ModelConfig {
    /// `NAME=DIR`, as `--model` takes it.
    pub fn parse_flag(v: &str) -> Result<ModelConfig, ConfigError> {
        let (name, path) =
            v.split_once('=').ok_or_else(|| ConfigError(format!("--model {v:?}: expected NAME=DIR")))?;
        Ok(ModelConfig { name: name.trim().to_owned(), path: PathBuf::from(path.trim()) })
    }
}

/// The TOML file: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    pub s3_allow_http: Option<bool>,
    pub s3_connect_timeout_secs: Option<u64>,
    pub s3_request_timeout_secs: Option<u64>,
    pub s3_probe_interval_secs: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub upload_timeout_secs: Option<u64>,
    pub max_restore_bytes: Option<u64>,
    pub max_connections: Option<usize>,
    pub query_threads: Option<usize>,
    pub max_queued_queries: Option<usize>,
    pub query_timeout_ms: Option<u64>,
    pub system: Option<bool>,
    pub cache_budget_bytes: Option<u64>,
    pub memory_budget_bytes: Option<u64>,
    pub max_loaded_namespaces: Option<usize>,
    pub compaction_wal_objects: Option<usize>,
    pub compaction_wal_bytes: Option<u64>,
    pub compaction_max_segments: Option<usize>,
    pub compaction_max_segment_rows: Option<usize>,
    pub compaction_idle_ms: Option<u64>,
    pub graph_codes: Option<GraphCodes>,
    pub backlog_bytes: Option<u64>,
    pub retention_secs: Option<u64>,
    pub retention_max_ratio: Option<f64>,
    pub gc_interval_secs: Option<u64>,
    pub metrics_top_namespaces: Option<usize>,
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_hosts: Option<Vec<String>>,
    pub console: Option<bool>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    pub sync: Option<crate::sync::config::SyncFile>,
}

/// Flags of `tidepool serve` (each also read from its `TIDEPOOL_*` variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (flags and env override it).
    #[arg(long, env = "TIDEPOOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data dir (lock, local metadata, default local store). Default:
    /// $STATE_DIRECTORY, else /var/lib/tidepool under systemd ($INVOCATION_ID)
    /// or with --system, else $XDG_DATA_HOME/tidepool or ~/.local/share/tidepool.
    #[arg(long, env = "TIDEPOOL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Without API keys: browser origins allowed to call the daemon (comma-separated,
    /// e.g. http://localhost:3000); any other Origin header is refused.
    #[arg(long, env = "TIDEPOOL_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Without API keys: Host names accepted besides loopback names and addresses
    /// (comma-separated); any other Host is refused (DNS rebinding).
    #[arg(long, env = "TIDEPOOL_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Serve the browser console at /console (default true; `--console false` turns it off).
    #[arg(long, env = "TIDEPOOL_CONSOLE", num_args = 0..=1, default_missing_value = "true")]
    pub console: Option<bool>,
    /// Disk cache dir for objects of a remote store. Default: $CACHE_DIRECTORY,
    /// else `<data-dir>/cache`.
    #[arg(long, env = "TIDEPOOL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A local model for embedding and reranking, NAME=DIR (a Hugging Face / sentence-transformers
    /// directory: config.json, tokenizer.json, model.safetensors); repeat for more. Replaces the
    /// file's [[models]] when given.
    #[arg(long = "model", env = "TIDEPOOL_MODELS", value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Listen address, e.g. 127.0.0.1:7474 (port 0 picks a free port).
    #[arg(long, env = "TIDEPOOL_LISTEN")]
    pub listen: Option<String>,
    /// Object store: a directory, file://DIR, memory:// or s3://bucket/prefix
    /// (default: `<data-dir>/store`).
    #[arg(long, env = "TIDEPOOL_STORE")]
    pub store: Option<String>,
    /// S3 endpoint URL (for S3-compatible servers).
    #[arg(long, env = "TIDEPOOL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "TIDEPOOL_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id (prefer the env var or the config file).
    #[arg(long, env = "TIDEPOOL_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the env var or the config file).
    #[arg(long, env = "TIDEPOOL_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Allow a plain-http S3 endpoint.
    #[arg(long, env = "TIDEPOOL_S3_ALLOW_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub s3_allow_http: Option<bool>,
    /// Seconds to connect to an s3:// store (default 3).
    #[arg(long, env = "TIDEPOOL_S3_CONNECT_TIMEOUT_SECS")]
    pub s3_connect_timeout_secs: Option<u64>,
    /// Longest wait in seconds for the next byte from an s3:// store (default 10; a whole
    /// request may take 60 times this).
    #[arg(long, env = "TIDEPOOL_S3_REQUEST_TIMEOUT_SECS")]
    pub s3_request_timeout_secs: Option<u64>,
    /// Once a call to the store went unanswered (a timeout: a silent uplink), calls fail
    /// at once and one probe checks every this many seconds whether it answers again
    /// (default 2).
    #[arg(long, env = "TIDEPOOL_S3_PROBE_INTERVAL_SECS")]
    pub s3_probe_interval_secs: Option<u64>,
    /// Sync remote (`[sync] remote`): s3://bucket/prefix or file://DIR; the
    /// node's own store stays its primary.
    #[arg(long, env = "TIDEPOOL_SYNC_REMOTE")]
    pub sync_remote: Option<String>,
    /// Sync remote endpoint URL (`[sync] endpoint`).
    #[arg(long, env = "TIDEPOOL_SYNC_ENDPOINT")]
    pub sync_endpoint: Option<String>,
    /// Sync remote region (`[sync] region`).
    #[arg(long, env = "TIDEPOOL_SYNC_REGION")]
    pub sync_region: Option<String>,
    /// Sync remote access key id (prefer the env var or the config file).
    #[arg(long, env = "TIDEPOOL_SYNC_ACCESS_KEY_ID", hide_env_values = true)]
    pub sync_access_key_id: Option<String>,
    /// Sync remote secret access key (prefer the env var or the config file).
    #[arg(long, env = "TIDEPOOL_SYNC_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub sync_secret_access_key: Option<String>,
    /// Allow a plain-http sync endpoint.
    #[arg(long, env = "TIDEPOOL_SYNC_ALLOW_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub sync_allow_http: Option<bool>,
    /// Seconds between sync rounds (default 10).
    #[arg(long, env = "TIDEPOOL_SYNC_INTERVAL_SECS")]
    pub sync_interval_secs: Option<u64>,
    /// This node's id in the remote (default: generated once, kept in the data dir).
    #[arg(long, env = "TIDEPOOL_SYNC_NODE_ID")]
    pub sync_node_id: Option<String>,
    /// Seconds to connect to the sync remote (default 3).
    #[arg(long, env = "TIDEPOOL_SYNC_CONNECT_TIMEOUT_SECS")]
    pub sync_connect_timeout_secs: Option<u64>,
    /// Seconds one request to the sync remote may take (default 10).
    #[arg(long, env = "TIDEPOOL_SYNC_REQUEST_TIMEOUT_SECS")]
    pub sync_request_timeout_secs: Option<u64>,
    /// Seconds between two sweeps of the sync remote by this node (default 3600; 0: only
    /// on demand, `POST /v1/sync/run?sweep=true`).
    #[arg(long, env = "TIDEPOOL_SYNC_SWEEP_INTERVAL_SECS")]
    pub sync_sweep_interval_secs: Option<u64>,
    /// Age in seconds an unreachable object in the sync remote must reach before a sweep
    /// deletes it (default 86400).
    #[arg(long, env = "TIDEPOOL_SYNC_SWEEP_GRACE_SECS")]
    pub sync_sweep_grace_secs: Option<u64>,
    /// Sync rules replacing `[[sync.namespaces]]`: `match=mode[:on_conflict]`,
    /// comma-separated, e.g. `catalog-*=pull,orders=both:branch`.
    #[arg(long, env = "TIDEPOOL_SYNC_NAMESPACES")]
    pub sync_namespaces: Option<String>,
    /// Log format.
    #[arg(long, env = "TIDEPOOL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter: a level (`info`, `debug`, ...) or `tracing` directives such as
    /// `info,tidepool::engine=debug` (default `info`, or `$RUST_LOG`).
    #[arg(long, env = "TIDEPOOL_LOG")]
    pub log_level: Option<String>,
    /// Largest request body in bytes, after decompression (default 256 MiB).
    #[arg(long, env = "TIDEPOOL_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Seconds to drain in-flight requests on SIGTERM/SIGINT (default 30).
    #[arg(long, env = "TIDEPOOL_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Seconds a client has to send request headers (default 30).
    #[arg(long, env = "TIDEPOOL_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds before an idle connection or a stalled body is dropped (default 60).
    #[arg(long, env = "TIDEPOOL_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a whole request body has to arrive, however it trickles (default 60; 408 after).
    #[arg(long, env = "TIDEPOOL_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Seconds a whole snapshot upload (restore) has to arrive (default 3600; 408 after).
    #[arg(long, env = "TIDEPOOL_UPLOAD_TIMEOUT_SECS")]
    pub upload_timeout_secs: Option<u64>,
    /// Largest snapshot upload (restore) in bytes (default 64 GiB; 413 above it).
    #[arg(long, env = "TIDEPOOL_MAX_RESTORE_BYTES")]
    pub max_restore_bytes: Option<u64>,
    /// Most open client connections; more are answered 503 and closed (default 1024).
    #[arg(long, env = "TIDEPOOL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Queries computing at once per lane (large and small namespaces each have
    /// this many slots; default 0: the number of CPU cores).
    #[arg(long, env = "TIDEPOOL_QUERY_THREADS")]
    pub query_threads: Option<usize>,
    /// Queries waiting for a slot beyond which a query gets 429 (default 256).
    #[arg(long, env = "TIDEPOOL_MAX_QUEUED_QUERIES")]
    pub max_queued_queries: Option<usize>,
    /// Milliseconds a query may take, waiting included, before it gets 408 (default 30000).
    #[arg(long, env = "TIDEPOOL_QUERY_TIMEOUT_MS")]
    pub query_timeout_ms: Option<u64>,
    /// Run as a system service (default data dir /var/lib/tidepool).
    #[arg(long, env = "TIDEPOOL_SYSTEM", num_args = 0..=1, default_missing_value = "true")]
    pub system: Option<bool>,
    /// Byte budget of the local disk cache for a remote store (default 8 GiB).
    #[arg(long, env = "TIDEPOOL_CACHE_BUDGET_BYTES")]
    pub cache_budget_bytes: Option<u64>,
    /// The node's memory budget in bytes: writes get 429 past 9/10 of it, loaded namespace
    /// states get 1/2 (default: 4/5 of the cgroup's memory limit, else of MemAvailable).
    #[arg(long, env = "TIDEPOOL_MEMORY_BUDGET_BYTES")]
    pub memory_budget_bytes: Option<u64>,
    /// Most namespace states kept loaded in memory (default 1024; pinned ones always stay).
    #[arg(long, env = "TIDEPOOL_MAX_LOADED_NAMESPACES")]
    pub max_loaded_namespaces: Option<usize>,
    /// Compact a namespace once it has this many WAL objects (default 64).
    #[arg(long, env = "TIDEPOOL_COMPACTION_WAL_OBJECTS")]
    pub compaction_wal_objects: Option<usize>,
    /// ... or this many WAL bytes (default 64 MiB).
    #[arg(long, env = "TIDEPOOL_COMPACTION_WAL_BYTES")]
    pub compaction_wal_bytes: Option<u64>,
    /// Merge small segments once a namespace has more than this many (default 8).
    #[arg(long, env = "TIDEPOOL_COMPACTION_MAX_SEGMENTS")]
    pub compaction_max_segments: Option<usize>,
    /// Most rows per segment (default 1,000,000).
    #[arg(long, env = "TIDEPOOL_COMPACTION_MAX_SEGMENT_ROWS")]
    pub compaction_max_segment_rows: Option<usize>,
    /// Index a WAL tail below the thresholds once a namespace had no write for this long
    /// (default 2000; 0: only at the thresholds), so index status settles.
    #[arg(long, env = "TIDEPOOL_COMPACTION_IDLE_MS")]
    pub compaction_idle_ms: Option<u64>,
    /// Codes new segments' graph indexes traverse (default sq8).
    #[arg(long, env = "TIDEPOOL_GRAPH_CODES", value_enum)]
    pub graph_codes: Option<GraphCodes>,
    /// Writes get 429 while a namespace has more unindexed bytes than this (default 2 GiB).
    #[arg(long, env = "TIDEPOOL_BACKLOG_BYTES")]
    pub backlog_bytes: Option<u64>,
    /// Keep superseded generations (time travel) and the objects they reference this long
    /// (default 3600; 0 deletes objects as soon as no live generation references them).
    #[arg(long, env = "TIDEPOOL_RETENTION_SECS")]
    pub retention_secs: Option<u64>,
    /// Within the retention, keep superseded generations only while the objects they alone
    /// reference weigh at most this fraction of the newest generation's (default 0.15; `inf`:
    /// the retention time alone), so a bulk ingest never keeps a second copy for the hour.
    #[arg(long, env = "TIDEPOOL_RETENTION_MAX_RATIO")]
    pub retention_max_ratio: Option<f64>,
    /// Run the garbage collector (manifest retention + sweep) this often (default 600; 0: only `tidepool repair`).
    #[arg(long, env = "TIDEPOOL_GC_INTERVAL_SECS")]
    pub gc_interval_secs: Option<u64>,
    /// `GET /metrics` names this many namespaces (the largest loaded; default 10); the rest are summed.
    #[arg(long, env = "TIDEPOOL_METRICS_TOP_NAMESPACES")]
    pub metrics_top_namespaces: Option<usize>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data dir.
    pub data_dir: PathBuf,
    /// Disk cache dir.
    pub cache_dir: PathBuf,
    /// Listen address (host:port).
    pub listen: String,
    /// Store URL (None: `<data_dir>/store`).
    pub store: Option<String>,
    /// S3 options.
    pub s3: S3Options,
    /// How often the store's breaker probes a store that stopped answering
    /// (`store/breaker.rs`).
    pub store_probe_interval: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter directives (reloadable).
    pub log_level: String,
    /// Run as a system service.
    pub system: bool,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Body limit after decompression.
    pub max_body_bytes: usize,
    /// Drain bound at shutdown.
    pub shutdown_timeout: Duration,
    /// Header read timeout.
    pub header_read_timeout: Duration,
    /// Idle connection / stalled body timeout.
    pub idle_timeout: Duration,
    /// Time a whole request body has to arrive.
    pub body_timeout: Duration,
    /// Time a whole snapshot upload has to arrive.
    pub upload_timeout: Duration,
    /// Largest snapshot upload.
    pub max_restore_bytes: u64,
    /// Cap on open client connections.
    pub max_connections: usize,
    /// Query slots per lane (0: the number of cores).
    pub query_threads: usize,
    /// Queries allowed to wait for a slot.
    pub max_queued_queries: usize,
    /// Per-request query deadline.
    pub query_timeout: Duration,
    /// API keys (empty: open access as default/default, loopback only).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Local models (`crate::models`), loaded and checked at start; reloadable.
    pub models: Vec<ModelConfig>,
    /// Open mode: browser origins allowed (`api::origin`).
    pub allowed_origins: Vec<String>,
    /// Open mode: Host names allowed besides loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Serve the browser console at `/console` (`api::console`).
    pub console: bool,
    /// Disk cache budget.
    pub cache_budget_bytes: u64,
    /// The node's memory budget as configured (None: derived).
    pub memory_budget_bytes: Option<u64>,
    /// The node's memory budget in force: configured, or derived by
    /// [`Config::resolve`] (`engine/budget.rs`); None only for a
    /// configuration built from parts without deriving (no budget).
    pub memory_budget: Option<crate::engine::budget::Derived>,
    /// Memory tier size.
    pub max_loaded_namespaces: usize,
    /// Compaction thresholds and backpressure.
    pub compaction: crate::engine::CompactionConfig,
    /// Retention of superseded generations.
    pub retention: Duration,
    /// The byte budget of retained generations, a fraction of the newest
    /// generation's bytes (None: the retention time alone).
    pub retention_max_ratio: Option<f64>,
    /// Garbage-collector interval (zero: off).
    pub gc_interval: Duration,
    /// Namespaces `GET /metrics` names.
    pub metrics_top_namespaces: usize,
    /// Offline-first sync to a remote (None: no `[sync]`, no sync).
    pub sync: Option<crate::sync::SyncConfig>,
}

impl Config {
    /// Resolve from flags/env, the config file they name, and the process env.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var_os(k);
        let (file, path) = match config_file(args, &env) {
            Some((path, required)) if required || path.exists() => (load_file(&path)?, Some(path)),
            _ => (FileConfig::default(), None),
        };
        let mut cfg = Config::from_parts(args, file, &env)?;
        cfg.config_file = path;
        cfg.memory_budget = Some(crate::engine::budget::resolve(cfg.memory_budget_bytes, Path::new("/")));
        Ok(cfg)
    }

    /// Resolve from parts (`env` is only used for the default data dir).
    pub fn from_parts(
        args: &ServeArgs,
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let mut compaction = compaction_config(args, &file);
        let sync = sync_config(args, file.sync.clone())?;
        if sync.is_some() {
            // Segments pushed to a bucket may be read cold there by other nodes.
            compaction.cold_index = crate::engine::ColdIndex::Always;
        }
        let system = args.system.or(file.system).unwrap_or(false);
        let data_dir = match args.data_dir.clone().or(file.data_dir) {
            Some(d) => d,
            None => default_data_dir(system, env)?,
        };
        let cache_dir = match args.cache_dir.clone().or(file.cache_dir) {
            Some(d) => d,
            None => first_dir(env("CACHE_DIRECTORY")).unwrap_or_else(|| data_dir.join("cache")),
        };
        let s3 = S3Options {
            endpoint: args.s3_endpoint.clone().or(file.s3_endpoint),
            region: args.s3_region.clone().or(file.s3_region),
            access_key_id: args.s3_access_key_id.clone().or(file.s3_access_key_id),
            secret_access_key: args.s3_secret_access_key.clone().or(file.s3_secret_access_key),
            allow_http: args.s3_allow_http.or(file.s3_allow_http).unwrap_or(false),
            connect_timeout: Some(secs(
                "s3_connect_timeout_secs",
                args.s3_connect_timeout_secs.or(file.s3_connect_timeout_secs),
                DEFAULT_S3_CONNECT_TIMEOUT_SECS,
            )?),
            request_timeout: Some(secs(
                "s3_request_timeout_secs",
                args.s3_request_timeout_secs.or(file.s3_request_timeout_secs),
                DEFAULT_S3_REQUEST_TIMEOUT_SECS,
            )?),
            max_retries: Some(3),
        };
        let store_probe_interval = secs(
            "s3_probe_interval_secs",
            args.s3_probe_interval_secs.or(file.s3_probe_interval_secs),
            DEFAULT_S3_PROBE_INTERVAL_SECS,
        )?;
        let max_body = args.max_body_bytes.or(file.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES);
        let memory_budget_bytes = args.memory_budget_bytes.or(file.memory_budget_bytes);
        let cfg = Config {
            data_dir,
            cache_dir,
            listen: args.listen.clone().or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            store: args.store.clone().or(file.store),
            s3,
            store_probe_interval,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .or_else(|| env("RUST_LOG").map(|v| v.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "info".to_owned()),
            system,
            config_file: None,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            shutdown_timeout: secs(
                "shutdown_timeout_secs",
                args.shutdown_timeout_secs.or(file.shutdown_timeout_secs),
                DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            )?,
            header_read_timeout: secs(
                "header_read_timeout_secs",
                args.header_read_timeout_secs.or(file.header_read_timeout_secs),
                DEFAULT_HEADER_READ_TIMEOUT_SECS,
            )?,
            idle_timeout: secs(
                "idle_timeout_secs",
                args.idle_timeout_secs.or(file.idle_timeout_secs),
                DEFAULT_IDLE_TIMEOUT_SECS,
            )?,
            body_timeout: secs(
                "body_timeout_secs",
                args.body_timeout_secs.or(file.body_timeout_secs),
                DEFAULT_BODY_TIMEOUT_SECS,
            )?,
            upload_timeout: secs(
                "upload_timeout_secs",
                args.upload_timeout_secs.or(file.upload_timeout_secs),
                DEFAULT_UPLOAD_TIMEOUT_SECS,
            )?,
            max_restore_bytes: args
                .max_restore_bytes
                .or(file.max_restore_bytes)
                .unwrap_or(DEFAULT_MAX_RESTORE_BYTES),
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            query_threads: args.query_threads.or(file.query_threads).unwrap_or(0),
            max_queued_queries: args
                .max_queued_queries
                .or(file.max_queued_queries)
                .unwrap_or(DEFAULT_MAX_QUEUED_QUERIES),
            query_timeout: millis(
                "query_timeout_ms",
                args.query_timeout_ms.or(file.query_timeout_ms),
                DEFAULT_QUERY_TIMEOUT_MS,
            )?,
            api_keys: file.api_keys,
            models: match &args.models {
                Some(flags) => flags.iter().map(|f| ModelConfig::parse_flag(f)).collect::<Result<_, _>>()?,
                None => file.models,
            },
            allowed_origins: args.allowed_origins.clone().or(file.allowed_origins).unwrap_or_default(),
            allowed_hosts: args.allowed_hosts.clone().or(file.allowed_hosts).unwrap_or_default(),
            console: args.console.or(file.console).unwrap_or(true),
            cache_budget_bytes: args
                .cache_budget_bytes
                .or(file.cache_budget_bytes)
                .unwrap_or(crate::engine::DEFAULT_CACHE_BUDGET_BYTES),
            memory_budget_bytes,
            memory_budget: memory_budget_bytes.map(crate::engine::budget::Derived::configured),
            max_loaded_namespaces: args
                .max_loaded_namespaces
                .or(file.max_loaded_namespaces)
                .unwrap_or(1024)
                .max(1),
            compaction,
            retention: Duration::from_secs(args.retention_secs.or(file.retention_secs).unwrap_or(3600)),
            retention_max_ratio: ratio(
                "retention_max_ratio",
                args.retention_max_ratio.or(file.retention_max_ratio),
                DEFAULT_RETENTION_MAX_RATIO,
            )?,
            gc_interval: Duration::from_secs(args.gc_interval_secs.or(file.gc_interval_secs).unwrap_or(600)),
            metrics_top_namespaces: args
                .metrics_top_namespaces
                .or(file.metrics_top_namespaces)
                .unwrap_or(crate::metrics::DEFAULT_TOP_NAMESPACES),
            sync,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configured models as the model library takes them.
    pub fn model_specs(&self) -> Vec<crate::models::ModelSpec> {
        self.models
            .iter()
            .map(|m| crate::models::ModelSpec { name: m.name.clone(), path: m.path.clone() })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ConfigError(format!("log_level {:?}: {e}", self.log_level)))?;
        if self.max_body_bytes < 1024 {
            return Err(ConfigError(format!(
                "max_body_bytes must be at least 1024, got {}",
                self.max_body_bytes
            )));
        }
        let local_store = self
            .store
            .as_deref()
            .is_none_or(|s| s.is_empty() || !s.contains("://") || s.starts_with("file://"));
        if self.sync.is_some() && !local_store {
            return Err(ConfigError(format!(
                "[sync] needs the node's own directory store as its primary; --store {:?} is not one \
                 (drop --store, or drop [sync] to serve straight from the bucket)",
                self.store.as_deref().unwrap_or_default()
            )));
        }
        if self.memory_budget_bytes.is_some_and(|b| b < 1 << 20) {
            return Err(ConfigError("memory_budget_bytes must be at least 1 MiB (1048576)".into()));
        }
        if self.max_connections == 0 {
            return Err(ConfigError("max_connections must be at least 1".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            if m.name.is_empty() || m.name.contains(['=', ',']) || m.name.chars().any(char::is_whitespace) {
                return Err(ConfigError(format!(
                    "models[{i}]: name {:?} must be non-empty, without '=', ',' or spaces",
                    m.name
                )));
            }
            if m.path.as_os_str().is_empty() {
                return Err(ConfigError(format!("models[{i}] ({}): path must not be empty", m.name)));
            }
            if !names.insert(&m.name) {
                return Err(ConfigError(format!("models: the name {:?} is configured twice", m.name)));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            if k.key.trim().is_empty() {
                return Err(ConfigError(format!("api_keys[{i}]: key must not be empty")));
            }
            if !seen.insert(k.key.as_str()) {
                return Err(ConfigError(format!("api_keys[{i}]: the same key is configured twice")));
            }
            crate::layout::validate_name("org", &k.org)
                .map_err(|e| ConfigError(format!("api_keys[{i}]: {e}")))?;
            crate::layout::validate_name("project", &k.project)
                .map_err(|e| ConfigError(format!("api_keys[{i}]: {e}")))?;
        }
        Ok(())
    }
}

/// `[sync]` merged with its flags/env (flags win); None when no remote is set.
fn sync_config(
    args: &ServeArgs,
    file: Option<crate::sync::config::SyncFile>,
) -> Result<Option<crate::sync::SyncConfig>, ConfigError> {
    let mut f = file.unwrap_or_default();
    let pick = |flag: &Option<String>, v: &mut Option<String>| {
        if flag.is_some() {
            v.clone_from(flag);
        }
    };
    pick(&args.sync_remote, &mut f.remote);
    pick(&args.sync_endpoint, &mut f.endpoint);
    pick(&args.sync_region, &mut f.region);
    pick(&args.sync_access_key_id, &mut f.access_key_id);
    pick(&args.sync_secret_access_key, &mut f.secret_access_key);
    pick(&args.sync_node_id, &mut f.node_id);
    f.allow_http = args.sync_allow_http.or(f.allow_http);
    f.interval_secs = args.sync_interval_secs.or(f.interval_secs);
    f.connect_timeout_secs = args.sync_connect_timeout_secs.or(f.connect_timeout_secs);
    f.request_timeout_secs = args.sync_request_timeout_secs.or(f.request_timeout_secs);
    f.sweep_interval_secs = args.sync_sweep_interval_secs.or(f.sweep_interval_secs);
    f.sweep_grace_secs = args.sync_sweep_grace_secs.or(f.sweep_grace_secs);
    if let Some(rules) = &args.sync_namespaces {
        f.namespaces = crate::sync::config::parse_rules(rules).map_err(ConfigError)?;
    }
    if f.remote.is_none() && f.namespaces.is_empty() && f.endpoint.is_none() {
        return Ok(None);
    }
    crate::sync::SyncConfig::resolve(f).map(Some).map_err(ConfigError)
}

fn compaction_config(args: &ServeArgs, file: &FileConfig) -> crate::engine::CompactionConfig {
    let d = crate::engine::CompactionConfig::default();
    crate::engine::CompactionConfig {
        wal_objects: args
            .compaction_wal_objects
            .or(file.compaction_wal_objects)
            .unwrap_or(d.wal_objects)
            .max(1),
        wal_bytes: args.compaction_wal_bytes.or(file.compaction_wal_bytes).unwrap_or(d.wal_bytes).max(1),
        max_segments: args
            .compaction_max_segments
            .or(file.compaction_max_segments)
            .unwrap_or(d.max_segments)
            .max(2),
        max_segment_rows: args
            .compaction_max_segment_rows
            .or(file.compaction_max_segment_rows)
            .unwrap_or(d.max_segment_rows)
            .max(1),
        backlog_bytes: args.backlog_bytes.or(file.backlog_bytes).unwrap_or(d.backlog_bytes),
        auto: true,
        idle_ms: args
            .compaction_idle_ms
            .or(file.compaction_idle_ms)
            .unwrap_or(crate::engine::compact::DEFAULT_IDLE_INDEX_MS),
        cold_index: d.cold_index,
        graph_code: args.graph_codes.or(file.graph_codes).unwrap_or_default().choice(),
    }
}

fn millis(name: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError(format!("{name} must be at least 1"))),
        n => Ok(Duration::from_millis(n)),
    }
}

/// A non-negative fraction; infinite means no bound (None).
fn ratio(name: &str, v: Option<f64>, default: f64) -> Result<Option<f64>, ConfigError> {
    match v.unwrap_or(default) {
        r if r.is_nan() || r < 0.0 => Err(ConfigError(format!("{name} must be a number >= 0 (or inf)"))),
        r if r.is_infinite() => Ok(None),
        r => Ok(Some(r)),
    }
}

fn secs(name: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError(format!("{name} must be at least 1"))),
        n => Ok(Duration::from_secs(n)),
    }
}

/// Read and parse a TOML config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

/// The config file to read and whether it must exist (see the module docs).
pub fn config_file(args: &ServeArgs, env: &dyn Fn(&str) -> Option<OsString>) -> Option<(PathBuf, bool)> {
    if let Some(p) = &args.config {
        return Some((p.clone(), true));
    }
    if !runs_as_service(args.system.unwrap_or(false), env) {
        return None;
    }
    let dir = first_dir(env("CONFIGURATION_DIRECTORY")).unwrap_or_else(|| PathBuf::from("/etc/tidepool"));
    Some((dir.join("config.toml"), false))
}

/// Run as a system service: `--system`, or started by systemd (`$INVOCATION_ID`).
fn runs_as_service(system: bool, env: &dyn Fn(&str) -> Option<OsString>) -> bool {
    system || env("INVOCATION_ID").is_some_and(|v| !v.is_empty())
}

/// The first entry of a systemd directory list (`A:B`), if set.
fn first_dir(v: Option<OsString>) -> Option<PathBuf> {
    let v = v.filter(|v| !v.is_empty())?;
    Some(PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or_default()))
}

/// The default data dir (see the module docs for the order).
pub fn default_data_dir(
    system: bool,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, ConfigError> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(state) = first_dir(env("STATE_DIRECTORY")) {
        return Ok(state);
    }
    if runs_as_service(system, env) {
        return Ok(PathBuf::from("/var/lib/tidepool"));
    }
    if let Some(xdg) = non_empty("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("tidepool"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".local/share/tidepool"));
    }
    Err(ConfigError("cannot determine a default data dir ($HOME is not set); pass --data-dir".into()))
}

#[cfg(test)]
mod tests;
