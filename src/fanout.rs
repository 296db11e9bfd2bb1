//! One evaluation spread over idle cores: a costly query's independent pieces (its segments)
//! run on the evaluating thread and on helper threads the query pool lends it while one of its
//! slots is idle, so a query alone on a node answers in about the time of its largest piece.
//!
//! The query pool installs a [`Lender`] around each evaluation ([`with_lender`]); query code
//! asks [`map`] to run its pieces, and decides whether they are worth a helper (a thread costs
//! tens of microseconds to start). It sits at the foundation, beside `deadline`, because the
//! query layer uses it and the engine's pool provides it.
//!
//! Invariants:
//! - Helpers exist only while lent: the pool lends one of a lane's regular slots only while it is
//!   free and no query waits for it, and takes it back when the helper ends, so fanning out never
//!   delays another query's start nor runs more evaluations than the pool has slots.
//! - Every piece runs exactly once, on the caller's thread or a helper, taken in the order given
//!   (costliest first is the caller's choice); the results come back in that order, so the
//!   answer does not depend on which thread ran what.
//! - A helper runs under the caller's deadline and in an integrity scope of its own: a deadline
//!   passed or changed bytes met on a helper fail the caller's evaluation exactly as on the
//!   caller's thread (its result is discarded). A panic on a helper is the caller's panic. A
//!   helper thread that cannot be started gives its slot back at once; the others take its pieces.
//! - Without a lender (tests, benches calling the query layer directly), with one piece, or with
//!   no slot free, everything runs on the caller's thread, with the same results.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Lends idle cores to the evaluation it is installed around.
pub trait Lender: Send + Sync {
    /// A helper's permit when a core is idle now; the core is given back when it is dropped.
    fn lend(&self) -> Option<Box<dyn Send>>;
}

thread_local! {
    static LENDER: RefCell<Option<Arc<dyn Lender>>> = const { RefCell::new(None) };
    /// Set by [`always`]: every [`worth`] holds.
    static ALWAYS: Cell<bool> = const { Cell::new(false) };
    /// Pieces helpers ran for [`map`] calls made on this thread (see [`helped`]).
    static HELPED: Cell<u64> = const { Cell::new(0) };
}

/// Whether `work` (in the caller's unit) is worth helper threads, `min` being the least that is.
pub fn worth(work: u64, min: u64) -> bool {
    work >= min || ALWAYS.get()
}

/// Runs `f` with every [`worth`] on this thread true: tests check that a query spread over
/// helpers answers exactly as on one thread, on namespaces too small to be worth it.
#[doc(hidden)]
pub fn always<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALWAYS.set(self.0);
        }
    }
    let _restore = Restore(ALWAYS.replace(true));
    f()
}

/// Whether [`always`] is in force on this thread (work that is cut into pieces cuts small ones
/// too, so that tests on small namespaces cut them).
pub fn always_on() -> bool {
    ALWAYS.get()
}

/// How many pieces helpers have run for the [`map`] calls made on this thread so far.
pub fn helped() -> u64 {
    HELPED.get()
}

/// Restores the thread's previous lender when the evaluation ends, even by a panic (pool threads
/// are reused).
struct Installed(Option<Arc<dyn Lender>>);

impl Drop for Installed {
    fn drop(&mut self) {
        let prev = self.0.take();
        LENDER.with(|l| *l.borrow_mut() = prev);
    }
}

/// Runs `f` with `lender` lending helpers to the [`map`] calls inside it.
pub fn with_lender<T>(lender: Arc<dyn Lender>, f: impl FnOnce() -> T) -> T {
    let _restore = Installed(LENDER.with(|l| l.borrow_mut().replace(lender)));
    f()
}

/// Up to `wanted` helpers' permits from the thread's lender (none without one).
fn borrow(wanted: usize) -> Vec<Box<dyn Send>> {
    let Some(lender) = LENDER.with(|l| l.borrow().clone()) else { return Vec::new() };
    (0..wanted).map_while(|_| lender.lend()).collect()
}

