//! Offline-first sync: the node's own store is its primary, and a round
//! (every `interval_secs`, or on `POST /v1/sync/run`) reconciles each
//! namespace a rule covers with a remote bucket laid out exactly like a
//! `--store s3://` bucket (`storage-format.md` 12).
//!
//! - [`config`]: the `[sync]` settings and the namespace rules.
//! - [`state`]: the per-namespace sync record in `meta.redb`, the status.
//! - [`transfer`]: verified, idempotent, bounded copies of immutable objects.
//! - [`sweep`]: garbage collection of the remote by reachability (one node at a time).
//! - [`lease`]: one writer per `push` namespace across nodes (fencing epochs).
//! - [`reconcile`]: one namespace: push, pull, or a conflict (rebase/branch).
//! - `heal`: damaged local objects fetched again from the remote; `live`: the status as of now.
//!
//! Invariants:
//! - The remote is never on a request's path: writes are acknowledged when
//!   durable locally and queries read local data; only the sync round (a
//!   background task, one at a time) talks to the remote, with bounded
//!   timeouts, so a dead uplink costs a failed round and nothing else.
//! - Remote generations are published with the same commit unit as local
//!   ones (`ManifestLog::remote`: conditional create, ambiguous outcomes
//!   resolved by commit id), after every object they reference is there.
//! - Nothing in the remote is deleted by a round; nothing local is deleted
//!   except through the local commit unit's refcounts.

pub mod config;
mod heal;
pub mod lease;
mod live;
pub mod reconcile;
pub mod state;
pub mod sweep;
pub mod transfer;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

pub use self::config::{Mode, OnConflict, Rule, SyncConfig};
use self::state::{NamespaceStatus, RemoteStatus, SyncRecord};
use self::sweep::SweepReport;
use self::transfer::{Check, Transfer};
use crate::engine::{Engine, EngineError};
use crate::layout::{validate_name, NsPath};
use crate::store::Store;

