//! The HTTP edge: the turbopuffer v2 wire API over hyper 1.x (no framework).
//!
//! Module map: [`router`] (method + path → route), [`auth`] (bearer key →
//! org/project), [`body`] (bounded, gzip-aware bodies; JSON responses),
//! [`handlers`] (one function per route), [`error`] (statuses and the
//! `{"status":"error","error":..}` shape), [`server`] (connections,
//! timeouts, graceful drain), [`stream`] (streamed response and request
//! bodies: export, snapshot download, restore upload), `maintenance`
//! (branch/copy, time travel, export, snapshots, repair routes), [`metrics`]
//! (`GET /metrics` and the request/query recording hooks), [`console`] (the
//! browser console's compiled-in files at `/console`).
//!
//! Invariants:
//! - This is the only module that knows HTTP; it parses requests (through
//!   `wire/`), calls `Engine` methods and renders their typed answers (through
//!   `wire/`). It never chooses how a read is done nor evaluates a query:
//!   `Engine::read` does both.
//! - The daemon refuses to start on a non-loopback address without API keys.
//! - Start-up order is: check the listen address, open the store, open the
//!   engine (takes the data-dir lock, failing fast if another process holds
//!   it), bind, print `listening on http://ADDR` on stdout. Shutdown drains
//!   requests before the engine (and its lock) is dropped.

pub mod auth;
pub mod body;
pub mod console;
mod ctx;
pub mod error;
pub mod handlers;
pub mod jobs;
mod maintenance;
pub mod metrics;
pub mod origin;
pub mod reload;
pub mod router;
pub mod server;
pub mod stream;
mod sync;
pub mod systemd;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;

use self::auth::Auth;
use self::server::{ServerOptions, Tracker};
use crate::config::{Config, ServeArgs};
use crate::engine::{Engine, EngineConfig};
use crate::store::Store;

/// Request-size and body-timing limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Longest wait for the next chunk of a body.
    pub body_stall_timeout: Duration,
    /// Longest time for a whole (JSON) request body.
    pub body_timeout: Duration,
    /// Longest time for a whole snapshot upload (restore).
    pub upload_timeout: Duration,
    /// Largest snapshot upload (restore).
    pub max_restore_bytes: u64,
}

impl Limits {
    /// Timing of a JSON request body.
    pub fn body_timing(&self) -> body::BodyTiming {
        body::BodyTiming { stall: self.body_stall_timeout, total: self.body_timeout }
    }

    /// Timing of a snapshot upload.
    pub fn upload_timing(&self) -> body::BodyTiming {
        body::BodyTiming { stall: self.body_stall_timeout, total: self.upload_timeout }
    }
}

/// State shared by every request.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// API keys.
    pub auth: Auth,
    /// Body limits (replaced whole by a configuration reload; read with [`AppState::limits`]).
    pub limits: std::sync::RwLock<Limits>,
    /// Set once shutdown starts (`/ready` turns 503).
    pub draining: AtomicBool,
    /// Live connections and request tasks.
    pub tracker: Tracker,
    /// Admin jobs running in the background (repair, verify).
    pub jobs: Arc<jobs::Jobs>,
    /// Origin, Host and content-type rules of the open loopback mode.
    pub browser: origin::BrowserPolicy,
    /// Offline-first sync to a remote (None: no `[sync]`).
    pub sync: Option<Arc<crate::sync::Syncer>>,
    /// Serve the browser console (`console`).
    pub console: bool,
}

impl AppState {
    /// The body limits in force (a copy: a reload affects later requests only).
    pub fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// State for an open engine.
    pub fn new(engine: Arc<Engine>, auth: Auth, limits: Limits) -> Self {
        AppState {
            engine,
            auth,
            limits: std::sync::RwLock::new(limits),
            draining: AtomicBool::new(false),
            tracker: Tracker::default(),
            jobs: Arc::default(),
            browser: origin::BrowserPolicy::default(),
            sync: None,
            console: true,
        }
    }
}

/// What lets a running daemon reload its configuration (see [`reload`]).
pub struct ReloadHooks {
    /// The flags and environment the daemon was started with.
    pub args: ServeArgs,
    /// Yields once per reload request (`SIGHUP`).
    pub requests: Pin<Box<dyn Stream<Item = ()> + Send>>,
    /// Sets the running log filter.
    pub set_log_filter: reload::LogFilterSetter,
}