/// `work` on every item, in item order, on this thread and on at most `max_helpers` lent helpers
/// (see the module's invariants); the results in item order.
pub fn map<T: Send, R: Send>(items: Vec<T>, max_helpers: usize, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let permits = borrow(max_helpers.min(items.len().saturating_sub(1)));
    if permits.is_empty() {
        return items.into_iter().map(work).collect();
    }
    let n = items.len();
    let pieces: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    // Runs pieces until none is left; how many it ran.
    let run = || {
        let mut ran = 0u64;
        while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < n) {
            let piece = pieces[i].lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(piece) = piece {
                let r = work(piece);
                *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
                ran += 1;
            }
        }
        ran
    };
    let deadline = crate::deadline::current();
    std::thread::scope(|s| {
        // A thread that cannot be started (a process at its thread limit) is no helper: its
        // permit goes back and the other threads take its pieces.
        let helpers: Vec<_> = permits
            .into_iter()
            .filter_map(|permit| {
                let run = &run;
                std::thread::Builder::new()
                    .name("query-helper".into())
                    .spawn_scoped(s, move || {
                        let _permit = permit;
                        helper(deadline, run)
                    })
                    .ok()
            })
            .collect();
        run();
        for h in helpers {
            match h.join() {
                Ok(outcome) => outcome.pass_on(),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results.into_iter().filter_map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner)).collect()
}

/// What a helper did, and met, that its caller's evaluation must answer for.
struct Outcome {
    ran: u64,
    expired: bool,
    rot: Option<crate::integrity::Rot>,
}

impl Outcome {
    /// Makes the caller's evaluation fail as the helper's would have.
    fn pass_on(self) {
        HELPED.set(HELPED.get() + self.ran);
        if self.expired {
            crate::deadline::expire();
        }
        if let Some(rot) = self.rot {
            crate::integrity::keep_rot(rot);
        }
    }
}

/// Runs the caller's pieces on a helper, under its deadline, in an integrity scope.
fn helper(deadline: Option<Instant>, run: &(dyn Fn() -> u64 + Sync)) -> Outcome {
    let ran = std::cell::Cell::new(0);
    let count = || ran.set(run());
    let checked = crate::integrity::within(|| match deadline {
        Some(d) => crate::deadline::with_deadline(d, count).is_err(),
        None => {
            count();
            false
        }
    });
    let ran = ran.get();
    match checked {
        Ok(expired) => Outcome { ran, expired, rot: None },
        Err(rot) => Outcome { ran, expired: false, rot: Some(rot) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Lends up to `free` helpers at once, counting what it lent.
    struct Cores {
        free: AtomicUsize,
        lent: AtomicUsize,
    }

    struct Back(Arc<Cores>);

    impl Drop for Back {
        fn drop(&mut self) {
            self.0.free.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Lender for Arc<Cores> {
        fn lend(&self) -> Option<Box<dyn Send>> {
            self.free.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1)).ok()?;
            self.lent.fetch_add(1, Ordering::SeqCst);
            Some(Box::new(Back(self.clone())))
        }
    }

    fn cores(free: usize) -> Arc<Cores> {
        Arc::new(Cores { free: AtomicUsize::new(free), lent: AtomicUsize::new(0) })
    }

    fn threads_of(items: usize, helpers: usize, free: usize) -> (Vec<usize>, usize, usize) {
        let c = cores(free);
        let lender: Arc<dyn Lender> = Arc::new(c.clone());
        let out = with_lender(lender, || {
            map((0..items).collect(), helpers, |i| {
                std::thread::sleep(Duration::from_millis(2));
                i * 10
            })
        });
        (out, c.lent.load(Ordering::SeqCst), c.free.load(Ordering::SeqCst))
    }

    #[test]
    fn results_come_back_in_item_order_and_the_cores_are_given_back() {
        let (out, lent, free) = threads_of(9, 3, 2);
        assert_eq!(out, (0..9).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(lent, 2, "two free cores, three wanted: two lent");
        assert!(helped() > 0, "the helpers ran pieces");
        assert_eq!(free, 2, "every lent core came back");
    }

    #[test]
    fn one_item_or_no_lender_runs_on_the_caller() {
        assert_eq!(threads_of(1, 3, 2).1, 0);
        let me = std::thread::current().id();
        let ids = map((0..4).collect(), 3, |_| std::thread::current().id());
        assert!(ids.iter().all(|id| *id == me));
    }

    #[test]
    fn a_helper_past_the_deadline_fails_the_callers_evaluation() {
        let c = cores(1);
        let lender: Arc<dyn Lender> = Arc::new(c);
        let caller = std::thread::current().id();
        let r = crate::deadline::with_deadline(Instant::now() + Duration::from_millis(200), || {
            with_lender(lender, || {
                map(vec![0, 1], 1, |i| {
                    // The piece on the helper outlives the deadline; the caller's takes long enough
                    // for the helper to take the other piece, and ends well within it.
                    if std::thread::current().id() == caller {
                        std::thread::sleep(Duration::from_millis(20));
                    } else {
                        while !crate::deadline::expired() {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    i
                })
            })
        });
        assert_eq!(r, Err(crate::deadline::Expired));
    }

    #[test]
    fn a_panic_on_a_helper_is_the_callers() {
        let lender: Arc<dyn Lender> = Arc::new(cores(1));
        let caller = std::thread::current().id();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_lender(lender, || {
                map(vec![0, 1, 2, 3], 1, |i| {
                    std::thread::sleep(Duration::from_millis(5));
                    assert!(std::thread::current().id() == caller, "piece {i} failed on a helper");
                })
            })
        }));
        assert!(r.is_err());
    }
}
