//! The service manager's view of the daemon (`sd_notify(3)`, socket-less):
//! `READY=1` once the data dir and metadata are open and the listener is
//! bound, `STATUS=` lines saying what the daemon is doing, `RELOADING=1` then
//! `READY=1` around a configuration reload, `STOPPING=1` when
//! the drain starts, and `WATCHDOG=1` pings when the unit sets `WatchdogSec=`.
//!
//! Invariants:
//! - Without `$NOTIFY_SOCKET` (not run by systemd) every call is a no-op;
//!   a failed notification is logged, never fatal.
//! - A watchdog ping proves liveness, not only that a timer fires: it is sent
//!   only after the runtime ran the pinging task, the blocking pool ran a
//!   metadata call, and the answer came back within the ping interval. A
//!   stalled runtime or blocking pool therefore stops the pings and systemd
//!   restarts the service.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::engine::Engine;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

/// `STATUS=...`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// `READY=1` with a status line.
pub fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

/// `RELOADING=1` with the monotonic timestamp systemd 253+ requires
/// (`READY=1` follows when the reload is done).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading the configuration")]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading the configuration")]),
    }
}

/// `STOPPING=1` with a status line.
pub fn stopping(text: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(text)]);
}

/// Start the watchdog task when the unit asks for one (`WatchdogSec=`):
/// pings at half the period, each after a liveness probe of the engine.
pub fn spawn_watchdog(engine: Arc<Engine>) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let every = (period / 2).max(Duration::from_millis(100));
    tracing::info!(period_ms = period.as_millis() as u64, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            // The readiness probe runs on the blocking pool: an answer proves
            // both pools move. A node whose metadata is failing still pings
            // (it is alive and recovering); a probe that hangs does not.
            if tokio::time::timeout(every, engine.ready()).await.is_ok() {
                send(&[NotifyState::Watchdog]);
            } else {
                tracing::warn!("liveness probe timed out; withholding the watchdog ping");
            }
        }
    });
}

/// Refresh `STATUS=` every `every` with what the engine holds.
pub fn spawn_status(engine: Arc<Engine>, listen: String, every: Duration) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            status(&serving_line(&engine, &listen));
        }
    });
}

/// `serving on ADDR; N namespaces loaded[; compacting M]`.
pub fn serving_line(engine: &Engine, listen: &str) -> String {
    let loaded = engine.loaded_namespaces().len();
    let compacting = engine.compactions_running();
    let mut line = format!("serving on {listen}; {loaded} namespaces loaded");
    if compacting > 0 {
        line.push_str(&format!("; compacting {compacting}"));
    }
    line
}
