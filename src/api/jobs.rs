//! Admin jobs: a long admin operation (repair, verify, a namespace's compaction) started with
//! `?background=true` runs as a task of the daemon and answers `202` with a
//! job id at once; `GET /v1/_admin/jobs/{id}` reports its progress and, once
//! finished, its result or error. So no client waits on one HTTP request for
//! the length of the operation.
//!
//! Invariants:
//! - A job belongs to the org/project that started it: another tenant's id
//!   is a 404, like an unknown one (tenant isolation).
//! - A job runs to its end even if nobody polls it; the newest
//!   [`KEPT_FINISHED`] finished jobs stay pollable, older ones are forgotten.
//! - Job ids are never reused within a daemon's life.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::Value as Json;

use super::auth::Principal;
use super::error::ApiError;
use crate::wire::admin::{job_started, job_status, JobOutcome, JobStatus};

/// Finished jobs kept for polling.
pub const KEPT_FINISHED: usize = 64;

/// Progress of a job: steps done of a total (0 when unknown).
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Record `done` of `total` steps.
    pub fn set(&self, done: usize, total: usize) {
        self.total.store(total as u64, Ordering::Relaxed);
        self.done.store(done as u64, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Job {
    kind: &'static str,
    owner: (String, String),
    started: Instant,
    progress: Arc<Progress>,
    /// None while running.
    outcome: Mutex<Option<Result<Json, ApiError>>>,
}

impl Job {
    fn to_json(&self, id: u64) -> Json {
        let outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = match &*outcome {
            None => JobOutcome::Running,
            Some(Ok(result)) => JobOutcome::Done(result),
            Some(Err(e)) => JobOutcome::Failed { status: e.status.as_u16(), message: &e.message },
        };
        job_status(&JobStatus {
            id,
            kind: self.kind,
            done: self.progress.done.load(Ordering::Relaxed),
            total: self.progress.total.load(Ordering::Relaxed),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome,
        })
    }

    fn finished(&self) -> bool {
        self.outcome.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }
}

/// The daemon's admin jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    next_id: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Start `run` as a job of `who`; the `202` body naming it.
    pub(super) fn start<F, Fut>(self: &Arc<Self>, kind: &'static str, who: &Principal, run: F) -> Json
    where
        F: FnOnce(Arc<Progress>) -> Fut,
        Fut: Future<Output = Result<Json, ApiError>> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let progress = Arc::new(Progress::default());
        let job = Arc::new(Job {
            kind,
            owner: (who.org.clone(), who.project.clone()),
            started: Instant::now(),
            progress: progress.clone(),
            outcome: Mutex::new(None),
        });
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).insert(id, job.clone());
        let work = run(progress);
        let jobs = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = work.await;
            if let Err(e) = &outcome {
                tracing::warn!(job = id, kind, error = %e.message, "admin job failed");
            }
            *job.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
            jobs.forget_old();
        });
        job_started(id, kind)
    }

    /// `GET /v1/_admin/jobs/{id}`: the job of `who` with that id.
    pub(super) fn status(&self, id: &str, who: &Principal) -> Result<Json, ApiError> {
        let not_found = || ApiError::not_found(format!("no job {id:?}"));
        let n: u64 = id.parse().map_err(|_| not_found())?;
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = jobs
            .get(&n)
            .filter(|j| j.owner.0 == who.org && j.owner.1 == who.project)
            .ok_or_else(not_found)?;
        Ok(job.to_json(n))
    }

    fn forget_old(&self) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let finished: Vec<u64> = jobs.iter().filter(|(_, j)| j.finished()).map(|(id, _)| *id).collect();
        for id in finished.iter().take(finished.len().saturating_sub(KEPT_FINISHED)) {
            jobs.remove(id);
        }
    }
}
