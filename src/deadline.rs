//! The per-request query deadline, as seen by the evaluating thread.
//!
//! A query runs start to finish on one thread (a blocking-pool thread of
//! `api::query_pool`), so the deadline is thread-local: [`with_deadline`]
//! installs it around one evaluation and the long loops (row scans, BM25
//! over unindexed rows, prefix expansion) ask [`expired`] once per row, or
//! once per clause of a row where a row costs one pass per clause.
//!
//! It sits at the foundation, below `filter/` and `query/`, because both observe it: a pattern
//! match (`filter/pattern.rs`) can be as long as a scan.
//!
//! Invariants:
//! - Once the deadline has passed, [`expired`] stays true until the
//!   evaluation ends, so every loop asking it winds down in O(remaining
//!   rows) trivial steps; the result computed meanwhile is incomplete and
//!   [`with_deadline`] discards it (it returns [`Expired`]), so a truncated
//!   scan is never answered.
//! - Outside [`with_deadline`] nothing expires (tests and internal callers
//!   evaluate without a deadline).
//! - Reading the clock costs tens of nanoseconds, so it is read once every
//!   [`CHECK_EVERY`] calls, not per row.

use std::cell::Cell;
use std::time::Instant;

/// Calls between two reads of the clock. Costly loops call [`expired`] per
/// unit of work (a BM25 clause of a row, not a row), so this many calls stay
/// well under a millisecond of work.
const CHECK_EVERY: u32 = 32;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static EXPIRED: Cell<bool> = const { Cell::new(false) };
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// The deadline passed before the evaluation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// Restores the thread's previous deadline when the evaluation ends, even by
/// a panic (blocking-pool threads are reused).
struct Installed(Option<Instant>, bool);

impl Drop for Installed {
    fn drop(&mut self) {
        DEADLINE.set(self.0);
        EXPIRED.set(self.1);
    }
}

/// Runs `f` with `deadline`; `Err(Expired)` when it passed before `f` returned.
pub fn with_deadline<T>(deadline: Instant, f: impl FnOnce() -> T) -> Result<T, Expired> {
    let _restore = Installed(DEADLINE.replace(Some(deadline)), EXPIRED.replace(false));
    TICKS.set(0);
    let out = f();
    if EXPIRED.get() || Instant::now() >= deadline {
        return Err(Expired);
    }
    Ok(out)
}

/// The deadline of the thread's current evaluation (None outside one), for a helper thread that
/// takes part in it (`crate::fanout`).
pub fn current() -> Option<Instant> {
    DEADLINE.get()
}

/// Marks the current evaluation as past its deadline (a helper's part of it ran out of time):
/// [`expired`] is true from now on and [`with_deadline`] discards the result.
pub fn expire() {
    if DEADLINE.get().is_some() {
        EXPIRED.set(true);
    }
}

/// Whether the current evaluation is past its deadline (cheap: the clock is
/// read every [`CHECK_EVERY`] calls).
pub fn expired() -> bool {
    if EXPIRED.get() {
        return true;
    }
    let Some(deadline) = DEADLINE.get() else { return false };
    let ticks = TICKS.get().wrapping_add(1);
    TICKS.set(ticks);
    if !ticks.is_multiple_of(CHECK_EVERY) {
        return false;
    }
    let late = Instant::now() >= deadline;
    EXPIRED.set(late);
    late
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn no_deadline_never_expires() {
        assert!((0..10_000).all(|_| !expired()));
    }

    #[test]
    fn a_passed_deadline_stops_loops_and_discards_the_result() {
        let past = Instant::now() - Duration::from_millis(1);
        let r = with_deadline(past, || (0..100_000).take_while(|_| !expired()).count());
        assert_eq!(r, Err(Expired));
        assert!(!expired(), "the deadline is gone after the evaluation");
    }

    #[test]
    fn a_far_deadline_keeps_the_result() {
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(with_deadline(far, || (0..100_000).filter(|_| !expired()).count()), Ok(100_000));
    }
}