/// Run the daemon until `shutdown` resolves; returns after draining. With
/// `reload`, each reload request re-reads the configuration.
pub async fn run_daemon(
    cfg: &Config,
    shutdown: impl Future<Output = ()>,
    reload: Option<ReloadHooks>,
) -> Result<(), String> {
    let addr = resolve_listen(&cfg.listen).await?;
    if cfg.api_keys.is_empty() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr}: it is not a loopback address and no API keys are configured; \
             add [[api_keys]] entries to the config file (--config) or listen on 127.0.0.1"
        ));
    }
    // Behind the breaker: a silent bucket costs one call's timeouts, not every call's.
    let store = Store::from_url(cfg.store.as_deref(), &cfg.data_dir.join("store"), &cfg.s3)
        .map_err(|e| format!("cannot open the object store: {e}"))?
        .with_breaker(cfg.store_probe_interval);
    let store_desc = store.description().to_owned();
    let mut engine_cfg = EngineConfig::new(cfg.data_dir.clone(), store);
    engine_cfg.cache_dir = cfg.cache_dir.clone();
    engine_cfg.cache_budget_bytes = cfg.cache_budget_bytes;
    engine_cfg.max_loaded_namespaces = cfg.max_loaded_namespaces;
    if let Some(budget) = &cfg.memory_budget {
        engine_cfg.node_budget_bytes = Some(budget.bytes);
        engine_cfg.memory_budget_bytes = crate::engine::budget::tier_bytes(budget.bytes);
        tracing::info!(bytes = budget.bytes, how = %budget.describe(), "memory budget");
    }
    engine_cfg.compaction = cfg.compaction.clone();
    engine_cfg.retention_ms = u64::try_from(cfg.retention.as_millis()).unwrap_or(u64::MAX);
    engine_cfg.retention_max_ratio = cfg.retention_max_ratio;
    engine_cfg.gc_interval_ms = u64::try_from(cfg.gc_interval.as_millis()).unwrap_or(u64::MAX);
    engine_cfg.metrics = Arc::new(crate::metrics::Metrics::new(cfg.metrics_top_namespaces));
    engine_cfg.query_pool =
        Arc::new(crate::engine::QueryPool::new(cfg.query_threads, cfg.max_queued_queries, cfg.query_timeout));
    engine_cfg.models = Arc::new(crate::engine::ModelRegistry::new(load_models(cfg.model_specs()).await?));
    systemd::status(&format!("opening data dir {}", cfg.data_dir.display()));
    let engine = Engine::open(engine_cfg)
        .await
        .map_err(|e| format!("cannot open data dir {}: {e}", cfg.data_dir.display()))?;
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
    let auth = Auth::new(cfg.api_keys.clone());
    tracing::info!(
        listen = %local,
        data_dir = %cfg.data_dir.display(),
        store = %store_desc,
        auth = if auth.is_open() { "open (loopback only, default/default)" } else { "api keys" },
        "tidepool started"
    );
    announce(local);
    systemd::ready(&systemd::serving_line(&engine, &local.to_string()));
    systemd::spawn_watchdog(engine.clone());
    systemd::spawn_status(engine.clone(), local.to_string(), Duration::from_secs(5));
    let limits = Limits {
        max_body_bytes: cfg.max_body_bytes,
        body_stall_timeout: cfg.idle_timeout,
        body_timeout: cfg.body_timeout,
        upload_timeout: cfg.upload_timeout,
        max_restore_bytes: cfg.max_restore_bytes,
    };
    let sync = match &cfg.sync {
        Some(sc) => {
            let s = crate::sync::Syncer::open(engine.clone(), sc.clone())
                .await
                .map_err(|e| format!("cannot set up sync to {}: {e}", sc.remote))?;
            tracing::info!(remote = %sc.remote, node_id = s.node(), interval_secs = sc.interval.as_secs(), "sync enabled");
            s.spawn_loop();
            Some(s)
        }
        None => None,
    };
    let mut state = AppState::new(engine, auth, limits);
    state.sync = sync;
    state.console = cfg.console;
    state.browser = origin::BrowserPolicy::new(cfg.allowed_origins.clone(), cfg.allowed_hosts.clone());
    let state = Arc::new(state);
    if let Some(hooks) = reload {
        spawn_reloader(hooks, cfg.clone(), state.clone(), local);
    }
    let shutdown = async move {
        shutdown.await;
        systemd::stopping("draining in-flight requests");
    };
    let opts = ServerOptions {
        header_read_timeout: cfg.header_read_timeout,
        idle_timeout: cfg.idle_timeout,
        shutdown_timeout: cfg.shutdown_timeout,
        max_connections: server::fit_fd_limit(cfg.max_connections),
    };
    server::serve(listener, state, opts, shutdown).await;
    tracing::info!("tidepool stopped");
    Ok(())
}

/// Serve reload requests one at a time for the life of the daemon.
fn spawn_reloader(hooks: ReloadHooks, cfg: Config, state: Arc<AppState>, listen: SocketAddr) {
    let ReloadHooks { args, mut requests, set_log_filter } = hooks;
    let reloader = Arc::new(reload::Reloader::new(args, cfg, state, listen, set_log_filter));
    tokio::spawn(async move {
        while requests.next().await.is_some() {
            // Reading the file and resizing caches may block: keep it off the runtime's workers.
            let r = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || r.reload()).await;
        }
    });
}

/// Loads and checks the configured models (off the async workers: reading weights and the
/// self-check inference take a while). A missing or damaged model directory stops the daemon
/// with a message naming it.
pub async fn load_models(specs: Vec<crate::models::ModelSpec>) -> Result<crate::models::ModelSet, String> {
    if specs.is_empty() {
        return Ok(crate::models::ModelSet::empty());
    }
    systemd::status("loading local models");
    let set = tokio::task::spawn_blocking(move || crate::models::ModelSet::load(&specs))
        .await
        .map_err(|e| format!("loading the models failed: {e}"))?
        .map_err(|e| format!("cannot load a local model: {e}"))?;
    for m in set.iter() {
        tracing::info!(model = m.name(), path = %m.path().display(), kind = ?m.kind(), dims = m.dims(),
            max_tokens = m.max_tokens(), "local model loaded");
    }
    Ok(set)
}

async fn resolve_listen(listen: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| format!("invalid listen address {listen:?}: {e} (expected HOST:PORT)"))?;
    addrs.next().ok_or_else(|| format!("listen address {listen:?} resolves to nothing"))
}

/// Print the bound address on stdout (tests and supervisors read it).
fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
}
