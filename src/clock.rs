//! Injected time and id sources, so tests can replay a seed.
//!
//! Invariant: engine code never reads the system clock or an unseeded RNG
//! directly; it goes through a [`Clock`] and an [`IdGen`] held by the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{RngCore, SeedableRng};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A manual clock for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }
    /// Move time forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of unique ids (commit ids, WAL tokens).
pub trait IdGen: Send + Sync + std::fmt::Debug {
    /// A fresh 128-bit id.
    fn next_uuid(&self) -> uuid::Uuid;
    /// A fresh id as 32 lowercase hex digits (used in object keys).
    fn next_token(&self) -> String {
        self.next_uuid().simple().to_string()
    }
}

/// Ids from a seeded RNG (`seed = None` seeds from the OS).
#[derive(Debug)]
pub struct RandomIds(Mutex<rand::rngs::StdRng>);

impl RandomIds {
    /// A generator; `Some(seed)` makes the sequence replayable.
    pub fn new(seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        RandomIds(Mutex::new(rng))
    }
}

impl IdGen for RandomIds {
    fn next_uuid(&self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// The default clock and id source of a running daemon.
pub fn system() -> (Arc<dyn Clock>, Arc<dyn IdGen>) {
    (Arc::new(SystemClock), Arc::new(RandomIds::new(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_replay() {
        let a = RandomIds::new(Some(7));
        let b = RandomIds::new(Some(7));
        assert_eq!(a.next_token(), b.next_token());
        assert_ne!(a.next_token(), RandomIds::new(Some(8)).next_token());
    }
}
