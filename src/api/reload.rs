//! Configuration reload (`SIGHUP`, `systemctl reload`): re-read the config
//! file with the flags and environment the daemon started with, apply what a
//! running daemon can change, report what needs a restart.
//!
//! Invariants:
//! - A configuration that does not resolve (unreadable, malformed, invalid)
//!   changes nothing: the old one stays in force and the reason is logged and
//!   returned.
//! - Only settings marked `reloadable` in `config::effective` are applied (API
//!   keys, log filter, cache and memory budgets, compaction thresholds, body
//!   size and timeouts, query queue and deadline); any
//!   other changed setting is reported as needing a restart and keeps its
//!   running value, so the configuration kept here is the one in force.
//! - A daemon listening beyond loopback never becomes open: a reload that
//!   would leave it with no API keys is refused as a whole.
//! - Requests in flight are not interrupted: the key set is swapped whole
//!   (`Auth::replace`) and only new requests see it.
//! - The service manager sees `RELOADING=1`, then `READY=1` with a `STATUS=`
//!   line naming the outcome.
//! - The node's memory budget is re-derived from a cgroup limit (or the new
//!   setting), never re-sampled from `MemAvailable` ([`keep_sampled_budget`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::{systemd, AppState};
use crate::config::effective::{changed, settings};
use crate::config::{Config, ServeArgs};
use crate::engine::Tunables;

/// Sets the log filter of the running subscriber (owned by the binary).
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The outcome of one reload.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Changed settings now in force.
    pub applied: Vec<&'static str>,
    /// Changed settings that keep their running value until a restart.
    pub needs_restart: Vec<&'static str>,
    /// Why nothing was applied.
    pub error: Option<String>,
}

impl ReloadReport {
    fn failed(why: String) -> Self {
        ReloadReport { error: Some(why), ..ReloadReport::default() }
    }

    /// One line for logs and `STATUS=`.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("reload failed, the previous configuration stays in force: {e}");
        }
        let list = |v: &[&str]| if v.is_empty() { "nothing".to_owned() } else { v.join(", ") };
        let mut line = format!("configuration reloaded: applied {}", list(&self.applied));
        if !self.needs_restart.is_empty() {
            line.push_str(&format!("; not applied until a restart: {}", self.needs_restart.join(", ")));
        }
        line
    }
}

/// Re-resolves and applies the configuration of a running daemon.
pub struct Reloader {
    args: ServeArgs,
    current: Mutex<Config>,
    state: Arc<AppState>,
    listen: SocketAddr,
    set_log_filter: LogFilterSetter,
}

impl Reloader {
    /// A reloader for the daemon started with `args` (resolved to `current`), bound to `listen`.
    pub fn new(
        args: ServeArgs,
        current: Config,
        state: Arc<AppState>,
        listen: SocketAddr,
        set_log_filter: LogFilterSetter,
    ) -> Self {
        Reloader { args, current: Mutex::new(current), state, listen, set_log_filter }
    }

    /// Reload once: resolve, apply, log and tell the service manager.
    pub fn reload(&self) -> ReloadReport {
        systemd::reloading();
        let report = match Config::resolve(&self.args) {
            Ok(new) => self.apply(new),
            Err(e) => ReloadReport::failed(e.0),
        };
        if report.error.is_some() {
            tracing::error!("{}", report.summary());
        } else if report.needs_restart.is_empty() {
            tracing::info!("{}", report.summary());
        } else {
            tracing::warn!("{}", report.summary());
        }
        systemd::ready(&report.summary());
        report
    }

    fn apply(&self, mut new: Config) -> ReloadReport {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        keep_sampled_budget(&cur, &mut new);
        let (before, after) = (settings(&cur), settings(&new));
        let reloadable = |key: &str| after.iter().any(|s| s.key == key && s.reloadable);
        let (applied, needs_restart): (Vec<_>, Vec<_>) =
            changed(&before, &after).into_iter().partition(|k| reloadable(k));
        if new.api_keys.is_empty() && !self.listen.ip().is_loopback() {
            return ReloadReport::failed(format!(
                "the new configuration has no API keys, and the daemon listens on {}, not a loopback address",
                self.listen
            ));
        }
        if applied.contains(&"log_level") {
            if let Err(e) = (self.set_log_filter)(&new.log_level) {
                return ReloadReport::failed(format!("log_level: {e}"));
            }
            cur.log_level = new.log_level.clone();
        }
        if applied.contains(&"models") {
            // A model that cannot load fails the reload whole: the models served stay as they were.
            let specs = new.model_specs();
            // Unchanged models are kept (their counters run on); only new or moved ones load.
            match self.state.engine.models().current().reload(&specs) {
                Ok(set) => self.state.engine.models().replace(set),
                Err(e) => return ReloadReport::failed(format!("models: {e}")),
            }
            cur.models = new.models.clone();
        }
        self.state.auth.replace(new.api_keys.clone());
        self.state.engine.reconfigure(Tunables {
            cache_budget_bytes: new.cache_budget_bytes,
            max_loaded_namespaces: new.max_loaded_namespaces,
            memory_budget_bytes: new.memory_budget.as_ref().map(|b| b.bytes),
            compaction: new.compaction.clone(),
        });
        *self.state.limits.write().unwrap_or_else(PoisonError::into_inner) = super::Limits {
            max_body_bytes: new.max_body_bytes,
            body_stall_timeout: cur.idle_timeout,
            body_timeout: new.body_timeout,
            upload_timeout: new.upload_timeout,
            max_restore_bytes: new.max_restore_bytes,
        };
        self.state.engine.query_pool().retune(new.max_queued_queries, new.query_timeout);
        cur.max_body_bytes = new.max_body_bytes;
        cur.body_timeout = new.body_timeout;
        cur.upload_timeout = new.upload_timeout;
        cur.max_restore_bytes = new.max_restore_bytes;
        cur.max_queued_queries = new.max_queued_queries;
        cur.query_timeout = new.query_timeout;
        cur.api_keys = new.api_keys;
        cur.cache_budget_bytes = new.cache_budget_bytes;
        cur.max_loaded_namespaces = new.max_loaded_namespaces;
        cur.memory_budget_bytes = new.memory_budget_bytes;
        cur.memory_budget = new.memory_budget;
        cur.compaction = new.compaction;
        ReloadReport { applied, needs_restart, error: None }
    }
}

/// A budget derived from `MemAvailable` is sampled once, at start: what other
/// processes use at the moment of a reload must not move it (nor report it
/// changed). One derived from a cgroup limit is re-read, so
/// `systemctl set-property tidepool MemoryMax=...` and a reload apply it.
fn keep_sampled_budget(cur: &Config, new: &mut Config) {
    use crate::engine::budget::LimitSource::MemAvailable;
    let sampled = |c: &Config| c.memory_budget.as_ref().is_some_and(|b| b.source == MemAvailable);
    if sampled(cur) && sampled(new) {
        new.memory_budget.clone_from(&cur.memory_budget);
    }
}