/// One node's sync with its remote.
pub struct Syncer {
    engine: Arc<Engine>,
    remote: Store,
    cfg: SyncConfig,
    node: String,
    up: Transfer,
    down: Transfer,
    round: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
    started_ms: u64,
    /// Per namespace, the keys the remote's newest manifest referenced when a
    /// round last read it: what the status counts as already there while no
    /// round runs (`live.rs`).
    remote_keys: Mutex<BTreeMap<NsPath, Arc<HashSet<String>>>>,
    /// One reachability probe at a time (`live.rs`).
    probe: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("remote", &self.cfg.remote)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Status {
    remote: RemoteStatus,
    namespaces: BTreeMap<NsPath, NamespaceStatus>,
    /// When this node last swept the remote, and the outcome.
    last_sweep: Option<(u64, Result<sweep::SweepReport, String>)>,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Namespaces looked at.
    pub namespaces: usize,
    /// Namespaces whose round failed.
    pub failed: usize,
}

impl Syncer {
    /// Open the remote (no request is made: a node starts offline as well).
    pub async fn open(engine: Arc<Engine>, cfg: SyncConfig) -> Result<Arc<Syncer>, EngineError> {
        let scratch = engine.scratch_dir().to_path_buf();
        let remote = Store::from_url(Some(&cfg.remote), &scratch, &cfg.s3)?;
        let node = match &cfg.node_id {
            Some(n) => n.clone(),
            None => {
                let fresh = format!("node-{}", &engine.next_token()[..12]);
                engine.sync_node_id(fresh).await?
            }
        };
        validate_name("node_id", &node).map_err(|e| EngineError::invalid_input(e.to_string()))?;
        let local = engine.sync_local_store();
        let engine_now = engine.clock().now_ms();
        let status = Status {
            remote: RemoteStatus { url: cfg.remote.clone(), ..RemoteStatus::default() },
            ..Status::default()
        };
        Ok(Arc::new(Syncer {
            // Uploads are trusted for half the sweep's grace period (see transfer).
            up: Transfer::new(local.clone(), remote.clone(), Check::Known { fresh: cfg.sweep_grace / 2 }),
            down: Transfer::new(remote.clone(), local, Check::Head),
            engine,
            remote,
            cfg,
            node,
            round: tokio::sync::Mutex::new(()),
            status: Mutex::new(status),
            started_ms: engine_now,
            remote_keys: Mutex::default(),
            probe: tokio::sync::Mutex::new(()),
        }))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The rule covering a namespace, if any.
    pub fn rule_for(&self, path: &NsPath) -> Option<&Rule> {
        self.cfg.rule_for(path.ns())
    }

    /// Refuse a local write to a `pull` namespace (a read replica): 409.
    pub fn check_writable(&self, path: &NsPath) -> Result<(), EngineError> {
        match self.rule_for(path) {
            Some(r) if r.mode == Mode::Pull => Err(EngineError::conflict(format!(
                "namespace {} is a read replica here (sync mode pull, rule {:?}); write it on the node that pushes it",
                path.ns(),
                r.pattern
            ))),
            _ => Ok(()),
        }
    }

    /// Run a round at once (a node coming back syncs without waiting), then
    /// every `interval_secs`, until the syncer is dropped.
    pub fn spawn_loop(self: &Arc<Self>) {
        let me: Weak<Syncer> = Arc::downgrade(self);
        let interval = self.cfg.interval;
        tokio::spawn(async move {
            loop {
                let Some(s) = me.upgrade() else { return };
                s.run_round().await;
                if s.sweep_due() {
                    let _ = s.run_sweep(None).await;
                }
                drop(s);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// One full round over every namespace a rule covers (local ones, and
    /// remote ones a `pull`/`both` rule covers). Rounds never overlap.
    pub async fn run_round(&self) -> RoundReport {
        let _one = self.round.lock().await;
        self.heal_damaged().await;
        let paths = match self.discover().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "sync round could not list namespaces");
                return RoundReport { namespaces: 0, failed: 1 };
            }
        };
        let mut report = RoundReport { namespaces: paths.len(), failed: 0 };
        for (path, rule) in paths {
            if let Err(e) = self.sync_one(&path, &rule).await {
                report.failed += 1;
                tracing::warn!(namespace = %path, error = %e, "sync of namespace failed; retried next round");
                self.note_error(&path, &rule, &e);
            }
        }
        report
    }

    fn sweep_due(&self) -> bool {
        let every = u64::try_from(self.cfg.sweep_interval.as_millis()).unwrap_or(u64::MAX);
        let st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = st.last_sweep.as_ref().map(|(at, _)| *at);
        // The first sweep waits one interval after start-up.
        let since = last.unwrap_or(self.started_ms);
        every > 0 && self.engine.clock().now_ms().saturating_sub(since) >= every
    }

    /// Sweep the remote now, one `(org, project)` or all of it (one sweeping
    /// node at a time), and record the outcome.
    pub async fn run_sweep(&self, scope: Option<(String, String)>) -> Result<sweep::SweepReport, String> {
        let _one = self.round.lock().await;
        let out = self.sweep(scope.as_ref()).await.map_err(|e| e.to_string());
        if let Err(e) = &out {
            tracing::warn!(error = %e, "remote sweep did not run to the end");
        }
        let now = self.engine.clock().now_ms();
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).last_sweep =
            Some((now, out.clone()));
        out
    }

    /// The namespaces a round covers, with their rules.
    async fn discover(&self) -> Result<Vec<(NsPath, Rule)>, EngineError> {
        let mut out = BTreeMap::new();
        for path in namespaces_in(&self.engine.sync_local_store()).await? {
            if let Some(r) = self.rule_for(&path) {
                out.insert(path.clone(), r.clone());
            }
        }
        if self.cfg.rules.iter().any(|r| r.mode != Mode::Push) {
            let remote = namespaces_in(&self.remote).await;
            self.contact(remote.is_ok());
            for path in remote? {
                if let Some(r) = self.rule_for(&path).filter(|r| r.mode != Mode::Push) {
                    out.insert(path.clone(), r.clone());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn record(&self, path: &NsPath) -> Result<SyncRecord, EngineError> {
        self.engine.sync_record(path).await
    }

    async fn save_record(&self, path: &NsPath, rec: SyncRecord) -> Result<(), EngineError> {
        self.engine.save_sync_record(path, rec).await
    }

    fn contact(&self, ok: bool) {
        let now = self.engine.clock().now_ms();
        let mut st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.remote.reachable = Some(ok);
        if ok {
            st.remote.last_contact = Some(now);
        }
    }

    fn update(&self, path: &NsPath, rule: &Rule, f: impl FnOnce(&mut NamespaceStatus)) {
        let mut st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = st.namespaces.entry(path.clone()).or_insert_with(|| NamespaceStatus {
            namespace: path.ns().to_owned(),
            project: path.project_id(),
            ..NamespaceStatus::default()
        });
        entry.mode = rule.mode.as_str();
        entry.on_conflict = rule.on_conflict.as_str();
        f(entry);
    }

    fn note_error(&self, path: &NsPath, rule: &Rule, e: &EngineError) {
        if e.kind() == crate::engine::ErrorKind::Unavailable {
            self.contact(false);
        }
        let now = self.engine.clock().now_ms();
        self.update(path, rule, |s| {
            s.last_error = Some(e.to_string());
            s.lag_secs = s.last_success.map_or(0, |t| now.saturating_sub(t) / 1000);
        });
    }

    /// What `GET /v1/sync/status` shows, limited to one `org/project` (None: all); rendered by
    /// `wire::sync`.
    pub fn status(&self, project: Option<&str>) -> StatusView {
        let st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        StatusView {
            node_id: self.node.clone(),
            remote: st.remote.clone(),
            interval_secs: self.cfg.interval.as_secs(),
            last_sweep: st.last_sweep.clone(),
            namespaces: st
                .namespaces
                .values()
                .filter(|n| project.is_none_or(|p| n.project == p))
                .cloned()
                .collect(),
        }
    }

    /// The sync part of a namespace's metadata (None: no rule covers it): its status once a round
    /// has seen it, else only its rule.
    pub fn namespace_status(&self, path: &NsPath) -> Option<NamespaceView> {
        let rule = self.rule_for(path)?;
        let st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(match st.namespaces.get(path) {
            Some(s) => NamespaceView::Seen(s.clone()),
            None => NamespaceView::Unseen {
                namespace: path.ns().to_owned(),
                mode: rule.mode.as_str(),
                on_conflict: rule.on_conflict.as_str(),
            },
        })
    }
}

/// A node's sync status (`GET /v1/sync/status`).
#[derive(Debug, Clone)]
pub struct StatusView {
    /// This node's id.
    pub node_id: String,
    /// The remote and whether it answers.
    pub remote: RemoteStatus,
    /// Seconds between rounds.
    pub interval_secs: u64,
    /// When this node last swept the remote (ms since the epoch), and the outcome.
    pub last_sweep: Option<(u64, Result<SweepReport, String>)>,
    /// The namespaces in scope.
    pub namespaces: Vec<NamespaceStatus>,
}

/// One namespace's sync status in its metadata.
#[derive(Debug, Clone)]
pub enum NamespaceView {
    /// A round has seen it.
    Seen(NamespaceStatus),
    /// A rule covers it; no round has seen it yet.
    Unseen {
        /// Its name.
        namespace: String,
        /// push | pull | both.
        mode: &'static str,
        /// rebase | branch.
        on_conflict: &'static str,
    },
}

/// Every namespace a store holds (`{org}/{project}/namespaces/{ns}/`).
async fn namespaces_in(store: &Store) -> Result<Vec<NsPath>, EngineError> {
    let mut out = Vec::new();
    for org in store.list_dirs("").await? {
        for project in store.list_dirs(&format!("{org}/")).await? {
            let prefix = NsPath::project_namespaces_prefix(&org, &project);
            for ns in store.list_dirs(&prefix).await? {
                if let Ok(p) = NsPath::new(&org, &project, &ns) {
                    out.push(p);
                }
            }
        }
    }
    Ok(out)
}
